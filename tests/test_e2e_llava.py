"""End to end: our tasks through the real CLIs (``reguide-eval``, plain ``lmms-eval``) in subprocesses.

Models: lmms-eval's own ``llava_hf`` (a chat backend) on a tiny random LLaVA and ``qwen2_vl`` (a
simple backend) on a tiny random Qwen2-VL (``tiny_models``): their answers are noise, so these runs
test the path (model loading offline, prompts, images, both request shapes of the batched and the
sequential two-stage routes, scoring, the result and sample files), not the numbers.
``reguide_scripted`` is deterministic: its metrics are recomputed here with scikit-learn.

lmms-eval's CLI exits 0 after a failed evaluation (unless ``--verbosity DEBUG``), and ``llava_hf``
logs and swallows generation errors, so every check reads the result files and the log. The runs are
subprocesses started on first use; asking for one also starts the next in :data:`RUN_ORDER`, so two
run at a time (about half the sum of their times). Everything runs with the hub switched off.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from cli_runs import console_script, offline_env, read_metrics, read_results, read_samples
from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.testing.fixtures import make_fixture
from reguide_tasks.models.scripted import scripted_fails, scripted_score
from reguide_tasks.lmms.records import metric_keys

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 400
MAX_NEW_TOKENS = 8
FAIL_EVERY = 3
MISSING_IMAGES = 3
BOGUS_CHECKPOINT = "no-such-tiny-checkpoint-7f3a"

LLAVA_BASELINE, LLAVA_REGUIDE = "reguide_baseline_cifar10_custom", "reguide_cifar10_custom"
SCRIPTED_BASELINE, SCRIPTED_REGUIDE = "reguide_baseline_imagenet200_custom", "reguide_imagenet200_custom"
RECORD_FIELDS = {"dataset", "role", "image", "label_name", "prediction", "correct", "ood_score", "failed", "status", "reason", "score_rule", "failure_policy",
                 "key_reading", "repaired_keys", "repaired_prediction", "unknown_keys", "score_repaired", "not_in_release"}
REGUIDE_RECORD_FIELDS = RECORD_FIELDS | {"stage1", "suggestions_kept", "suggestions_dropped", "stage2", "suggestions_source"}
RUN_ORDER = ("llava_batched", "llava_sequential", "qwen_batched", "scripted_batched", "scripted_sequential", "plain_failing", "wrong_root")


# ---------------------------------------------------------------- running the CLIs
@dataclass
class Run:
    """One finished CLI run: exit status, logs, and the files it wrote under ``output``."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    output: Path
    seconds: float

    @property
    def log(self) -> str:
        """Both streams: lmms-eval's logger writes to stdout, our CLI's error line to stderr."""
        return self.stdout + self.stderr

    def describe(self) -> str:
        return f"$ {' '.join(self.argv)}\nexit {self.returncode} after {self.seconds:.0f}s\n--- log (tail)\n{self.log[-4000:]}"

    def results(self) -> dict:
        return read_results(self.output, self.describe())

    def metrics(self, task: str) -> dict[str, float]:
        return read_metrics(self.output, task, self.describe())

    def samples(self, task: str) -> list[dict]:
        return sorted(read_samples(self.output, task, self.describe()), key=lambda row: row["doc_id"])


@dataclass
class _Pending:
    argv: list[str]
    output: Path
    logs: Path
    process: subprocess.Popen
    started: float


@dataclass
class RunPool:
    """Starts each named run as a subprocess on first use and keeps the next one in order running too
    (two at a time at most)."""

    specs: dict[str, tuple[list[str], dict[str, str]]]
    workdir: Path
    order: tuple[str, ...] = RUN_ORDER
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _done: dict[str, Run] = field(default_factory=dict)

    def _start(self, name: str) -> None:
        if name in self._pending or name in self._done:
            return
        argv, extra_env = self.specs[name]
        run_dir = self.workdir / name
        output, logs = run_dir / "output", run_dir / "logs"
        logs.mkdir(parents=True)
        argv = [arg.replace("{OUTPUT}", str(output)) for arg in argv]
        env = offline_env(run_dir, TOKENIZERS_PARALLELISM="false", **extra_env)
        # The child keeps its own copies of the log files' descriptors: the parent closes its at once.
        with open(logs / "stdout.txt", "w", encoding="utf-8") as out, open(logs / "stderr.txt", "w", encoding="utf-8") as err:
            process = subprocess.Popen(argv, cwd=run_dir, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self._pending[name] = _Pending(argv, output, logs, process, time.monotonic())

    def _finish(self, name: str) -> Run:
        pending = self._pending.pop(name)
        try:
            returncode = pending.process.wait(timeout=max(1.0, RUN_TIMEOUT_S - (time.monotonic() - pending.started)))
        except subprocess.TimeoutExpired:
            pending.process.kill()
            returncode = pending.process.wait()
        run = Run(
            pending.argv,
            returncode,
            (pending.logs / "stdout.txt").read_text(encoding="utf-8", errors="replace"),
            (pending.logs / "stderr.txt").read_text(encoding="utf-8", errors="replace"),
            pending.output,
            time.monotonic() - pending.started,
        )
        self._done[name] = run
        return run

    def get(self, name: str) -> Run:
        if name in self._done:
            return self._done[name]
        self._start(name)
        following = [n for n in self.order if n not in self._pending and n not in self._done]
        if following and len(self._pending) < 2:
            self._start(following[0])
        return self._finish(name)

    def close(self) -> None:
        for name in list(self._pending):
            self._pending[name].process.kill()
            self._finish(name)


def _llava_args(checkpoint: Path | str) -> str:
    # device_map must be given on CPU: llava_hf passes its default "" to from_pretrained, which rejects it.
    return f"pretrained={checkpoint},device=cpu,device_map=cpu,dtype=float32"


def _partial_root(root: Path, per_dataset: int) -> Path:
    """A data root holding the cifar10 document file but missing ``MISSING_IMAGES`` of its images."""
    docs = make_fixture(root, "cifar10", per_dataset)
    for doc in docs[-MISSING_IMAGES:]:
        (root / doc["image"]).unlink()
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, fixture_data, tiny_llava_dir: Path, tiny_qwen2_vl_dir: Path) -> Iterator[RunPool]:
    reguide_eval, lmms_eval = console_script("reguide-eval"), console_script("lmms-eval")
    root = str(fixture_data.root)
    partial_root = _partial_root(tmp_path_factory.mktemp("partial_root"), fixture_data.per_dataset)
    common = ["--output_path", "{OUTPUT}", "--log_samples"]
    short = ["--gen_kwargs", f"max_new_tokens={MAX_NEW_TOKENS}", "--data_root", root, *common]
    llava = ["--model", "llava_hf", "--model_args", _llava_args(tiny_llava_dir), *short]
    qwen_args = f"pretrained={tiny_qwen2_vl_dir},device=cpu,device_map=cpu,min_pixels={28 * 28},max_pixels={56 * 56}"
    scripted = ["--model", "reguide_scripted", "--data_root", root, *common]
    specs = {
        "llava_batched": ([reguide_eval, "--tasks", f"{LLAVA_BASELINE},{LLAVA_REGUIDE}", *llava], {}),
        "llava_sequential": ([reguide_eval, "--sequential", "--tasks", LLAVA_REGUIDE, *llava], {}),
        "qwen_batched": ([reguide_eval, "--tasks", f"{LLAVA_BASELINE},{LLAVA_REGUIDE}", "--model", "qwen2_vl", "--model_args", qwen_args, *short], {}),
        "scripted_batched": ([reguide_eval, "--tasks", f"{SCRIPTED_BASELINE},{SCRIPTED_REGUIDE}", *scripted], {}),
        "scripted_sequential": ([reguide_eval, "--sequential", "--tasks", SCRIPTED_REGUIDE, *scripted], {}),
        "plain_failing": (
            [lmms_eval, "--include_path", str(REPO_ROOT / "tasks_yaml"), "--tasks", SCRIPTED_BASELINE,
             "--model", "reguide_scripted", "--model_args", f"fail_every={FAIL_EVERY}", *common],
            {"REGUIDE_DATA_ROOT": root},
        ),
        "wrong_root": (
            [reguide_eval, "--model", "llava_hf", "--model_args", _llava_args(BOGUS_CHECKPOINT), "--tasks", LLAVA_BASELINE,
             "--data_root", str(partial_root), *common],
            {},
        ),
    }
    pool = RunPool(specs, tmp_path_factory.mktemp("e2e_runs"))
    yield pool
    pool.close()


# ---------------------------------------------------------------- helpers for the checks
def _assert_ok(run: Run) -> None:
    assert run.returncode == 0, run.describe()
    # llava_hf catches a failing generate() and answers "": the exit status and the files would not show it.
    assert "in generating" not in run.log, run.describe()


def _assert_every_metric_key(run: Run, task: str, benchmark: str) -> dict[str, float]:
    metrics = run.metrics(task)
    missing = [key for key in metric_keys(get_benchmark(benchmark)) if key not in metrics]
    assert not missing, f"{task}: metric keys missing from the results file: {missing}"
    return metrics


def _assert_records(samples: list[dict], docs: list[dict], fields: set[str]) -> list[dict]:
    """Every fixture document is logged once, with a complete ``oodd`` record; return the records."""
    records = [sample["oodd"] for sample in samples]
    assert sorted(r["image"] for r in records) == sorted(d["image"] for d in docs)
    for record in records:
        assert fields <= set(record), f"record lacks {fields - set(record)}: {record}"
        assert isinstance(record["status"], str) and record["status"]
        assert record["failed"] == (record["ood_score"] is None)
        if record["failed"]:
            assert record["reason"], f"a failed record must say why: {record}"
    return records


def _assert_consistent_counts(metrics: dict[str, float], records: list[dict], datasets: tuple[str, ...]) -> None:
    """``oodd`` counts usable scores and ``fail_rate_<d>`` is each dataset's share of failed records."""
    assert metrics["oodd"] == sum(not r["failed"] for r in records)
    for dataset in datasets:
        mine = [r["failed"] for r in records if r["dataset"] == dataset]
        assert metrics[f"fail_rate_{dataset}"] == pytest.approx(100.0 * np.mean(mine)), dataset


def _same(a: float, b: float) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def _first_fpr_at(positive: np.ndarray, scores: np.ndarray, level: float = 0.95) -> float:
    fpr, tpr, _ = roc_curve(positive, scores)
    return float(fpr[np.argmax(tpr >= level)]) * 100.0


def expected_scripted_baseline(docs: list[dict], benchmark_name: str) -> dict[str, float]:
    """The baseline metrics of ``reguide_scripted`` (no failures), computed directly with scikit-learn."""
    bench = get_benchmark(benchmark_name)
    score = {d["doc_key"]: scripted_score(d["doc_key"], d["role"]) for d in docs}
    id_scores = [score[d["doc_key"]] for d in docs if d["role"] == "id"]
    expected: dict[str, float] = {}
    for dataset in bench.ood_datasets:
        ood_scores = [score[d["doc_key"]] for d in docs if d["dataset"] == dataset]
        s = np.asarray(id_scores + ood_scores)
        is_id = np.asarray([True] * len(id_scores) + [False] * len(ood_scores))
        expected[f"auroc_{dataset}"] = roc_auc_score(is_id, s) * 100.0
        expected[f"fpr95_{dataset}"] = _first_fpr_at(~is_id, -s)  # OpenOOD: OoD positive, score -S
        expected[f"fpr95tpr_{dataset}"] = _first_fpr_at(is_id, s)  # classic: ID positive, score S
        expected[f"aupr_in_{dataset}"] = average_precision_score(is_id, s) * 100.0
        expected[f"aupr_out_{dataset}"] = average_precision_score(~is_id, -s) * 100.0
    for group, members in (("near", bench.near), ("far", bench.far)):
        for family in ("auroc", "fpr95", "fpr95tpr", "aupr_in", "aupr_out"):
            expected[f"{family}_{group}"] = float(np.mean([expected[f"{family}_{d}"] for d in members]))
    expected["id_acc"] = 100.0
    expected.update({f"fail_rate_{d}": 0.0 for d in bench.datasets})
    expected.update({f"repaired_rate_{d}": 0.0 for d in bench.datasets})  # its answers spell every class exactly
    expected.update({f"not_in_release_{d}": 0.0 for d in bench.datasets})
    expected["oodd"] = float(len(docs))
    return expected


# ---------------------------------------------------------------- (a), (b): the llava_hf path
def test_llava_baseline_finishes_with_every_metric_and_record(runs: RunPool, fixture_data) -> None:
    run = runs.get("llava_batched")
    _assert_ok(run)
    assert "lmms_eval.models.chat.llava_hf" in run.results()["config"]["model_backend"]
    metrics = _assert_every_metric_key(run, LLAVA_BASELINE, "cifar10")
    samples = run.samples(LLAVA_BASELINE)
    records = _assert_records(samples, fixture_data.documents["cifar10"], RECORD_FIELDS)
    _assert_consistent_counts(metrics, records, get_benchmark("cifar10").datasets)
    assert any(str(s["filtered_resps"]).strip() for s in samples), "the tiny model generated nothing at all"


def test_llava_reguide_finishes_batched_and_sequential(runs: RunPool, fixture_data) -> None:
    docs = fixture_data.documents["cifar10"]
    for name in ("llava_batched", "llava_sequential"):
        run = runs.get(name)
        _assert_ok(run)
        metrics = _assert_every_metric_key(run, LLAVA_REGUIDE, "cifar10")
        records = _assert_records(run.samples(LLAVA_REGUIDE), docs, REGUIDE_RECORD_FIELDS)
        _assert_consistent_counts(metrics, records, get_benchmark("cifar10").datasets)
        assert any(r["stage1"] for r in records) and any(r["stage2"] for r in records), name
    # The batched runner announces its rounds; --sequential must leave lmms-eval's own loop in place.
    assert "Agentic round 2:" in runs.get("llava_batched").log
    assert "Agentic round" not in runs.get("llava_sequential").log


def test_llava_routes_give_the_same_answers(runs: RunPool) -> None:
    """Greedy decoding at batch size 1: both routes send the same prompts, so every answer matches."""
    batched = {s["doc_id"]: s["filtered_resps"] for s in runs.get("llava_batched").samples(LLAVA_REGUIDE)}
    sequential = {s["doc_id"]: s["filtered_resps"] for s in runs.get("llava_sequential").samples(LLAVA_REGUIDE)}
    assert batched == sequential


def test_qwen2_vl_simple_backend_finishes_both_tasks(runs: RunPool, fixture_data) -> None:
    """``qwen2_vl`` is a simple (non-chat) backend: the batched runner sends it the other request shape."""
    run = runs.get("qwen_batched")
    _assert_ok(run)
    assert "lmms_eval.models.simple.qwen2_vl" in run.results()["config"]["model_backend"]
    assert "Agentic round 2:" in run.log
    for task, fields in ((LLAVA_BASELINE, RECORD_FIELDS), (LLAVA_REGUIDE, REGUIDE_RECORD_FIELDS)):
        metrics = _assert_every_metric_key(run, task, "cifar10")
        records = _assert_records(run.samples(task), fixture_data.documents["cifar10"], fields)
        _assert_consistent_counts(metrics, records, get_benchmark("cifar10").datasets)
    assert any(str(s["filtered_resps"]).strip() for s in run.samples(LLAVA_BASELINE))


# ---------------------------------------------------------------- (c): exact numbers with reguide_scripted
def test_scripted_reguide_routes_identical(runs: RunPool, fixture_data) -> None:
    batched, sequential = runs.get("scripted_batched"), runs.get("scripted_sequential")
    _assert_ok(batched)
    _assert_ok(sequential)
    a, b = batched.metrics(SCRIPTED_REGUIDE), sequential.metrics(SCRIPTED_REGUIDE)
    assert set(a) == set(b)
    differing = {key: (a[key], b[key]) for key in a if not _same(a[key], b[key])}
    assert not differing, f"batched vs sequential: {differing}"
    n_docs = len(fixture_data.documents["imagenet200"])
    assert a["oodd"] == n_docs and math.isfinite(a["auroc_near"])  # not a vacuous match of NaNs
    records_a = [s["oodd"] for s in batched.samples(SCRIPTED_REGUIDE)]
    records_b = [s["oodd"] for s in sequential.samples(SCRIPTED_REGUIDE)]
    assert records_a == records_b
    # The scripted stage 1 suggests 40 names; filtering drops two ID classes and one duplicate.
    assert all(len(r["suggestions_kept"]) == 37 and len(r["suggestions_dropped"]) == 3 for r in records_a)


def test_scripted_baseline_metrics_equal_sklearn(runs: RunPool, fixture_data) -> None:
    run = runs.get("scripted_batched")
    _assert_ok(run)
    metrics = _assert_every_metric_key(run, SCRIPTED_BASELINE, "imagenet200")
    expected = expected_scripted_baseline(fixture_data.documents["imagenet200"], "imagenet200")
    assert set(expected) == set(metric_keys(get_benchmark("imagenet200")))
    wrong = {key: (metrics[key], value) for key, value in expected.items() if metrics[key] != pytest.approx(value, abs=1e-9)}
    assert not wrong, f"(got, sklearn): {wrong}"


# ---------------------------------------------------------------- (d): plain lmms-eval, with failures
def test_plain_lmms_eval_runs_our_task_and_counts_failures(runs: RunPool, fixture_data) -> None:
    run = runs.get("plain_failing")
    assert run.returncode == 0, run.describe()
    metrics = _assert_every_metric_key(run, SCRIPTED_BASELINE, "imagenet200")
    docs = fixture_data.documents["imagenet200"]
    fails = {d["doc_key"]: scripted_fails(d["doc_key"], FAIL_EVERY) for d in docs}
    assert 0 < sum(fails.values()) < len(docs)  # the fixture exercises both outcomes
    for dataset in get_benchmark("imagenet200").datasets:
        share = np.mean([fails[d["doc_key"]] for d in docs if d["dataset"] == dataset])
        assert metrics[f"fail_rate_{dataset}"] == pytest.approx(100.0 * share), dataset
    assert metrics["oodd"] == len(docs) - sum(fails.values())
    failed_records = [s["oodd"] for s in run.samples(SCRIPTED_BASELINE) if s["oodd"]["failed"]]
    assert len(failed_records) == sum(fails.values())
    assert all(r["status"] == "failed" and r["reason"] for r in failed_records)


# ---------------------------------------------------------------- (e): errors (the task listing: test_cli_basics, test_packaging)
def test_wrong_data_root_fails_before_the_model_loads(runs: RunPool, fixture_data) -> None:
    run = runs.get("wrong_root")
    assert run.returncode != 0, run.describe()
    errors = [line for line in run.stderr.splitlines() if line.startswith("reguide-eval: error:")]
    assert len(errors) == 1, run.describe()
    n_docs = len(fixture_data.documents["cifar10"])
    partial_root = Path(run.argv[run.argv.index("--data_root") + 1]).resolve()
    assert f"{MISSING_IMAGES} of {n_docs} images missing" in errors[0]
    assert str(partial_root) in errors[0]
    # Loading the bogus checkpoint first would have failed on its name instead, with a traceback.
    assert BOGUS_CHECKPOINT not in run.log and "Traceback" not in run.log, run.describe()
    assert not list(run.output.rglob("*_results.json"))


def test_our_task_names_do_not_clash_with_lmms_eval_builtins() -> None:
    from lmms_eval.tasks import TaskManager

    from reguide_tasks.lmms.cli import TAGS
    from reguide_tasks.lmms.task_yamls import task_variants

    builtin = set(TaskManager(verbosity="ERROR").all_tasks)  # no include path: lmms-eval's own tasks only
    assert len(builtin) > 100 and "mme" in builtin  # the index really is lmms-eval's
    ours = {v.name for v in task_variants()} | set(TAGS)
    assert not ours & builtin, f"clashing names: {sorted(ours & builtin)}"
