"""A run killed with SIGKILL and restarted with the same command finishes with the metrics of an
uninterrupted run and does not regenerate the answers already cached: by default (``reguide-eval``
keeps answers in ``<output_path>/answer_cache`` without being asked) and with ``--use_cache DIR``.

What lmms-eval 0.7.3's response cache guarantees (``lmms_eval/caching/response_cache.py``):
- answers are written (JSONL audit line + fsync, then an SQLite commit, one request at a time) only
  AFTER the model's ``generate_until`` call returns: a call killed half-way leaves nothing. The
  baseline task is one call (all documents); the batched ReGuide runner one call per stage; lmms-eval's
  sequential loop one call per document and stage, so it persists request by request. ``reguide-eval``
  makes the cache call the model on at most ``--save_every`` requests at a time (default 1024), so a
  kill loses at most the chunk in flight;
- a run writes to ``<cache>/runs/<run id>/rank_<r>.db`` and folds that into ``<cache>/cache.db`` (what a
  new run reads) only when it finishes. The run id is random for a single process unless
  ``LMMS_CACHE_RUN_ID`` / ``SLURM_JOB_ID`` / ``TORCHELASTIC_RUN_ID`` is set, so a killed run's answers
  were never read again; ``reguide-eval`` sets ``LMMS_CACHE_RUN_ID`` from the model, model args and
  tasks (:func:`reguide_tasks.lmms.cli.stable_cache_run_id`), and the restart reopens the killed run's files.

The model is ``reguide_scripted`` with ``log_calls`` (one line per answered request, across processes)
and ``item_latency`` (slow enough to kill at a known point). The set of answers that survived the kill
is read from the cache's audit log; the restart must answer exactly the others.

- batched route, default cache (no ``--use_cache`` on the command line), ``--save_every 5``: the
  ReGuide task's requests run before the baseline's (lmms-eval runs request types in the order of the
  reversed sorted task names); killed in the third chunk of the baseline, so both ReGuide stages and
  two baseline chunks are cached: the restart answers the rest of the baseline only.
- sequential route (``--sequential``), ``--use_cache DIR``: the baseline runs first here (through an alias task whose name
  sorts after the ReGuide task); killed half-way through the per-document ReGuide loop: the restart
  answers neither the baseline nor the ReGuide requests already answered.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cli_runs import console_script, offline_env, read_metrics
from reguide_tasks.lmms.cli import stable_cache_run_id
from reguide_tasks.testing.fixtures import make_fixture

REPO_ROOT = Path(__file__).resolve().parents[1]
BASELINE, REGUIDE = "reguide_baseline_cifar10_custom", "reguide_cifar10_custom"
ALIAS_BASELINE = "reguide_zz_resume_baseline"  # sorts after REGUIDE: lmms-eval runs its requests first
PER_DATASET = 3
N_DOCS = 7 * PER_DATASET
ITEM_LATENCY = 0.15
RUN_TIMEOUT_S = 240

Request = tuple  # (task, doc_id, stage, prompt hash): one line of the scripted model's log_calls


# ---------------------------------------------------------------- running and killing
def read_calls(path: Path) -> list[Request]:
    if not path.exists():
        return []
    return [tuple(line.split("\t")) for line in path.read_text(encoding="utf-8").splitlines() if line]


def read_cached(cache: Path) -> list[Request]:
    """(task, doc_id, content hash) of every answer in the cache's audit logs (written before SQLite)."""
    cached = []
    for audit in sorted(cache.rglob("*.audit.jsonl")):
        for line in audit.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                cached.append((record["task_name"], str(record["doc_id"]), record["content_hash"]))
    return cached


def cache_key(request: Request) -> tuple:
    """What the cache's audit log identifies a request by: (task, doc_id, prompt hash)."""
    task, doc_id, _stage, digest = request
    return (task, doc_id, digest)


def without_stage(requests) -> Counter:
    return Counter(cache_key(row) for row in requests)


@dataclass
class Outcome:
    """One scenario: the first run (killed when ``kill_when`` says so, if given), then the restart."""

    name: str
    calls: Path
    output: Path
    logs: list[str] = field(default_factory=list)
    first: list[Request] = field(default_factory=list)  # answered before the kill
    second: list[Request] = field(default_factory=list)  # answered by the restart
    cached_at_kill: list[tuple] = field(default_factory=list)
    killed: bool = False
    returncode: int | None = None

    def describe(self) -> str:
        return f"[{self.name}] exit {self.returncode}\n--- last log (tail)\n{self.logs[-1][-4000:] if self.logs else ''}"

    def metrics(self, task: str) -> dict[str, float]:
        return read_metrics(self.output, task, self.describe())


def run_scenario(name: str, extra: list[str], tasks: str, workdir: Path, data_root: Path, kill_when=None, cache: str = "default") -> Outcome:
    """``reguide-eval`` twice with the same arguments (the same command, output path included): the
    first time SIGKILLed once ``kill_when(lines)``. ``cache``: "default" (no flag), "explicit"
    (``--use_cache <run>/cache``) or "off" (``--no_answer_cache``)."""
    run_dir = workdir / name
    run_dir.mkdir(parents=True)
    outcome = Outcome(name, run_dir / "calls.txt", run_dir / "output")
    model_args = f"item_latency={ITEM_LATENCY},log_calls={outcome.calls}"  # identical in both runs: the cache keys hold them
    argv = [console_script("reguide-eval"), *extra, "--tasks", tasks, "--model", "reguide_scripted", "--model_args", model_args]
    argv += {"default": [], "explicit": ["--use_cache", str(run_dir / "cache")], "off": ["--no_answer_cache"]}[cache]
    cache_dir = run_dir / "cache" if cache == "explicit" else outcome.output / "answer_cache"
    env = offline_env(run_dir, ("REGUIDE_", "LMMS_CACHE", "SLURM_", "TORCHELASTIC_"), REGUIDE_DATA_ROOT=str(data_root), CUDA_VISIBLE_DEVICES="")

    def start(output: Path, log: Path) -> subprocess.Popen:
        with open(log, "w", encoding="utf-8") as handle:  # the child keeps its own descriptor
            return subprocess.Popen([*argv, "--output_path", str(output)], cwd=run_dir, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def finish(process: subprocess.Popen, log: Path) -> int:
        try:
            code = process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        outcome.logs.append(log.read_text(encoding="utf-8", errors="replace"))
        return code

    if kill_when is not None:
        log = run_dir / "first.log"
        process = start(outcome.output, log)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while process.poll() is None and not kill_when(read_calls(outcome.calls)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            outcome.killed = True
        finish(process, log)
        outcome.first = read_calls(outcome.calls)
        outcome.cached_at_kill = read_cached(cache_dir)
    log = run_dir / "second.log"
    outcome.returncode = finish(start(outcome.output, log), log)
    outcome.second = read_calls(outcome.calls)[len(outcome.first):]
    return outcome


def _write_alias_task(folder: Path) -> Path:
    """A baseline task under another name (its requests then run before the ReGuide task's)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = REPO_ROOT / "tasks_yaml" / "reguide_cifar10" / f"{BASELINE}.yaml"
    (folder / f"{ALIAS_BASELINE}.yaml").write_text(f"include: {target}\ntask: {ALIAS_BASELINE}\n", encoding="utf-8")
    return folder


SAVE_EVERY = 5


def _third_baseline_chunk(lines: list[Request]) -> bool:
    return sum(row[0] == BASELINE for row in lines) > 2 * SAVE_EVERY


def _half_of_reguide(lines: list[Request]) -> bool:
    return sum(row[0] == REGUIDE for row in lines) >= N_DOCS


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    data_root = tmp_path_factory.mktemp("resume_data")
    make_fixture(data_root, "cifar10", PER_DATASET)
    workdir = tmp_path_factory.mktemp("resume_runs")
    alias = ["--include_path", str(_write_alias_task(workdir / "alias_task"))]
    all_tasks = f"{BASELINE},{REGUIDE},{ALIAS_BASELINE}"
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = {
            # uninterrupted, no cache: the reference answers and metrics
            "reference": pool.submit(run_scenario, "reference", alias, all_tasks, workdir, data_root, None, "off"),
            "batched": pool.submit(run_scenario, "batched", ["--save_every", str(SAVE_EVERY)], f"{BASELINE},{REGUIDE}", workdir, data_root, _third_baseline_chunk),
            "sequential": pool.submit(run_scenario, "sequential", ["--sequential", *alias], f"{ALIAS_BASELINE},{REGUIDE}", workdir, data_root, _half_of_reguide, "explicit"),
        }
        return {name: job.result() for name, job in jobs.items()}


def _ok(outcome: Outcome) -> Outcome:
    assert outcome.returncode == 0, outcome.describe()
    return outcome


def _same_metrics(outcome: Outcome, reference: Outcome, task: str, reference_task: str | None = None) -> None:
    got, want = outcome.metrics(task), reference.metrics(reference_task or task)
    assert set(got) == set(want)
    differing = {k: (got[k], want[k]) for k in want if not (got[k] == want[k] or (isinstance(got[k], float) and math.isnan(got[k]) and math.isnan(want[k])))}
    assert not differing, f"{outcome.name}/{task}: (resumed, uninterrupted) {differing}"
    assert got["oodd"] == N_DOCS  # a real comparison, not two runs that both scored nothing


# ---------------------------------------------------------------- checks
def test_stable_cache_run_id() -> None:
    """Same command -> same run folder (a restart finds the killed run's answers); another command -> another."""
    first = stable_cache_run_id("reguide_scripted", "item_latency=0.1", REGUIDE)
    assert first == stable_cache_run_id("reguide_scripted", "item_latency=0.1", REGUIDE)
    assert first.startswith("reguide-") and all(c.isalnum() or c in "-_." for c in first)
    assert first != stable_cache_run_id("reguide_scripted", "item_latency=0.2", REGUIDE)
    assert first != stable_cache_run_id("reguide_scripted", "item_latency=0.1", BASELINE)


@pytest.mark.e2e
@pytest.mark.processes
@pytest.mark.hostile
@pytest.mark.hostile_concurrency  # issue 29 group 4: kill -9, then resume
def test_reference_run_answers_every_request_once(outcomes: dict[str, Outcome]) -> None:
    reference = _ok(outcomes["reference"])
    stages = Counter((row[0], row[2]) for row in reference.second)
    assert stages == {(BASELINE, "baseline"): N_DOCS, (ALIAS_BASELINE, "baseline"): N_DOCS, (REGUIDE, "stage1"): N_DOCS, (REGUIDE, "stage2"): N_DOCS}
    # --no_answer_cache: nothing kept, nothing said about it
    assert not (reference.output / "answer_cache").exists() and "answers kept in" not in reference.logs[-1]


@pytest.mark.e2e
@pytest.mark.processes
@pytest.mark.hostile
@pytest.mark.hostile_concurrency  # issue 29 group 4: kill -9, then resume
def test_batched_restart_regenerates_only_the_lost_chunk_and_what_followed(outcomes: dict[str, Outcome]) -> None:
    """Killed in the baseline's third chunk of 5: both batched ReGuide stages and two baseline chunks
    were cached; the restart answers the other 11 baseline requests."""
    outcome, reference = _ok(outcomes["batched"]), outcomes["reference"]
    assert outcome.killed, "the first run finished before the kill point: raise ITEM_LATENCY"
    reguide_requests = [row for row in reference.second if row[0] == REGUIDE]
    baseline_requests = [row for row in reference.second if row[0] == BASELINE]
    # Before the kill: all of stage 1 and stage 2, two whole baseline chunks and part of a third.
    assert Counter(row[2] for row in outcome.first if row[0] == REGUIDE) == {"stage1": N_DOCS, "stage2": N_DOCS}
    answered_baseline = [row for row in outcome.first if row[0] == BASELINE]
    assert 2 * SAVE_EVERY < len(answered_baseline) < 3 * SAVE_EVERY
    saved_baseline = answered_baseline[: 2 * SAVE_EVERY]
    assert Counter(outcome.cached_at_kill) == without_stage(reguide_requests) + without_stage(saved_baseline)
    # The restart: the baseline requests not saved, each once; not one ReGuide request of either stage.
    assert Counter(outcome.second) == Counter(baseline_requests) - Counter(saved_baseline), outcome.describe()
    assert not without_stage(outcome.second) & Counter(outcome.cached_at_kill)
    assert "Agentic round 1:" in outcome.logs[-1]  # the batched route ran (served from the cache)
    assert f"answers kept in {outcome.output / 'answer_cache'}" in outcome.logs[-1]  # said where, without being asked
    _same_metrics(outcome, reference, BASELINE)
    _same_metrics(outcome, reference, REGUIDE)


@pytest.mark.e2e
@pytest.mark.processes
@pytest.mark.hostile
@pytest.mark.hostile_concurrency  # issue 29 group 4: kill -9, then resume
def test_sequential_restart_regenerates_only_uncached_requests(outcomes: dict[str, Outcome]) -> None:
    """Killed half-way through lmms-eval's per-document loop: the baseline and the ReGuide requests already
    answered (both stages, request by request) are served from the cache; the restart answers the rest."""
    outcome, reference = _ok(outcomes["sequential"]), outcomes["reference"]
    assert outcome.killed, "the first run finished before the kill point: raise ITEM_LATENCY"
    everything = Counter(row for row in reference.second if row[0] in (ALIAS_BASELINE, REGUIDE))
    cached = Counter(outcome.cached_at_kill)
    cached_reguide = Counter(row[2] for row in outcome.first if row[0] == REGUIDE and cache_key(row) in cached)
    # The baseline call had returned: every baseline answer is cached. ReGuide: both stages, in part.
    assert sum(n for (task, _, _), n in cached.items() if task == ALIAS_BASELINE) == N_DOCS
    assert cached_reguide["stage1"] > 0 and cached_reguide["stage2"] > 0
    assert 0 < sum(n for (task, _, _), n in cached.items() if task == REGUIDE) < 2 * N_DOCS
    # The restart answers exactly what was not cached, each request once; nothing cached again.
    assert not without_stage(outcome.second) & cached
    assert without_stage(outcome.second) == without_stage(everything) - cached, outcome.describe()
    assert "Agentic round" not in outcome.logs[-1]  # lmms-eval's own loop, not the batched runner
    _same_metrics(outcome, reference, ALIAS_BASELINE)
    _same_metrics(outcome, reference, REGUIDE)
