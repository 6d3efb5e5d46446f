"""Two processes give the metrics of one: AUROC & co. are computed over the documents of every rank.

lmms-eval splits the documents over ranks (rank r takes documents r, r + W, ...), pads the shorter
ranks with a copy of their last request so that every rank runs as many requests, and gathers the
per-document metric items on rank 0 before aggregating. If it aggregated per rank and averaged, or
kept the padding copies, AUROC / FPR / fail rates / counts would differ from a one-process run. The
documents here are chosen so that they WOULD differ (checked first, so the test cannot pass
vacuously): 21 CIFAR10 documents (odd: rank 1 gets a padding request), 3 per dataset, one refused
by ``reguide_scripted`` (``fail_every``) and the others picked so that ID and OoD baseline scores
overlap (AUROC < 100).

Launching on CPU: ``accelerate launch --cpu --num_processes 2`` starts ONE process (accelerate
1.15 uses its single-process launcher whenever ``--cpu`` is given, multi-CPU needs mpirun), so the
runs here use ``accelerate launch --multi_gpu --num_processes 2`` (torch.distributed.run) with
``ACCELERATE_USE_CPU=1`` (gloo process group; without it accelerate on a GPU-less machine sets up no
process group at all) and ``CUDA_VISIBLE_DEVICES=``.

Runs (subprocesses, two at a time): one process through ``reguide-eval`` (reference); two processes
through ``reguide-eval`` (batched ReGuide) and plain ``lmms-eval --include_path`` (lmms-eval's own
per-document loop, which ``reguide-eval --sequential`` also runs: that route is checked against the
batched one in one process by test_e2e_llava and test_served_backend); each with the baseline and the
ReGuide task.
Then the tiny random LLaVA (``llava_hf``), one vs two processes: the same answer for every document.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cli_runs import (
    console_script,
    offline_env,
    read_metrics,
    read_results,
    read_samples,
)
from sklearn.metrics import roc_auc_score

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.data.documents import subset_documents, write_documents
from reguide_tasks.models.scripted import scripted_fails, scripted_score
from reguide_tasks.testing.fixtures import FORMATS, custom_documents_file, fixture_image

pytestmark = [pytest.mark.e2e, pytest.mark.processes]

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = "cifar10"
BASELINE, REGUIDE = "reguide_baseline_cifar10_custom", "reguide_cifar10_custom"
TASKS = (BASELINE, REGUIDE)
PER_DATASET = 3
FAIL_EVERY = 3
RUN_TIMEOUT_S = 300
WORLD = 2


# ---------------------------------------------------------------- documents
def pick_documents(benchmark: str = BENCHMARK, per_dataset: int = PER_DATASET, fail_every: int = FAIL_EVERY) -> list[dict]:
    """Per dataset (benchmark order): one document the scripted model refuses, the answered document
    with the score closest to the other side (lowest ID, highest OoD), then the first answered ones."""
    bench = get_benchmark(benchmark)
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for doc in subset_documents(benchmark, "subset25"):
        by_dataset[doc["dataset"]].append(doc)
    docs: list[dict] = []
    for dataset in bench.datasets:
        candidates = by_dataset[dataset]
        refused = next(d for d in candidates if scripted_fails(d["doc_key"], fail_every))
        answered = [d for d in candidates if not scripted_fails(d["doc_key"], fail_every)]
        sign = 1.0 if bench.role(dataset) == "id" else -1.0
        extreme = min(answered, key=lambda d: (sign * scripted_score(d["doc_key"], d["role"]), d["doc_key"]))
        rest = [d for d in answered if d is not extreme][: per_dataset - 2]
        docs.extend([refused, extreme, *rest])
    return docs


def write_data_root(root: Path, docs: list[dict], benchmark: str = BENCHMARK) -> Path:
    """Images at every document's path (OpenOOD layout) and the ``*_custom`` task's document file."""
    for index, doc in enumerate(docs):
        path = root / doc["image"]
        path.parent.mkdir(parents=True, exist_ok=True)
        fixture_image(index, 32).save(path, format=FORMATS.get(path.suffix.lower(), "PNG"))
    write_documents(docs, custom_documents_file(root, benchmark))
    return root


def expected_baseline(docs: list[dict], benchmark: str = BENCHMARK) -> dict[str, float]:
    """What the scripted model's baseline answers must aggregate to over ``docs`` (sklearn)."""
    bench = get_benchmark(benchmark)
    failed = {d["doc_key"]: scripted_fails(d["doc_key"], FAIL_EVERY) for d in docs}
    scores = {d["doc_key"]: scripted_score(d["doc_key"], d["role"]) for d in docs}
    id_scores = [scores[d["doc_key"]] for d in docs if d["role"] == "id" and not failed[d["doc_key"]]]
    out: dict[str, float] = {}
    for dataset in bench.ood_datasets:
        ood = [scores[d["doc_key"]] for d in docs if d["dataset"] == dataset and not failed[d["doc_key"]]]
        if id_scores and ood:
            labels = [1] * len(id_scores) + [0] * len(ood)
            out[f"auroc_{dataset}"] = 100.0 * roc_auc_score(labels, id_scores + ood)
        else:
            out[f"auroc_{dataset}"] = float("nan")
    for dataset in bench.datasets:
        mine = [failed[d["doc_key"]] for d in docs if d["dataset"] == dataset]
        out[f"fail_rate_{dataset}"] = 100.0 * float(np.mean(mine)) if mine else float("nan")
    out["id_acc"] = 100.0 * float(np.mean([not failed[d["doc_key"]] for d in docs if d["role"] == "id"]))
    out["oodd"] = float(sum(not f for f in failed.values()))
    return out


def mean_of_rank_values(docs: list[dict], world: int = WORLD) -> dict[str, float]:
    """The wrong way: aggregate on each rank's documents (lmms-eval's split), then average the ranks."""
    per_rank = [expected_baseline(docs[rank::world]) for rank in range(world)]
    return {key: float(np.mean([values[key] for values in per_rank])) for key in per_rank[0]}


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


# ---------------------------------------------------------------- running
@dataclass
class Run:
    name: str
    argv: list[str]
    returncode: int
    log: str
    output: Path
    calls: Path
    seconds: float

    def describe(self) -> str:
        return f"[{self.name}] $ {' '.join(self.argv)}\nexit {self.returncode} after {self.seconds:.0f}s\n--- log (tail)\n{self.log[-4000:]}"

    def results(self) -> dict:
        return read_results(self.output, self.describe())

    def metrics(self, task: str) -> dict[str, float]:
        return read_metrics(self.output, task, self.describe())

    def samples(self, task: str) -> list[dict]:
        return read_samples(self.output, task, self.describe())

    def call_lines(self, task: str) -> list[tuple[str, ...]]:
        """The scripted model's ``log_calls`` lines of one task: (task, doc_id, stage, prompt hash)."""
        if not self.calls.exists():
            return []
        rows = [tuple(line.split("\t")) for line in self.calls.read_text(encoding="utf-8").splitlines() if line]
        return [row for row in rows if row[0] == task]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_processes(module: str) -> list[str]:
    """``accelerate launch`` of ``python -m module`` in two CPU processes (see the module docstring)."""
    return [console_script("accelerate"), "launch", "--multi_gpu", "--num_processes", str(WORLD), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()), "-m", module]


def run_cli(name: str, argv: list[str], workdir: Path, data_root: Path) -> Run:
    run_dir = workdir / name
    output = run_dir / "output"
    run_dir.mkdir(parents=True)
    calls = run_dir / "calls.txt"
    argv = [arg.replace("{OUTPUT}", str(output)).replace("{CALLS}", str(calls)) for arg in argv]
    env = offline_env(run_dir, ("REGUIDE_", "LMMS_CACHE"), REGUIDE_DATA_ROOT=str(data_root), TOKENIZERS_PARALLELISM="false",
                      ACCELERATE_USE_CPU="1", CUDA_VISIBLE_DEVICES="")
    started = time.monotonic()
    try:
        done = subprocess.run(argv, check=False, cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True, errors="replace", timeout=RUN_TIMEOUT_S)
        returncode, log = done.returncode, done.stdout
    except subprocess.TimeoutExpired as exc:
        returncode, log = -9, (exc.stdout or "") if isinstance(exc.stdout, str) else ""
    return Run(name, argv, returncode, log, output, calls, time.monotonic() - started)


@pytest.fixture(scope="module")
def documents() -> list[dict]:
    return pick_documents()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, documents: list[dict], tiny_llava_dir: Path) -> dict[str, Run]:
    data_root = write_data_root(tmp_path_factory.mktemp("mp_data"), documents)
    workdir = tmp_path_factory.mktemp("mp_runs")
    tasks = ["--tasks", ",".join(TASKS)]
    scripted = ["--model", "reguide_scripted", "--model_args", f"fail_every={FAIL_EVERY},log_calls={{CALLS}}",
                "--output_path", "{OUTPUT}", "--log_samples"]
    llava = ["--model", "llava_hf", "--model_args", f"pretrained={tiny_llava_dir},device=cpu,device_map=cpu,dtype=float32",
             "--gen_kwargs", "max_new_tokens=8", "--output_path", "{OUTPUT}", "--log_samples", *tasks]
    specs = {
        "single": [console_script("reguide-eval"), *tasks, *scripted],
        "two_batched": [*two_processes("reguide_tasks.lmms.cli"), *tasks, *scripted],
        "two_plain_lmms_eval": [*two_processes("lmms_eval"), "--include_path", str(REPO_ROOT / "tasks_yaml"), *tasks, *scripted],
        "llava_single": [console_script("reguide-eval"), *llava],
        "llava_two": [*two_processes("reguide_tasks.lmms.cli"), *llava],
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_cli, name, argv, workdir, data_root) for name, argv in specs.items()}
        return {name: future.result() for name, future in futures.items()}


SCRIPTED_MULTI = ("two_batched", "two_plain_lmms_eval")


def _ok(run: Run) -> Run:
    assert run.returncode == 0, run.describe()
    assert "Traceback" not in run.log, run.describe()
    return run


# ---------------------------------------------------------------- checks
def test_documents_tell_global_from_per_rank_aggregation(documents: list[dict]) -> None:
    """Guard against a vacuous pass: on these documents a mean of per-rank values is not the truth."""
    assert len(documents) == 21 and len(documents) % WORLD == 1
    assert len({d["doc_key"] for d in documents}) == len(documents)
    truth, wrong = expected_baseline(documents), mean_of_rank_values(documents)
    assert any(0.0 < truth[f"auroc_{d}"] < 100.0 for d in get_benchmark(BENCHMARK).ood_datasets)
    differing = [key for key in truth if not same(truth[key], wrong[key])]
    assert len(differing) >= 3, (truth, wrong)


def test_two_processes_really_ran_with_padding(runs: dict[str, Run], documents: list[dict]) -> None:
    """Both ranks answered; rank 1 (10 documents) got one padding request per task, rank 0 none."""
    n = len(documents)
    single = _ok(runs["single"])
    assert len(single.call_lines(BASELINE)) == n
    for name in SCRIPTED_MULTI:
        run = _ok(runs[name])
        assert "Running on rank 1" in run.log, run.describe()
        baseline_ids = Counter(int(row[1]) for row in run.call_lines(BASELINE))
        assert set(baseline_ids) == set(range(n))
        assert sorted(baseline_ids.values()) == [1] * (n - 1) + [2], f"{name}: one padding request expected: {baseline_ids}"
        reguide_ids = Counter(int(row[1]) for row in run.call_lines(REGUIDE))
        assert sum(reguide_ids.values()) == 2 * (n + 1), f"{name}: two rounds for n documents + the padding one"


def test_every_document_scored_once(runs: dict[str, Run], documents: list[dict]) -> None:
    """Sample count == document count: padding copies are answered but never scored or logged."""
    images = sorted(d["image"] for d in documents)
    for name in ("single", *SCRIPTED_MULTI, "llava_single", "llava_two"):
        run = _ok(runs[name])
        for task in TASKS:
            samples = run.samples(task)
            assert sorted(s["doc_id"] for s in samples) == list(range(len(documents))), f"{name}/{task}"
            assert sorted(s["oodd"]["image"] for s in samples) == images, f"{name}/{task}"
            assert run.results()["n-samples"][task] == {"original": len(documents), "effective": len(documents)}


def test_two_processes_give_the_single_process_metrics(runs: dict[str, Run]) -> None:
    reference = _ok(runs["single"])
    for name in SCRIPTED_MULTI:
        run = _ok(runs[name])
        for task in TASKS:
            a, b = reference.metrics(task), run.metrics(task)
            assert set(a) == set(b), f"{name}/{task}"
            differing = {key: (a[key], b[key]) for key in a if not same(a[key], b[key])}
            assert not differing, f"{name}/{task}: (one process, two) {differing}"
            assert sorted(json.dumps(s["oodd"], sort_keys=True) for s in reference.samples(task)) == sorted(
                json.dumps(s["oodd"], sort_keys=True) for s in run.samples(task)
            ), f"{name}/{task}: per-document records differ"


def test_metrics_are_over_all_documents_not_a_mean_over_ranks(runs: dict[str, Run], documents: list[dict]) -> None:
    truth = expected_baseline(documents)
    for name in ("single", *SCRIPTED_MULTI):
        got = _ok(runs[name]).metrics(BASELINE)
        wrong = {key: (got[key], value) for key, value in truth.items() if not (same(got[key], value) or got[key] == pytest.approx(value, abs=1e-9))}
        assert not wrong, f"{name}: (got, sklearn over all documents) {wrong}"
        # ReGuide: the same documents are refused at both stages, so fail rates and counts match too.
        reguide = runs[name].metrics(REGUIDE)
        for key in [k for k in truth if k.startswith("fail_rate_")] + ["oodd", "id_acc"]:
            assert reguide[key] == pytest.approx(truth[key], abs=1e-9), f"{name}: {key}"
        assert reguide["auroc_near"] == 100.0  # scripted stage 2 halves OoD scores: full separation


def test_tiny_llava_answers_are_the_same_in_two_processes(runs: dict[str, Run]) -> None:
    """A real lmms-eval backend (greedy, batch size 1): rank splitting changes no answer and no metric."""
    single, two = _ok(runs["llava_single"]), _ok(runs["llava_two"])
    assert "Running on rank 1" in two.log
    for task in TASKS:
        a = {s["doc_id"]: s["filtered_resps"] for s in single.samples(task)}
        b = {s["doc_id"]: s["filtered_resps"] for s in two.samples(task)}
        assert a == b, task
        assert any(str(v).strip() for v in a.values()), "the tiny model generated nothing at all"
        ma, mb = single.metrics(task), two.metrics(task)
        assert all(same(ma[key], mb[key]) for key in ma), task
