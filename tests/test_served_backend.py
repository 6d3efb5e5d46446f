"""Served backends: lmms-eval's OpenAI-compatible models against our deterministic test server.

The in-process tests check :mod:`reguide_tasks.testing.server` itself (stage recognition on the
real prompts, the fault schedule, the HTTP faults, concurrency counters). The end-to-end tests run
``reguide-eval --model openai`` / ``async_openai`` in subprocesses against a server started here
(127.0.0.1, ephemeral port, one per run) and read the server's request log next to the result and
sample files:

- clean: baseline and ReGuide run unchanged; each stage is one burst of concurrent requests, stage 2
  starts only after every stage-1 answer is in; lmms-eval's per-document loop (``--sequential``)
  sends one request at a time and gives the same answers;
- transient faults (429, 500, malformed JSON, dropped connections) are retried away: no failure,
  and exactly one extra request per injected fault;
- persistent faults end as failed records with a reason, counted in ``fail_rate_<d>``; the request
  counts pin down the retry policy: ``max_retries`` lmms-eval attempts x 3 SDK tries (openai's own
  2 retries) for 429 / 5xx / connection errors, ``max_retries`` for malformed JSON, 1 for empty;
- timeouts: ``async_openai`` applies ``timeout=``; ``openai`` does not (lmms-eval 0.7.3 never passes
  it to the client, whose default is 600 s);
- a model that raises (no API key) stops the run with a non-zero exit from ``reguide-eval``.

Retry delays are kept small through ``retry_backoff_s`` and the server's ``retry-after-ms`` header.
The subprocess runs start together when the module's first end-to-end test asks for one (three at a
time) and are bounded by :data:`RUN_TIMEOUT_S`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from cli_runs import ServedRun, run_cli

from reguide_tasks.answers.parsing import parse_answer
from reguide_tasks.answers.suggestions import filter_suggestions, parse_suggestions
from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.lmms.records import metric_keys
from reguide_tasks.prompts.render import (
    load_examples,
    render_baseline,
    render_stage1,
    render_stage2,
)
from reguide_tasks.testing.server import (
    Fault,
    OoDDTestServer,
    RequestLog,
    answer,
    image_score,
    parse_fault,
    prompt_classes,
    stage1_id_classes,
)
from reguide_tasks.vocab import REJECTION_CLASS
from reguide_tasks.vocab import prompt_stage as request_stage

REPO_ROOT = Path(__file__).resolve().parents[1]
REGUIDE_EVAL = str(Path(sys.executable).with_name("reguide-eval"))
RUN_TIMEOUT_S = 240
PARALLEL_RUNS = 3
CIFAR_BASELINE, CIFAR_REGUIDE = "reguide_baseline_cifar10_custom", "reguide_cifar10_custom"
IN_BASELINE, IN_REGUIDE = "reguide_baseline_imagenet200_custom", "reguide_imagenet200_custom"
SDK_TRIES = 3  # the openai SDK's own DEFAULT_MAX_RETRIES (2) + 1, inside every lmms-eval attempt


# ---------------------------------------------------------------- in-process: the server itself
def _post(url: str, body: dict, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _chat(text: str, image: bytes = b"") -> dict:
    import base64

    content: list[dict] = [{"type": "text", "text": text}]
    if image:
        content.append({"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()}})
    return {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]}


def _content(raw: bytes) -> str | None:
    return json.loads(raw)["choices"][0]["message"]["content"]


@pytest.mark.parametrize("benchmark", ["cifar10", "imagenet200"])
def test_answers_every_stage_of_our_prompts(benchmark: str) -> None:
    classes = list(get_benchmark(benchmark).classes)
    baseline = render_baseline(classes, load_examples(benchmark))
    stage1 = render_stage1(classes, 20, 20)
    aux = ["kept one", "kept two"]
    stage2 = render_stage2(classes, aux)
    assert [request_stage(p) for p in (baseline, stage1, stage2)] == ["baseline", "stage1", "stage2"]
    assert prompt_classes(baseline) == [*classes, REJECTION_CLASS]
    assert prompt_classes(stage2) == [*classes, *aux, REJECTION_CLASS]
    assert stage1_id_classes(stage1) == classes

    digest = "ab" * 32  # no label code: the digest decides (graded answers: tests/test_served_quality.py)
    for prompt, options in ((baseline, [*classes, REJECTION_CLASS]), (stage2, [*classes, *aux, REJECTION_CLASS])):
        _, reply, score = answer(prompt, digest)
        parsed = parse_answer(reply, options)
        assert parsed.status == "ok" and parsed.reason == ""
        assert max(parsed.confidences[c] for c in classes) == score == image_score(digest)
    assert parse_answer(answer(stage2, digest)[1], [*classes, *aux, REJECTION_CLASS]).confidences["kept one"] == round(100 - score, 1)
    _, suggestions, _ = answer(stage1, digest)
    kept = filter_suggestions(parse_suggestions(suggestions).items, classes, cap=40).kept
    assert len(kept) == 37  # scripted suggestions: 40 names, two ID classes and a duplicate dropped


@pytest.mark.hostile
@pytest.mark.hostile_served  # issue 29 group 6
def test_fault_schedule_and_specs() -> None:
    assert [Fault("drop", first=2).hits(n) for n in range(1, 5)] == [True, True, False, False]
    assert [Fault("drop", every=3).hits(n) for n in range(1, 7)] == [False, False, True, False, False, True]
    assert [Fault("drop", after=2, first=1).hits(n) for n in range(1, 5)] == [False, False, True, False]
    assert all(Fault("drop").hits(n) for n in range(1, 5))
    assert parse_fault("status:429,first=3,retry_after_ms=1") == Fault("status", first=3, status=429, retry_after_ms=1.0)
    assert parse_fault("sleep:2.5, every=4, stage=stage2") == Fault("sleep", every=4, stage="stage2", seconds=2.5)
    assert parse_fault("empty,per=image,after=1,first=2") == Fault("empty", first=2, after=1, per="image")
    # attempts=1: the first attempt of the 2nd and 3rd images to arrive, whatever the order of the rest
    from reguide_tasks.testing.server import _Rule
    rule = _Rule(parse_fault("reset,per=image,after=1,first=2,attempts=1"))
    arrivals = ["a", "b", "a", "b", "c", "b", "c", "d", "c"]
    assert [rule.fires("baseline", image) for image in arrivals] == [False, True, False, False, True, False, False, False, False]
    for bad in ("teapot", "status:429,frist=3", "drop,stage=stage3", "drop,per=doc", "drop,first", "drop,first=-1", "drop,attempts=1", "drop,per=image,attempts=-1"):
        with pytest.raises(ValueError):
            parse_fault(bad)


@pytest.mark.hostile
@pytest.mark.hostile_served  # issue 29 group 6
def test_http_faults_counters_and_models_endpoint() -> None:
    prompt = render_baseline(list(get_benchmark("cifar10").classes), load_examples("cifar10"))
    faults = [
        "status:429,first=1,retry_after_ms=7",
        "malformed,per=image,first=1,after=1",
        "empty,per=image,first=1,after=2",
        "null,per=image,first=1,after=3",
        "refusal,per=image,first=1,after=4",
        "drop,per=image,first=1,after=5",
    ]
    with OoDDTestServer(faults, model="served-test") as server:
        with urllib.request.urlopen(server.url + "/models", timeout=10) as response:
            assert json.loads(response.read())["data"][0]["id"] == "served-test"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(server.url + "/completions", timeout=10)
        assert missing.value.code == 404
        status, headers, body = _post(server.url, _chat(prompt, b"image-0"))
        assert status == 429 and headers.get("retry-after-ms") == "7" and json.loads(body)["error"]["code"] == 429
        status, _, body = _post(server.url, _chat(prompt, b"image-0"))  # the 429 rule counts requests: served now
        assert status == 200 and parse_answer(_content(body), prompt_classes(prompt)).status == "ok"
        status, _, body = _post(server.url, _chat(prompt, b"image-1"))
        assert status == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
        assert _content(_post(server.url, _chat(prompt, b"image-2"))[2]) == ""
        assert _content(_post(server.url, _chat(prompt, b"image-3"))[2]) is None
        assert _content(_post(server.url, _chat(prompt, b"image-4"))[2]).startswith("I'm sorry")
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            _post(server.url, _chat(prompt, b"image-5"))
        # per=image faults are persistent: the same image fails again; other images are answered
        assert _content(_post(server.url, _chat(prompt, b"image-2"))[2]) == ""
        assert _content(_post(server.url, _chat(prompt, b"image-6"))[2]).startswith("Prediction: ")
        status, _, body = _post(server.url, {"messages": "not a list"})
        assert status == 200  # a user message is optional: answered as a baseline prompt would be
        assert _post(server.url, {"model": "m"})[0] == 200
    assert server.requests == Counter(baseline=11)
    assert server.faults == Counter(status=1, malformed=1, empty=2, null=1, refusal=1, drop=1)
    assert server.answered == Counter(baseline=4)


def test_bad_body_is_a_400_and_stop_wakes_sleeping_handlers() -> None:
    with OoDDTestServer(["sleep:60"]) as server:
        request = urllib.request.Request(server.url + "/chat/completions", b"{not json", {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        assert raised.value.code == 400
        outcome: dict = {}
        sleeper = threading.Thread(target=lambda: outcome.update(result=_post(server.url, _chat("hello"), timeout=30)))
        sleeper.start()
        deadline = time.monotonic() + 10
        while not server.log and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
    sleeper.join(10)
    assert time.monotonic() - started < 5, "stop() must not wait for a 60 s sleep fault"
    assert not sleeper.is_alive()
    assert server.faults == Counter(sleep=1)


def test_concurrent_requests_are_counted() -> None:
    with OoDDTestServer(latency=0.3) as server:
        threads = [threading.Thread(target=_post, args=(server.url, _chat("hi", bytes([i])))) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    assert server.requests == Counter(baseline=6) == server.answered
    assert server.max_in_flight >= 2
    assert _max_overlap(server.log) == server.max_in_flight


def test_command_line_serves_and_reports() -> None:
    done = subprocess.run([sys.executable, "-m", "reguide_tasks.testing.server", "--port", "0", "--duration", "0.3", "--fault", "empty,first=1"],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("serving http://127.0.0.1:") and "requests {}" in done.stdout


# ---------------------------------------------------------------- end to end through reguide-eval
def _max_overlap(entries: list[RequestLog]) -> int:
    """The most requests of ``entries`` that were being served at the same time."""
    events = sorted([(e.started, 1) for e in entries] + [(e.ended, -1) for e in entries], key=lambda item: (item[0], item[1]))
    level = best = 0
    for _, step in events:
        level += step
        best = max(best, level)
    return best


def _openai_args(extra: str = "") -> str:
    return ",".join(filter(None, ["model=reguide-testing", "base_url={URL}", extra]))


# name -> (model, model_args, tasks, faults, server latency, extra CLI args, API key set)
RUNS: dict[str, tuple[str, str, str, list[str], float, list[str], bool]] = {
    "clean": ("openai", _openai_args(), f"{CIFAR_BASELINE},{CIFAR_REGUIDE}", [], 0.2, [], True),
    "persistent": (
        "openai",
        _openai_args("max_retries=2,retry_backoff_s=0.01"),
        f"{CIFAR_BASELINE},{CIFAR_REGUIDE}",
        [
            "status:500,stage=baseline,per=image,first=2,retry_after_ms=1",
            "malformed,stage=baseline,per=image,after=2,first=1",
            "drop,stage=baseline,per=image,after=3,first=1",
            "refusal,stage=baseline,per=image,after=4,first=1",
            "status:503,stage=stage1,per=image,first=1,retry_after_ms=1",
            "empty,stage=stage2,per=image,first=1",
            "null,stage=stage2,per=image,after=1,first=1",
            "status:429,stage=stage2,per=image,after=2,first=1,retry_after_ms=1",
        ],
        0.0,
        [],
        True,
    ),
    "transient": (
        "openai",
        _openai_args("max_retries=3,retry_backoff_s=0.01,timeout=1"),
        f"{IN_BASELINE},{IN_REGUIDE}",
        [  # the first matching rule wins, so the exact ones come first
            "drop,stage=stage1,first=1",
            "malformed,stage=stage2,first=2",
            "sleep:1.5,stage=baseline,first=1",
            "status:429,first=3,retry_after_ms=1",
            "status:500,every=9,retry_after_ms=1",
        ],
        0.0,
        [],
        True,
    ),
    "async_timeouts": (
        "async_openai",
        _openai_args("max_retries=2,retry_backoff_s=0.01,timeout=1,num_cpus=4"),
        f"{CIFAR_BASELINE},{CIFAR_REGUIDE}",
        ["sleep:3,stage=baseline,first=2", "sleep:3,stage=stage2,per=image,first=1"],
        0.05,
        [],
        True,
    ),
    "sequential": ("openai", _openai_args(), CIFAR_REGUIDE, [], 0.02, ["--sequential"], True),
    "no_api_key": ("openai", _openai_args(), CIFAR_BASELINE, [], 0.0, [], False),
    "all_failed": ("openai", _openai_args("max_retries=1,retry_backoff_s=0.01"), CIFAR_BASELINE, ["status:500,retry_after_ms=1"], 0.0, [], True),
}


def _execute(name: str, root: Path, workdir: Path) -> ServedRun:
    model, model_args, tasks, faults, latency, extra, with_key = RUNS[name]
    run_dir = workdir / name
    output = run_dir / "output"
    run_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGUIDE_", "OPENAI_"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=str(run_dir / "hf_datasets"), OMP_NUM_THREADS="1")
    if with_key:
        env["OPENAI_API_KEY"] = "sk-reguide-test"
    server = OoDDTestServer(faults, latency=latency).start()
    argv = [REGUIDE_EVAL, "--model", model, "--model_args", model_args.replace("{URL}", server.url), "--tasks", tasks,
            "--data_root", str(root), "--output_path", str(output), "--log_samples", *extra]
    started = time.monotonic()
    try:
        done = run_cli(argv[0], argv[1:], cwd=run_dir, env=env, timeout=RUN_TIMEOUT_S)
        returncode, log = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
        streams = [s.decode(errors="replace") if isinstance(s, bytes) else (s or "") for s in (exc.stdout, exc.stderr)]
        returncode, log = -9, f"timed out after {RUN_TIMEOUT_S}s\n" + "".join(streams)
    finally:
        server.stop()
    return ServedRun(name, argv, returncode, log, output, time.monotonic() - started, server)


@pytest.fixture(scope="module")
def served(fixture_data, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future]]:
    workdir = tmp_path_factory.mktemp("served_runs")
    pool = ThreadPoolExecutor(max_workers=PARALLEL_RUNS, thread_name_prefix="served-run")
    futures = {name: pool.submit(_execute, name, fixture_data.root, workdir) for name in RUNS}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _ok(futures: dict[str, Future], name: str) -> ServedRun:
    run = futures[name].result()
    assert run.returncode == 0, run.describe()
    return run


def _assert_complete(run: ServedRun, task: str, docs: list[dict]) -> list[dict]:
    """Every document logged once with a consistent record; fail rates and ``oodd`` match the records."""
    records = run.records(task)
    assert sorted(r["image"] for r in records) == sorted(d["image"] for d in docs), run.describe()
    metrics = run.metrics(task)
    benchmark = get_benchmark(docs[0]["benchmark"])
    assert set(metric_keys(benchmark)) <= set(metrics)
    for record in records:
        assert record["failed"] == (record["ood_score"] is None)
        assert not record["failed"] or record["reason"], record
    assert metrics["oodd"] == sum(not r["failed"] for r in records)
    for dataset in benchmark.datasets:
        mine = [r["failed"] for r in records if r["dataset"] == dataset]
        assert metrics[f"fail_rate_{dataset}"] == pytest.approx(100.0 * np.mean(mine)), dataset
    return records


@pytest.mark.e2e
def test_clean_run_answers_every_document_once(served, fixture_data) -> None:
    run = _ok(served, "clean")
    docs = fixture_data.documents["cifar10"]
    n = len(docs)
    assert run.server.requests == run.server.answered == Counter(baseline=n, stage1=n, stage2=n)
    assert all(e.label for e in run.server.log), "a fixture image's label code did not survive the request"
    for task, stage in ((CIFAR_BASELINE, "baseline"), (CIFAR_REGUIDE, "stage2")):
        records = _assert_complete(run, task, docs)
        assert not any(r["failed"] for r in records)
        # The scores in the samples file are the ones the server sent, image by image.
        assert sorted(r["ood_score"] for r in records) == sorted(e.score for e in run.entries(stage))
    reguide = run.records(CIFAR_REGUIDE)
    assert all(r["suggestions_status"] == "ok" and len(r["suggestions_kept"]) == 37 for r in reguide)


@pytest.mark.e2e
def test_batched_reguide_sends_each_stage_as_one_concurrent_burst(served, fixture_data) -> None:
    run = _ok(served, "clean")
    n = len(fixture_data.documents["cifar10"])
    stage1, stage2 = run.entries("stage1"), run.entries("stage2")
    assert max(e.ended for e in stage1) <= min(e.started for e in stage2), "stage 2 began before stage 1 was complete"
    # openai sends a generate_until call's requests from a thread pool (num_concurrent=32 by default)
    for stage in ("baseline", "stage1", "stage2"):
        assert _max_overlap(run.entries(stage)) > 1, stage
    assert f"Agentic round 1: {n} requests in one batched call" in run.log
    assert f"Agentic round 2: {n} requests in one batched call" in run.log


@pytest.mark.e2e
def test_sequential_route_one_request_at_a_time_same_answers(served, fixture_data) -> None:
    run, clean = _ok(served, "sequential"), _ok(served, "clean")
    n = len(fixture_data.documents["cifar10"])
    assert run.server.requests == Counter(stage1=n, stage2=n)
    assert _max_overlap(run.server.log) == 1
    stage1, stage2 = run.entries("stage1"), run.entries("stage2")
    assert min(e.started for e in stage2) < max(e.started for e in stage1)  # document by document
    assert "Agentic round" not in run.log
    assert run.records(CIFAR_REGUIDE) == clean.records(CIFAR_REGUIDE)
    assert run.metrics(CIFAR_REGUIDE) == clean.metrics(CIFAR_REGUIDE)


@pytest.mark.e2e
@pytest.mark.hostile
@pytest.mark.hostile_served  # issue 29 group 6
def test_transient_faults_are_retried_away(served, fixture_data) -> None:
    run = _ok(served, "transient")
    docs = fixture_data.documents["imagenet200"]
    n = len(docs)
    for task in (IN_BASELINE, IN_REGUIDE):
        records = _assert_complete(run, task, docs)
        assert not any(r["failed"] for r in records), [r["reason"] for r in records if r["failed"]]
    assert all(r["suggestions_status"] == "ok" for r in run.records(IN_REGUIDE))
    faults = run.server.faults
    assert faults["status"] >= 4 and faults["malformed"] == 2 and faults["drop"] == 1 and faults["sleep"] == 1, faults
    # each 429 / 500 / malformed / dropped request costs exactly one more request, nothing is lost
    assert run.server.answered == Counter(baseline=n - 1, stage1=n, stage2=n)  # one baseline answer came late (sleep)
    assert sum(run.server.requests.values()) == 3 * n + sum(faults.values()) - faults["sleep"]


@pytest.mark.e2e
@pytest.mark.hostile
@pytest.mark.hostile_served  # issue 29 group 6
def test_openai_model_does_not_apply_its_timeout_arg(served) -> None:
    """lmms-eval 0.7.3's ``openai`` stores ``timeout`` but never gives it to the client (SDK default
    600 s): a 1.5 s answer under ``timeout=1`` arrives without a retry. If this fails, lmms-eval now
    applies it: update the README's served-models section."""
    run = _ok(served, "transient")
    slow = [e for e in run.server.log if e.fault == "sleep"]
    assert len(slow) == 1 and slow[0].ended - slow[0].started >= 1.5
    assert slow[0].score is not None
    assert "timed out" not in run.log.lower()


@pytest.mark.e2e
@pytest.mark.hostile
@pytest.mark.hostile_served  # issue 29 group 6
def test_persistent_faults_become_failed_records_with_reasons(served, fixture_data) -> None:
    run = _ok(served, "persistent")
    docs = fixture_data.documents["cifar10"]
    n = len(docs)
    baseline = _assert_complete(run, CIFAR_BASELINE, docs)
    reasons = Counter(r["reason"].split(":")[0] if r["reason"].startswith("request failed") else r["reason"] for r in baseline if r["failed"])
    assert reasons == Counter({"request failed after 2 retries": 4, "refusal": 1}), reasons
    texts = " | ".join(r["reason"] for r in baseline)
    assert texts.count("Error code: 500") == 2 and "Connection error" in texts and "Unterminated string" in texts

    reguide = _assert_complete(run, CIFAR_REGUIDE, docs)
    failed = sorted(r["reason"] for r in reguide if r["failed"])
    assert len(failed) == 3 and failed[:2] == ["empty answer", "empty answer"], failed
    assert failed[2].startswith("request failed after 2 retries: Error code: 429")
    # a failed stage 1 is not a failed document: stage 2 runs without auxiliary classes, and says so
    no_stage1 = [r for r in reguide if r["suggestions_status"] == "failed"]
    assert len(no_stage1) == 1 and no_stage1[0]["suggestions_kept"] == []
    assert no_stage1[0]["suggestions_reason"].startswith("stage 1: request failed after 2 retries: Error code: 503")

    # attempts: max_retries=2 lmms-eval attempts; x3 SDK tries for 5xx / 429 / dropped connections
    retried = 2 * SDK_TRIES
    assert run.server.requests == Counter(
        baseline=(n - 5) + 2 * retried + 2 + retried + 1,  # ok docs, 2x500, malformed (2), drop, refusal (1)
        stage1=(n - 1) + retried,
        stage2=(n - 3) + 1 + 1 + retried,  # ok docs, empty (1), null (1), 429
    )


@pytest.mark.e2e
@pytest.mark.hostile
@pytest.mark.hostile_served  # issue 29 group 6
def test_async_openai_applies_timeout_and_runs_concurrently(served, fixture_data) -> None:
    run = _ok(served, "async_timeouts")
    docs = fixture_data.documents["cifar10"]
    baseline = _assert_complete(run, CIFAR_BASELINE, docs)
    assert not any(r["failed"] for r in baseline)  # two 3 s answers timed out at 1 s and were retried
    reguide = _assert_complete(run, CIFAR_REGUIDE, docs)
    failed = [r for r in reguide if r["failed"]]
    assert len(failed) == 1 and failed[0]["reason"].startswith("request failed after 2 retries"), failed
    slow = [e for e in run.entries("stage2") if e.fault == "sleep"]
    assert len({e.image for e in slow}) == 1 and len(slow) >= SDK_TRIES  # the SDK retries timeouts too
    assert "Request timed out" in run.log
    assert max(_max_overlap(run.entries(stage)) for stage in ("baseline", "stage1", "stage2")) > 1


def _dotenv_may_set_key() -> bool:
    """lmms-eval calls ``load_dotenv()``, which searches the folders above its own package for .env."""
    import lmms_eval

    here = Path(lmms_eval.__file__).resolve().parent
    return any((folder / ".env").is_file() for folder in (here, *here.parents))


@pytest.mark.e2e
def test_model_that_raises_stops_the_run_with_an_error(served) -> None:
    if _dotenv_may_set_key():
        pytest.skip("a .env file above lmms_eval may provide OPENAI_API_KEY")
    run = served["no_api_key"].result()
    assert run.returncode == 1, run.describe()
    last = run.log.strip().splitlines()[-1]
    assert last.startswith("reguide-eval: error: evaluation failed: OpenAIError"), run.describe()
    assert not list(run.output.rglob("*_results.json")) and not run.server.log


def test_a_run_whose_every_request_failed_exits_non_zero(served, fixture_data) -> None:
    run = served["all_failed"].result()
    assert run.returncode == 1, run.describe()
    last = run.log.strip().splitlines()[-1]
    assert last.startswith("reguide-eval: error: every one of the 14 requests") and "request failed" in last, run.describe()
    # the results were still written: nothing is lost, the exit code says the run is not usable
    assert list(run.output.rglob("*_results.json"))


def test_failed_api_answers_are_not_cached() -> None:
    from lmms_eval.caching.response_cache import ResponseCache

    from reguide_tasks.lmms.runtime import install_cache_placeholder_policy

    install_cache_placeholder_policy()
    install_cache_placeholder_policy()  # idempotent
    assert not ResponseCache._is_valid_response("[LMMS_EVAL_REQUEST_FAILED after 5 retries] boom", "generate_until")
    assert not ResponseCache._is_valid_response("", "generate_until")
    assert ResponseCache._is_valid_response("Prediction: cat", "generate_until")
