"""Quick trials that mean something: a ``--limit`` prefix holds every dataset, a run says why a metric
is n/a, the leaderboard ranks without ``--rank-by`` on the authors' own release, FPR cells resting on
tied scores are marked, and ``--dry_run`` says what a run would send.

The runs replay the authors' released GPT-4o answers shipped in the package (no images, no model
weights needed); nothing is mocked.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from html import escape
from pathlib import Path

import numpy as np
import pytest
from cli_runs import offline_env, read_metrics, read_samples, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from reguide_tasks.data.documents import interleave_by_dataset
from reguide_tasks.data.release import RELEASE_DIR, read_release_file, resolve_release_file
from reguide_tasks.lmms.dry_run import TokenCounter, estimate, stage_prompts, token_counter
from reguide_tasks.lmms.hooks import document_set
from reguide_tasks.lmms.task_yamls import task_variants
from reguide_tasks.metrics.ood import fpr_at_95_openood, fpr_at_95_tpr, fpr_tie_range
from reguide_tasks.report.ties import TIE_MARK, tie_columns, tie_flagged

BIN = Path(sys.executable).parent
TASK = "reguide_baseline_imagenet200_5pct"
REGUIDE_TASK = "reguide_imagenet200_5pct"  # the --dry_run tests
REPO = Path(__file__).resolve().parents[1]
BEFORE = json.loads((Path(__file__).parent / "data" / "demo_figures_57cdb84.json").read_text(encoding="utf-8"))
RELEASED_OOD = ("ninco", "inaturalist", "textures", "openimage_o")  # the 5% sample has no SSB-hard answers


def _eval(tmp_path: Path, out: Path, *args: str, program: str = "reguide-eval") -> subprocess.CompletedProcess:
    argv, env = [*args, "--output_path", str(out), "--log_samples"], offline_env(tmp_path)
    if program == "reguide-eval":  # a fork of this process (tests/cli_runs.py); plain lmms-eval: a process of its own
        done = run_cli(program, argv, env=env, cwd=tmp_path)
    else:
        done = subprocess.run([str(BIN / program), *argv], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


# ------------------------------------------------------------------ document order
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=6))
def test_every_prefix_holds_each_dataset_in_proportion(sizes):
    # dataset i: n documents in 1 + i % 3 classes, grouped by class as the authors' lists are
    docs = [{"dataset": f"d{i}", "label_name": f"c{j * (1 + i % 3) // n}", "n": j} for i, n in enumerate(sizes) for j in range(n)]
    order = interleave_by_dataset(docs)
    assert sorted(map(id, order)) == sorted(map(id, docs))  # the same documents
    total, seen = len(docs), Counter()
    for k, doc in enumerate(order, 1):
        seen[doc["dataset"]] += 1
        for i, n in enumerate(sizes):
            assert abs(seen[f"d{i}"] - k * n / total) <= 1.0, (k, i, seen)
    for i in range(len(sizes)):  # within a dataset: classes take turns, each class in its own order
        mine = [d for d in order if d["dataset"] == f"d{i}"]
        for c in {d["label_name"] for d in mine}:
            assert [d["n"] for d in mine if d["label_name"] == c] == sorted(d["n"] for d in mine if d["label_name"] == c)
        classes, so_far = Counter(d["label_name"] for d in mine), Counter()
        for k, doc in enumerate(mine, 1):  # every prefix of the dataset holds its classes in proportion
            so_far[doc["label_name"]] += 1
            assert all(abs(so_far[c] - k * m / len(mine)) < 1.5 for c, m in classes.items())


def test_every_task_of_ours_interleaves_its_documents(monkeypatch):
    from datasets import Dataset

    from reguide_tasks.lmms.hooks import expand_document_sets
    from reguide_tasks.lmms.run_state import RUN

    monkeypatch.setattr(RUN, "images_required", False)  # as under reguide_replay: no images here
    spec = Dataset.from_list([{"benchmark": "imagenet200", "subset": "subset5", "path": "", "data_root": ""}])
    docs = list(expand_document_sets(spec))
    canonical = document_set("imagenet200", "subset5")
    assert sorted(d["doc_key"] for d in docs) == sorted(d["doc_key"] for d in canonical)
    first = Counter(d["dataset"] for d in docs[:60])
    assert set(first) == {"imagenet200", "ssb_hard", *RELEASED_OOD}, first
    assert docs[0]["dataset"] != docs[1]["dataset"]
    # the released ID list is grouped by class; a prefix takes one image of each class in turn
    id_head = [d["label_name"] for d in docs[:400] if d["dataset"] == "imagenet200"]
    assert len(id_head) >= 35 and len(set(id_head)) == len(id_head)
    # each document keeps its place in the set's own list (the report restores that order)
    assert sorted(d["list_position"] for d in docs) == list(range(len(canonical)))
    assert all(canonical[d["list_position"]]["doc_key"] == d["doc_key"] for d in docs)


# ------------------------------------------------------------------ --limit runs
@pytest.fixture(scope="module")
def limited_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """reguide-eval --limit 60 on the 5% ImageNet200 baseline replay: its output folder and process."""
    tmp = tmp_path_factory.mktemp("limited")
    done = _eval(tmp, tmp / "out", "--model", "reguide_replay", "--model_args", "model=gpt,missing=skip", "--tasks", TASK, "--limit", "60")
    return tmp / "out", done


def test_limit_60_measures_every_released_dataset_and_explains_the_rest(limited_run):
    out, done = limited_run
    metrics = read_metrics(out, TASK)
    for dataset in RELEASED_OOD:
        assert math.isfinite(metrics[f"auroc_{dataset}"]), dataset
    assert math.isfinite(metrics["auroc_far"]) and math.isfinite(metrics["id_acc"])
    assert len(read_samples(out, TASK)) == 60
    # SSB-hard has no released answer: n/a, and the summary says why (and what near needs).
    assert "ssb_hard: AUROC, FPR@95, FPR@95TPR, AUPR n/a: " in done.stdout
    assert "ssb_hard documents have no released answer" in done.stdout
    assert "near: n/a: the mean over ssb_hard, ninco needs every one (ssb_hard n/a)" in done.stdout


def test_a_limit_too_small_for_a_dataset_is_explained(limited_run):
    """The first 3 of the run's records, read as a 3-document run would be: what the summary says."""
    from reguide_tasks.data.benchmarks import get_benchmark
    from reguide_tasks.report.files import read_records
    from reguide_tasks.report.runs import Run
    from reguide_tasks.report.samples import scores_from_records
    from reguide_tasks.report.unmeasured import unmeasured_lines

    samples = next(limited_run[0].rglob(f"*_samples_{TASK}.jsonl"))
    records = read_records(samples)[:3]
    assert "textures" not in {r["dataset"] for r in records}
    scores = scores_from_records(records, get_benchmark("imagenet200"))
    run = Run(task=TASK, benchmark="imagenet200", model="reguide_replay", model_args="", date="", results_path=samples,
              samples_path=samples, metrics={}, n_docs=3, n_docs_of_task=4170)
    lines = unmeasured_lines(run, scores)
    assert any(line.startswith("textures: AUROC") and "no textures document in this run" in line for line in lines), lines
    assert lines[-1].startswith("(--limit kept 3 of the task's 4,170 documents")


def test_a_run_without_output_path_still_explains_its_na(tmp_path):
    """The usual smoke test writes nothing: the summary comes from the results in memory (no samples:
    the reasons from the metrics)."""
    args = ["--model", "reguide_replay", "--model_args", "model=gpt,missing=skip", "--tasks", TASK, "--limit", "3"]
    done = run_cli("reguide-eval", args, env=offline_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"n/a in {TASK}:" in done.stdout
    # the first 3 documents: two SSB-hard (no released answer) and one OpenImage-O image
    assert "textures: AUROC, FPR@95, FPR@95TPR, AUPR n/a: no imagenet200 document in this run; no textures document in this run" in done.stdout
    assert "openimage_o: AUROC, FPR@95, FPR@95TPR, AUPR n/a: no imagenet200 document in this run\n" in done.stdout
    assert "ssb_hard: AUROC, FPR@95, FPR@95TPR, AUPR n/a: no imagenet200 document in this run; 2 ssb_hard documents have no released answer" in done.stdout
    assert "(--limit kept 3 of the task's 4,170 documents" in done.stdout
    assert "results: not written (no --output_path)" in done.stdout
    assert not list(tmp_path.rglob("*_results.json"))


def test_plain_lmms_eval_gets_the_same_interleaved_prefix(limited_run, tmp_path):
    """The order lives in the task's process_docs hook: lmms-eval's own CLI with --include_path gets it."""
    _eval(tmp_path, tmp_path / "plain", "--model", "reguide_replay", "--model_args", "model=gpt,missing=skip", "--tasks", TASK,
          "--limit", "60", "--include_path", str(REPO / "tasks_yaml"), program="lmms-eval")
    ours, plain = read_samples(limited_run[0], TASK), read_samples(tmp_path / "plain", TASK)
    assert [s["oodd"]["image"] for s in ours] == [s["oodd"]["image"] for s in plain]
    assert len({s["oodd"]["dataset"] for s in plain}) == 6


# ------------------------------------------------------------------ full runs: unchanged, and ranked
QWEN_ON_5PCT = "model=qwen,run=imagenet200-25%,missing=skip"  # the 25% release holds the 5% images


@pytest.fixture(scope="module")
def shipped_runs(tmp_path_factory) -> Path:
    """Runs of the shipped sample on the 5% ImageNet200 documents: the GPT-4o baseline and Qwen's 25%
    baseline answers replayed on the same documents (5% is inside 25%); one output folder, and its
    report with default flags."""
    tmp = tmp_path_factory.mktemp("shipped")
    for name, task, args in (("gpt", TASK, "model=gpt,missing=skip"), ("qwen", TASK, QWEN_ON_5PCT)):
        _eval(tmp, tmp / "out" / name, "--model", "reguide_replay", "--model_args", args, "--tasks", task)
    done = run_cli("reguide-report", [str(tmp / "out"), "--out", str(tmp / "report"), "--no-plots"], env=offline_env(tmp))
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp


def _board(folder: Path) -> dict[str, dict]:
    with open(folder / "imagenet200_leaderboard.csv", newline="", encoding="utf-8") as handle:
        return {"qwen" if "qwen" in row["model"] else row["task"]: row for row in csv.DictReader(handle)}


def _rank(row: dict) -> int | None:
    return int(float(row["rank"])) if row["rank"] else None


def test_full_run_figures_are_exactly_those_before_the_interleaving(shipped_runs):
    metrics = read_metrics(shipped_runs / "out" / "gpt", TASK)
    assert json.dumps(metrics, sort_keys=True) == json.dumps(BEFORE["metrics"], sort_keys=True)
    with open(shipped_runs / "report" / "imagenet200.csv", newline="", encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["task"] == TASK and "qwen" not in r["model"])
    assert {k: row[k] for k in BEFORE["report_cis"]} == BEFORE["report_cis"]  # bootstrap CIs, digit for digit


def test_default_leaderboard_falls_back_and_ranks_the_shipped_sample(shipped_runs):
    report = (shipped_runs / "report" / "report.md").read_text(encoding="utf-8")
    heading = next(line for line in report.splitlines() if line.startswith("### Leaderboard"))
    assert heading == ("### Leaderboard (fallback: AUROC near and AUROC far n/a in some run; "
                       "ranked by mean AUROC over ninco, inaturalist)"), heading
    board = _board(shipped_runs / "report")
    gpt, qwen = board[TASK], board["qwen"]
    assert gpt["documents"] == qwen["documents"] == "A (4,170)"
    assert {_rank(gpt), _rank(qwen)} == {1, 2}
    for row in (gpt, qwen):
        assert (row["ranked_by"], row["ranked_over"], row["passed_over"]) == ("auroc_mean", "ninco,inaturalist", "auroc_near,auroc_far")
    first = gpt if _rank(gpt) == 1 else qwen
    # DeLong's paired CI of the difference, on the documents both kept
    assert first["vs_next"].startswith("+") and first["vs_next"].count("[") == 1, first["vs_next"]
    assert math.isfinite(float(first["p_holm"]))


def test_every_fpr_column_has_its_legend_and_the_html_its_fallback(shipped_runs):
    from reguide_tasks.report.render import FPR_LEGEND
    from reguide_tasks.report.ties import tie_legend

    report = (shipped_runs / "report" / "report.md").read_text(encoding="utf-8")
    html = (shipped_runs / "report" / "report.html").read_text(encoding="utf-8")
    legends = [*FPR_LEGEND, tie_legend()]
    assert legends[0].startswith("FPR@95 (OpenOOD v1.5 rule)") and legends[1].startswith("FPR@95TPR (classic")
    for legend in legends:
        assert f"- {legend}" in report
        assert f"<li>{escape(legend)}</li>" in html
    assert "<h3>Leaderboard (fallback: AUROC near and AUROC far n/a in some run;" in html
    # the GPT-4o NINCO cell of the release rests on a wide tie block (docs/report.md quotes it)
    assert TIE_MARK in report


def test_rank_by_still_forces_one_metric(shipped_runs, tmp_path):
    done = run_cli("reguide-report", [str(shipped_runs / "out"), "--out", str(tmp_path), "--no-plots", "--no-html", "--rank-by", "auroc_far"],
                   env=offline_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    board = _board(tmp_path)
    assert _rank(board[TASK]) == 1 and _rank(board["qwen"]) is None  # Qwen has no far: unranked
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "### Leaderboard\n" in report and "Ranked by AUROC far (--rank-by, best first)" in report


def test_runs_without_samples_files_say_why_nothing_ranks(limited_run, tmp_path):
    """The --limit run's output folder without its samples file: what a run without --log_samples leaves."""
    shutil.copytree(limited_run[0], tmp_path / "out")
    for samples in (tmp_path / "out").rglob("*_samples_*.jsonl"):
        samples.unlink()
    done = run_cli("reguide-report", [str(tmp_path / "out"), "--out", str(tmp_path / "report"), "--no-plots", "--no-html"],
                   env=offline_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    heading = next(line for line in report.splitlines() if line.startswith("### Leaderboard"))
    assert heading == "### Leaderboard (not ranked: no run has a samples file (run with --log_samples))", heading
    assert "Ranked by AUROC near" not in report


class _Entry:
    """A leaderboard entry as choose_ranking reads it: the run's benchmark and its table row."""

    def __init__(self, benchmark: str, **row: float):
        self.run = type("R", (), {"benchmark": benchmark})()
        self.row = row


def test_a_run_without_any_auroc_does_not_stop_the_others_ranking():
    """The shipped ReGuide 5% run has stage-2 answers for NINCO only, none for ID images: no AUROC at
    all. Beside a baseline run of the same documents, the set is still ranked by AUROC far."""
    from reguide_tasks.report.leaderboard import choose_ranking

    baseline = _Entry("imagenet200", auroc_far=96.4, auroc_ninco=94.2, auroc_textures=94.2)
    reguide = _Entry("imagenet200")
    ranking = choose_ranking([baseline, reguide], None)
    assert (ranking.key, ranking.passed_over) == ("auroc_far", ("auroc_near",))
    assert math.isnan(ranking.value(reguide)) and ranking.value(baseline) == 96.4
    shared = choose_ranking([baseline, _Entry("imagenet200", auroc_ninco=60.0, auroc_textures=55.0)], None)
    assert (shared.key, shared.datasets) == ("auroc_mean", ("ninco", "textures"))
    assert shared.value(baseline) == pytest.approx(94.2)


def test_a_run_set_where_nothing_ranks_says_why(tmp_path):
    """CIFAR10 25%: only ID answers are released, so no OoD set has an AUROC."""
    from reguide_tasks.report.leaderboard import choose_ranking

    ranking = choose_ranking([_Entry("cifar10")], None)
    assert ranking.key == "" and ranking.passed_over == ("auroc_near", "auroc_far", "auroc_mean")
    assert ranking.why_none.startswith("no run of this document set has an AUROC")


# ------------------------------------------------------------------ ties at the FPR threshold
def test_tie_range_on_a_constructed_tie_block():
    # 20 ID and 20 OoD images, 12 OoD images tied with 19 ID images at the top score 100.0
    is_id = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    scores = np.r_[[100.0] * 19, [40.0], [100.0] * 12, np.linspace(0, 30, 8)]
    low, high = fpr_tie_range(is_id, scores, rule="classic")
    assert high == fpr_at_95_tpr(is_id, scores) == 60.0 and low == 0.0
    assert fpr_tie_range(is_id, scores)[1] == fpr_at_95_openood(is_id, scores)
    row = {"fpr95tpr_x": high, "fpr95tpr_x_tie_low": low, "fpr95_x": 5.0, "fpr95_x_tie_low": 2.0}
    assert tie_flagged(row, "fpr95tpr_x") and not tie_flagged(row, "fpr95_x")


def test_the_report_marks_a_tied_fpr_cell(tmp_path):
    from reguide_tasks.data.benchmarks import get_benchmark
    from reguide_tasks.report.render import fmt_cell
    from reguide_tasks.report.samples import RunScores

    bench = get_benchmark("cifar10")
    tied = {"cifar10": np.r_[[100.0] * 19, [40.0]], **{d: np.r_[[100.0] * 12, np.linspace(0, 30, 8)] for d in bench.ood_datasets}}
    scores = RunScores(bench, tied, {d: 20 for d in tied}, {d: 0 for d in tied}, "max_id", "exclude")
    row = {"fpr95tpr_far": 60.0, "fpr95tpr_mnist": 60.0, **tie_columns(scores)}
    assert row["fpr95tpr_mnist_tie_low"] == 0.0 and row["fpr95tpr_far_tie_low"] == 0.0
    assert fmt_cell(row, "fpr95tpr_far") == f"60.0{TIE_MARK}"


# ------------------------------------------------------------------ --dry_run
def _variant(name: str):
    return next(v for v in task_variants() if v.name == name)


def _released_prompt_tokens(counter: TokenCounter) -> tuple[float, float]:
    """Mean tokens of the released stage-1 and stage-2 prompts of the 5% ImageNet200 ReGuide run."""
    root = "response/reguide/imagenet200-5%"
    stage2 = read_release_file(resolve_release_file(RELEASE_DIR / root / "stage2/gpt/ninco.jsonl.gz"))
    prompts2 = [next(iter(entry)) for entry in stage2.values()]
    stage1 = stage_prompts("imagenet200", "reguide")["stage 1"]  # byte-identical to the released one (test_prompts)
    return counter.count(stage1), float(np.mean([counter.count(p) for p in prompts2]))


@pytest.mark.parametrize("model_args", ["", "tiny_llava"])
def test_dry_run_tokens_are_within_10_percent_of_the_released_prompts(model_args, request):
    if model_args:
        model_args = f"pretrained={request.getfixturevalue('tiny_llava_dir')}"
    counter = token_counter(model_args)
    assert ("tokenizer of" in counter.how) == bool(model_args), counter.how
    est = estimate(_variant(REGUIDE_TASK), None, counter)
    assert est.documents == 4170 and [s.requests for s in est.stages] == [4170, 4170]
    stage1, stage2 = _released_prompt_tokens(counter)
    assert est.stages[0].tokens_per_request == stage1
    assert abs(est.stages[1].tokens_per_request - stage2) / stage2 < 0.10
    assert abs(est.tokens - 4170 * (stage1 + stage2)) / (4170 * (stage1 + stage2)) < 0.10


def test_dry_run_from_the_cli(tmp_path):
    done = subprocess.run([str(BIN / "reguide-eval"), "--model", "reguide_replay", "--tasks", f"{REGUIDE_TASK},mme", "--dry_run",
                           "--price", "2.5,10", "--answer_tokens", "200", "--limit", "100"],
                          capture_output=True, text=True, timeout=300, env=offline_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "nothing was sent to a model" in out and "100 of 4,170" in out
    assert "2 requests per document" in out
    assert "total: 200 requests" in out and "cost: $" in out and "not estimated (not one of our tasks): mme" in out
    assert not list(tmp_path.rglob("*_results.json"))


def test_dry_run_of_an_image_model_checks_images_exist_and_opens_none(tmp_path, fixture_data, tiny_llava_dir):
    """A model that reads images (lmms-eval's llava_hf, the tiny random LLaVA offline): the prompt tokens
    come from its tokenizer; an image that would not decode does not matter (nothing is opened), a
    missing one stops the run naming it."""
    root = tmp_path / "data"
    shutil.copytree(fixture_data.root, root)
    docs = fixture_data.documents["imagenet200"]
    (root / docs[0]["image"]).write_bytes(b"not an image")
    argv = ["--model", "llava_hf", "--model_args", f"pretrained={tiny_llava_dir}", "--tasks", "reguide_imagenet200_custom",
            "--data_root", str(root), "--dry_run"]
    done = run_cli("reguide-eval", argv, env=offline_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{len(docs)} documents x 2 requests per document" in done.stdout and "tokenizer of" in done.stdout
    (root / docs[1]["image"]).unlink()
    done = run_cli("reguide-eval", argv, env=offline_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and docs[1]["image"] in done.stderr, done.stderr[-2000:]


def test_dry_run_bad_price_fails_before_anything(tmp_path):
    done = subprocess.run([str(BIN / "reguide-eval"), "--model", "reguide_replay", "--tasks", REGUIDE_TASK, "--dry_run", "--price", "cheap"],
                          capture_output=True, text=True, timeout=300, env=offline_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "--price 'cheap': give USD per million tokens as IN or IN,OUT" in done.stderr
