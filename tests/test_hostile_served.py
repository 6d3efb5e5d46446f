"""Hostile inputs, groups 5 and 6 (docs/security.md): one ``reguide-eval`` run against the test
server with an API key in the environment and another in ``--model_args``, and a server that
answers 429 with ``Retry-After``, 500s, slow responses, invalid JSON and connection resets mid-body.

- secrets: no file the run or ``reguide-report`` writes (results, samples, answer cache, report) and
  no console output holds either key; the ``--model_args`` key still reaches the server;
- faults: transient ones are retried away, persistent ones end as failed records with a reason;
  attempts per document are bounded (lmms-eval's ``max_retries`` x the SDK's tries) and so is the
  time; every document has one record and every failed one is counted in the report's Fail column.

Real components: reguide-eval, lmms-eval's ``openai`` model and the openai SDK, the report. Only the
model is a stand-in (the test server, reguide_tasks/testing/server.py).
"""

from __future__ import annotations

import csv
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_runs import console_script, offline_env, read_metrics, read_samples, run_cli

from reguide_tasks.testing.fixtures import make_fixture
from reguide_tasks.testing.server import OoDDTestServer

pytestmark = [pytest.mark.hostile, pytest.mark.e2e]

TASK = "reguide_baseline_cifar10_custom"
ENV_KEY = "sk-env-SECRET-3f9a1c77e2"
ARG_KEY = "sk-arg-SECRET-b81d0e4c55"
LMMS_RETRIES, SDK_TRIES = 2, 3  # max_retries=2 below; the openai SDK's own 2 retries + 1
FAULTS = [
    # persistent (the same image on every attempt): the 1st image always 500, the 2nd always reset
    "status:500,per=image,first=1,retry_after_ms=1",
    "reset,per=image,after=1,first=1",
    # transient: the first attempt of a chosen image is faulted, its retry answered. Keyed by image
    # (in order of first arrival, the same in every rule), not by a global request counter: a counter
    # let the persistent images' quick retries take all three 429s in one CI run (no 429 on another
    # image, so no Retry-After wait to check), and a periodic fault once lined up with one document's
    # retries and exhausted them. Images 3-5 get a 429, image 6 invalid JSON, image 10 a reset.
    "status:429,per=image,after=2,first=3,attempts=1,retry_after_s=1",
    "malformed,per=image,after=5,first=1,attempts=1",
    "reset,per=image,after=9,first=1,attempts=1",
    "sleep:0.4,every=5",
]
RUN_TIMEOUT_S = 240


@dataclass
class Served:
    returncode: int
    log: str
    seconds: float
    run_dir: Path
    output: Path
    report: Path
    server: OoDDTestServer

    def describe(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.0f}s\n{self.log[-4000:]}"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    run_dir = tmp_path_factory.mktemp("hostile_served")
    data = run_dir / "data"
    make_fixture(data, "cifar10", 2)
    output, report = run_dir / "output", run_dir / "report"
    server = OoDDTestServer(FAULTS).start()
    model_args = f"model=reguide-testing,base_url={server.url},api_key={ARG_KEY},max_retries={LMMS_RETRIES},retry_backoff_s=0.01"
    argv = [console_script("reguide-eval"), "--model", "openai", "--model_args", model_args, "--tasks", TASK,
            "--data_root", str(data), "--output_path", str(output), "--log_samples"]
    env = offline_env(run_dir, drop=("REGUIDE_", "OPENAI_"), OPENAI_API_KEY=ENV_KEY)
    started = time.monotonic()
    try:
        done = run_cli(argv[0], argv[1:], cwd=run_dir, env=env, timeout=RUN_TIMEOUT_S)
    finally:
        server.stop()
    seconds = time.monotonic() - started
    shown = run_cli("reguide-report", [str(output), "--out", str(report), "--bootstrap", "0", "--no-plots"], cwd=run_dir, env=env, timeout=120)
    log = done.stdout + done.stderr + shown.stdout + shown.stderr
    (run_dir / "console.log").write_text(log, encoding="utf-8")
    assert shown.returncode == 0, log[-3000:]
    return Served(done.returncode, log, seconds, run_dir, output, report, server)


@pytest.mark.hostile_secrets
def test_no_written_file_or_log_holds_a_key(served) -> None:
    assert served.returncode == 0, served.describe()
    written = [p for p in served.run_dir.rglob("*") if p.is_file() and "hf_datasets" not in p.parts]
    kinds = {p.suffix for p in written}
    assert {".json", ".jsonl", ".db", ".md", ".csv", ".html", ".log"} <= kinds, kinds  # results, samples, cache, report, console
    for path in written:
        data = path.read_bytes()
        for key in (ENV_KEY, ARG_KEY):
            assert key.encode() not in data, f"{key} written to {path}"
    # the key of --model_args still reached the model (it is the one the SDK sent)
    assert {e.authorization for e in served.server.log} == {f"Bearer {ARG_KEY}"}


@pytest.mark.hostile_served
def test_faults_are_retried_within_bounds_and_exhausted_requests_are_failed_records(served) -> None:
    assert served.returncode == 0, served.describe()
    rows = read_samples(served.output, TASK)
    records = [row["oodd"] for row in rows]
    images = [r["image"] for r in records]
    assert len(images) == len(set(images)) == 14  # every document once: none lost, none twice
    failed = [r for r in records if r["failed"]]
    assert len(failed) == 2, [r["reason"] for r in failed]
    reasons = sorted(r["reason"] for r in failed)
    assert all(r.startswith(f"request failed after {LMMS_RETRIES} retries") for r in reasons), reasons
    assert any("Error code: 500" in r for r in reasons) and any("Connection error" in r or "incomplete" in r.lower() or "peer" in r.lower() for r in reasons), reasons

    log = served.server.log
    faults = Counter(e.fault for e in log if e.fault)
    assert faults["status"] >= 3 and faults["malformed"] >= 1 and faults["reset"] >= 1 and faults["sleep"] >= 1, faults
    attempts: dict[str, list] = defaultdict(list)
    for entry in log:
        attempts[entry.image].append(entry)
    assert len(attempts) == 14
    bound = LMMS_RETRIES * SDK_TRIES
    for image, tries in attempts.items():
        assert len(tries) <= bound, (image, len(tries))
        assert tries[-1].ended - tries[0].started < 30, (image, [e.fault for e in tries])  # bounded in time
    # the two persistently faulted images (server digests): every attempt faulted, all of them spent
    persistent = {image for image, tries in attempts.items() if len(tries) > 2 and all(e.fault for e in tries)}
    assert len(persistent) == 2 and all(len(attempts[i]) == bound for i in persistent), {i: [e.fault for e in attempts[i]] for i in persistent}
    # each transiently faulted image: its first attempt faulted, a later one answered
    transient = {image: tries for image, tries in attempts.items() if image not in persistent and tries[0].fault in ("status", "malformed", "reset")}
    assert Counter(tries[0].fault for tries in transient.values()) == {"status": 3, "malformed": 1, "reset": 1}, transient
    assert all(not tries[-1].fault or tries[-1].fault == "sleep" for tries in transient.values()), transient
    # a 429 with Retry-After: 1 is retried after about a second, as the header asks, not at once
    waits = [tries[1].started - tries[0].ended for tries in transient.values() if tries[0].fault == "status"]
    assert len(waits) == 3 and min(waits) >= 0.9, waits
    assert served.seconds < RUN_TIMEOUT_S


@pytest.mark.hostile_served
def test_failed_records_are_counted_in_the_report(served) -> None:
    metrics = read_metrics(served.output, TASK)
    records = [row["oodd"] for row in read_samples(served.output, TASK)]
    by_dataset = Counter(r["dataset"] for r in records if r["failed"])
    for dataset, n in by_dataset.items():
        assert metrics[f"fail_rate_{dataset}"] == pytest.approx(100.0 * n / 2)
    with open(served.report / "cifar10.csv", newline="", encoding="utf-8") as handle:
        (row,) = [r for r in csv.DictReader(handle) if r["task"] == TASK]
    for dataset, n in by_dataset.items():
        assert float(row[f"fail_rate_{dataset}"]) == pytest.approx(100.0 * n / 2)
    markdown = (served.report / "report.md").read_text(encoding="utf-8")
    assert "Fail" in markdown and "50.0" in markdown  # one of the two documents of a dataset failed


@pytest.mark.hostile_secrets
def test_secret_model_args_are_split_out_of_the_command_line() -> None:
    from reguide_tasks.lmms.secrets import split_secret_model_args, with_secrets

    argv = ["--model", "openai", "--model_args", "model=m,api_key=sk-1,max_new_tokens=9,hf_token=t,key_reading=strict", "--model_args=x=1,password=p"]
    kept, secrets = split_secret_model_args(argv)
    assert kept == ["--model", "openai", "--model_args", "model=m,max_new_tokens=9,key_reading=strict", "--model_args=x=1"]
    assert secrets == {"api_key": "sk-1", "hf_token": "t", "password": "p"}
    assert with_secrets("model=m", {"api_key": "sk-1"}) == "model=m,api_key=sk-1" and with_secrets("", {"k": "v"}) == "k=v"


@pytest.mark.hostile_secrets
def test_an_abbreviated_model_args_flag_does_not_carry_a_secret_past_the_split(monkeypatch) -> None:
    """lmms-eval's argparse accepts abbreviations: --model_arg / --model_a=... are --model_args to it."""
    import sys

    import lmms_eval.__main__ as lmms_main

    from reguide_tasks.lmms.secrets import split_secret_model_args

    for argv in (["--model", "openai", "--model_arg", "model=m,api_key=sk-1"], ["--model", "openai", "--model_a=model=m,api_key=sk-1"]):
        monkeypatch.setattr(sys, "argv", ["lmms-eval", *argv])
        assert lmms_main.parse_eval_args()[1].model_args == "model=m,api_key=sk-1"  # what lmms-eval would have written
        kept, secrets = split_secret_model_args(argv)
        assert secrets == {"api_key": "sk-1"} and "sk-1" not in " ".join(kept)
        monkeypatch.setattr(sys, "argv", ["lmms-eval", *kept])
        assert lmms_main.parse_eval_args()[1].model_args == "model=m"
    # --model is the model's name, not an abbreviation of --model_args
    assert split_secret_model_args(["--model", "api_key=x"]) == (["--model", "api_key=x"], {})
