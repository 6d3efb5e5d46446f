"""reguide-report on synthetic runs written by lmms-eval's own EvaluationTracker (its exact layout)."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from lmms_eval.loggers.evaluation_tracker import EvaluationTracker
from PIL import Image

from reguide_tasks.answers.scoring import apply_failure_policy
from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.metrics.bootstrap import value_counts, bootstrap_auroc
from reguide_tasks.metrics.ood import auroc, ood_table
from reguide_tasks.metrics.ood import auroc_from_counts as _auroc_from_counts
from reguide_tasks.report.cli import main
from reguide_tasks.report.files import ReportError
from reguide_tasks.report.plots import score_bins
from reguide_tasks.report.ties import TIE_MARK
from reguide_tasks.report.runs import Run, assign_labels, load_runs
from reguide_tasks.report.samples import scores_from_records
from reguide_tasks.report.tables import overall_fail_rate

QWEN = ("qwen2_5_vl", "pretrained=Qwen/Qwen2.5-VL-7B-Instruct,max_pixels=50176")
GPT = ("reguide_replay", "responses=/data/reguide-release,model=gpt")


# ----------------------------------------------------------------------------- synthetic runs


def synth_records(benchmark: str, rng: np.random.Generator, *, quality: float, n_id: int = 80, n_ood: int = 50, fail: float = 0.08, policy: str = "exclude") -> list[dict]:
    """``oodd`` records like the tasks write: LVLM-like scores tied at 0 / 100, some failures.
    ``quality`` in [0, 1] moves OoD scores down (better separation).
    """
    bench = get_benchmark(benchmark)
    records = []
    for dataset in bench.datasets:
        role = bench.role(dataset)
        for _ in range(n_id if role == "id" else n_ood):
            if rng.random() < fail:
                score = None
            elif role == "id":
                score = 100.0 if rng.random() < 0.6 else float(np.round(rng.uniform(40, 100), 2))
            else:
                top = rng.random() > quality
                score = 100.0 if top and rng.random() < 0.5 else (0.0 if rng.random() < 0.3 else float(np.round(rng.uniform(0, 100), 2)))
            records.append(
                {
                    "dataset": dataset,
                    "role": role,
                    "image": f"images/{dataset}/{len(records)}.png",
                    "label_name": "",
                    "prediction": "cat",
                    "correct": bool(rng.random() < 0.9) if role == "id" else None,
                    "ood_score": score,
                    "failed": score is None,
                    "status": "failed" if score is None else "ok",
                    "reason": "",
                    "score_rule": "max_id",
                    "failure_policy": policy,
                }
            )
    return records


def metrics_of(records: list[dict], benchmark: str) -> dict[str, float]:
    """The task's aggregated metrics (what the results JSON holds), computed the tasks' way."""
    bench = get_benchmark(benchmark)
    policy = records[0]["failure_policy"]
    values, kept = apply_failure_policy([r["ood_score"] for r in records], policy)
    datasets = np.array([r["dataset"] for r in records])[kept]
    present = [d for d in bench.datasets if any(r["dataset"] == d for r in records)]
    by_dataset = {d: values[datasets == d] for d in present}
    table = ood_table(by_dataset[bench.id_dataset], {d: by_dataset[d] for d in present[1:]}, bench.near, bench.far)
    id_records = [r for r in records if r["role"] == "id"]
    table["id_acc"] = 100.0 * sum(bool(r["correct"]) for r in id_records) / len(id_records)
    for dataset in present:
        mine = [r for r in records if r["dataset"] == dataset]
        table[f"fail_rate_{dataset}"] = 100.0 * sum(r["failed"] for r in mine) / len(mine)
    table["oodd"] = float(sum(not r["failed"] for r in records))
    return table


def write_run(out: Path, model: tuple[str, str], tasks: dict[str, list[dict]], date: str, *, samples: bool = True, overrides: dict | None = None) -> Path:
    """One lmms-eval run of ``model`` on ``tasks`` (name -> records), saved by EvaluationTracker.

    ``overrides``: metric values to write instead of the computed ones (per task name).
    """
    results: dict = {"results": {}, "group_subtasks": {}, "configs": {}, "versions": {}, "n-shot": {}, "higher_is_better": {}, "n-samples": {}}
    logged: dict[str, list[dict]] = {}
    for task, records in tasks.items():
        benchmark = "cifar10" if any(r["dataset"] == "cifar10" for r in records) else "imagenet200"
        values = metrics_of(records, benchmark) | (overrides or {}).get(task, {})
        entry = {"alias": task}
        for key, value in values.items():
            entry[f"{key},none"] = value
            entry[f"{key}_stderr,none"] = "N/A"
        results["results"][task] = entry
        results["group_subtasks"][task] = []
        results["configs"][task] = {"task": task, "output_type": "generate_until", "metadata": {"failure_policy": records[0]["failure_policy"]}}
        results["versions"][task] = 0
        results["n-shot"][task] = 0
        results["higher_is_better"][task] = {k: True for k in values}
        results["n-samples"][task] = {"original": len(records), "effective": len(records)}
        logged[task] = [
            {
                "doc_id": i,
                "doc": {"doc_key": r["image"], "dataset": r["dataset"]},
                "target": r["label_name"],
                "arguments": ["<prompt>", {"max_new_tokens": 512}],
                "resps": [["Prediction: cat"]],
                "filtered_resps": ["Prediction: cat"],
                "doc_hash": f"{task}-{i}",
                "oodd": r,
            }
            for i, r in enumerate(records)
        ]
    results["config"] = {"model": model[0], "model_args": model[1], "batch_size": 1, "limit": None}
    results["date"] = date
    tracker = EvaluationTracker(output_path=str(out))
    tracker.general_config_tracker.log_experiment_args(
        model_source=model[0], model_args=model[1], system_instruction=None, chat_template=None, fewshot_as_multiturn=False
    )
    tracker.save_results_aggregated(results=results, samples=logged, datetime_str=date)
    if samples:
        for task in tasks:
            tracker.save_results_samples(task_name=task, samples=logged[task])
    (path,) = (out / tracker.general_config_tracker.model_name_sanitized).glob(f"{date}_results.json")
    return path


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """Qwen on cifar10 baseline + reguide and imagenet200 baseline; GPT replay on cifar10 baseline."""
    out = tmp_path_factory.mktemp("lmms_out")
    rng = np.random.default_rng(7)
    write_run(
        out,
        QWEN,
        {
            "reguide_baseline_cifar10": synth_records("cifar10", rng, quality=0.3),
            "reguide_cifar10": synth_records("cifar10", rng, quality=0.7),
            "reguide_baseline_imagenet200": synth_records("imagenet200", rng, quality=0.5, policy="most_ood"),
        },
        "20250301_101500",
    )
    write_run(out, GPT, {"reguide_baseline_cifar10": synth_records("cifar10", rng, quality=0.9)}, "20250302_090000")
    return out


def results_json(runs_dir: Path, model_dir: str) -> dict:
    (path,) = (runs_dir / model_dir).glob("*_results.json")
    return json.loads(path.read_text())


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(markdown: str, section: str, nth: int = 0) -> list[dict[str, str]]:
    """Rows (header -> cell) of the ``nth`` Markdown table after the ``## <section>`` heading."""
    text = markdown.split(f"## {section}\n", 1)[1]
    tables = [block for block in text.split("\n\n") if block.startswith("|")]
    lines = tables[nth].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


# ----------------------------------------------------------------------------- layout / tables


def test_tracker_layout_is_what_the_report_reads(runs_dir):
    names = sorted(p.relative_to(runs_dir).as_posix() for p in runs_dir.rglob("*") if p.is_file())
    assert set(names) == {
        "Qwen__Qwen2.5-VL-7B-Instruct/20250301_101500_results.json",
        "Qwen__Qwen2.5-VL-7B-Instruct/20250301_101500_samples_reguide_baseline_cifar10.jsonl",
        "Qwen__Qwen2.5-VL-7B-Instruct/20250301_101500_samples_reguide_baseline_imagenet200.jsonl",
        "Qwen__Qwen2.5-VL-7B-Instruct/20250301_101500_samples_reguide_cifar10.jsonl",
        "gpt/20250302_090000_results.json",
        "gpt/20250302_090000_samples_reguide_baseline_cifar10.jsonl",
    }
    runs, notes = load_runs([runs_dir])
    assert notes == []
    got = {(r.label, r.task, r.benchmark, r.samples_path is not None) for r in runs}
    assert got == {
        ("qwen2_5_vl (Qwen2.5-VL-7B-Instruct)", "reguide_baseline_cifar10", "cifar10", True),
        ("qwen2_5_vl (Qwen2.5-VL-7B-Instruct)", "reguide_cifar10", "cifar10", True),
        ("qwen2_5_vl (Qwen2.5-VL-7B-Instruct)", "reguide_baseline_imagenet200", "imagenet200", True),
        ("reguide_replay (gpt)", "reguide_baseline_cifar10", "cifar10", True),
    }


def test_markdown_csv_latex_values_equal_results_json(runs_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, err = run_cli([str(runs_dir), "--out", str(out), "--bootstrap", "200", "--no-plots"], capsys)
    assert code == 0, err
    qwen = results_json(runs_dir, "Qwen__Qwen2.5-VL-7B-Instruct")
    gpt = results_json(runs_dir, "gpt")
    markdown = (out / "report.md").read_text()
    assert markdown.strip() in stdout

    rows = table_rows(markdown, "cifar10")
    assert len(rows) == 3 and {r["Task"] for r in rows} == {"reguide_baseline_cifar10", "reguide_cifar10"}
    columns = {"ID acc": "id_acc", "Fail ID": "fail_rate_cifar10", "FPR@95 near": "fpr95_near", "FPR@95TPR far": "fpr95tpr_far"}
    for row in rows:
        source = gpt if row["Model"].startswith("reguide_replay") else qwen
        values = source["results"][row["Task"]]
        for header, key in columns.items():
            # an FPR cell resting on a wide tie block carries the tie mark (report/ties.py)
            assert row[header].removesuffix(TIE_MARK) == f"{values[key + ',none']:.1f}", (row["Model"], header)
        # AUROC cells: the JSON's value, then its bootstrap CI.
        assert row["AUROC far"].startswith(f"{values['auroc_far,none']:.1f} [")
    detail = table_rows(markdown, "cifar10", nth=1)
    assert len(detail) == 3
    for row in detail:
        source = gpt if row["Model"].startswith("reguide_replay") else qwen
        values = source["results"][row["Task"]]
        assert row["FPR@95TPR svhn"].removesuffix(TIE_MARK) == f"{values['fpr95tpr_svhn,none']:.1f}"
        assert row["AUROC mnist"].startswith(f"{values['auroc_mnist,none']:.1f} [")

    # One task on imagenet200: no task column there.
    (inet,) = table_rows(markdown, "imagenet200")
    assert "Task" not in inet
    assert inet["FPR@95 far"].removesuffix(TIE_MARK) == f"{qwen['results']['reguide_baseline_imagenet200']['fpr95_far,none']:.1f}"

    # CSV: every metric at full precision, CIs as separate lo / hi columns.
    with open(out / "cifar10.csv", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(csv_rows) == 3
    for row in csv_rows:
        source = gpt if row["model"].startswith("reguide_replay") else qwen
        values = source["results"][row["task"]]
        for key in ("auroc_cifar100", "fpr95_tin", "fpr95tpr_places365", "aupr_in_far", "aupr_out_mnist", "fail_rate_svhn"):
            assert float(row[key]) == values[key + ",none"]
        assert float(row["auroc_cifar100_lo"]) <= values["auroc_cifar100,none"] <= float(row["auroc_cifar100_hi"])
    assert (out / "imagenet200.csv").exists()

    tex = (out / "report.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and tex.count(r"\toprule") == 2 and tex.count(r"\bottomrule") == 2
    assert r"reguide\_baseline\_cifar10" in tex and r"\cmidrule(lr){4-5}" in tex
    assert f"{qwen['results']['reguide_cifar10']['auroc_near,none']:.1f}" in tex
    # Paths of everything written are printed.
    for name in ("report.md", "cifar10.csv", "imagenet200.csv", "report.tex"):
        assert str(out / name) in stdout


def test_overall_failure_rate_counts_every_document(runs_dir, tmp_path):
    from reguide_tasks.report.make import make_report

    report = make_report([runs_dir], tmp_path, n_boot=0, plots=False, tasks=["reguide_cifar10"])
    (row,) = report.tables["cifar10"].to_dict("records")
    (path,) = (runs_dir / "Qwen__Qwen2.5-VL-7B-Instruct").glob("*_samples_reguide_cifar10.jsonl")
    records = [json.loads(line)["oodd"] for line in path.read_text().splitlines()]
    assert row["fail_rate_all"] == pytest.approx(100 * sum(r["failed"] for r in records) / len(records))
    assert row["n_docs"] == len(records) and row["failure_policy"] == "exclude" and row["score_rule"] == "max_id"


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_point_and_is_seeded(runs_dir, tmp_path):
    from reguide_tasks.report.make import make_report

    first = make_report([runs_dir], tmp_path / "a", n_boot=300, seed=3, plots=False).tables
    again = make_report([runs_dir], tmp_path / "b", n_boot=300, seed=3, plots=False).tables
    other = make_report([runs_dir], tmp_path / "c", n_boot=300, seed=4, plots=False).tables
    checked = 0
    for name, table in first.items():
        bench = get_benchmark(name)
        for row, same in zip(table.to_dict("records"), again[name].to_dict("records")):
            for key in (*bench.ood_datasets, "near", "far"):
                lo, hi, point = row[f"auroc_{key}_lo"], row[f"auroc_{key}_hi"], row[f"auroc_{key}"]
                assert lo <= point <= hi and hi - lo < 40, (row["model"], key)
                assert (same[f"auroc_{key}_lo"], same[f"auroc_{key}_hi"]) == (lo, hi)
                checked += 1
        assert any(r1 != r2 for r1, r2 in zip(table["auroc_far_lo"], other[name]["auroc_far_lo"]))
    assert checked == 3 * (6 + 2) + 1 * (5 + 2)  # cifar10 rows x (datasets + groups), imagenet200


def test_count_based_auroc_equals_sklearn_on_resamples():
    rng = np.random.default_rng(0)
    id_scores = rng.choice([0.0, 50.0, 90.0, 99.5, 100.0], size=70)
    ood_scores = rng.choice([0.0, 10.0, 50.0, 100.0], size=40)
    uniques, codes = np.unique(np.r_[id_scores, ood_scores], return_inverse=True)
    id_idx = rng.integers(0, 70, (5, 70))
    ood_idx = rng.integers(0, 40, (5, 40))
    fast = _auroc_from_counts(value_counts(codes[:70][id_idx], uniques.size), value_counts(codes[70:][ood_idx], uniques.size))
    for b in range(5):
        slow = auroc(np.r_[np.ones(70, bool), np.zeros(40, bool)], np.r_[id_scores[id_idx[b]], ood_scores[ood_idx[b]]])
        assert fast[b] == pytest.approx(slow, abs=1e-9)


def test_bootstrap_edge_cases_and_stream_independence():
    ties = bootstrap_auroc(np.full(30, 100.0), {"a": np.full(20, 100.0), "empty": np.empty(0)}, groups={"near": ["a", "empty"]}, n_boot=50)
    assert ties["a"] == (50.0, 50.0)
    assert all(math.isnan(v) for v in ties["empty"] + ties["near"])  # an empty set makes its group NaN
    perfect = bootstrap_auroc(np.full(10, 90.0), {"a": np.zeros(10)}, n_boot=20)
    assert perfect["a"] == (100.0, 100.0)
    rng = np.random.default_rng(1)
    id_scores, a, b = rng.normal(1, 1, 60), rng.normal(0, 1, 50), rng.normal(0.5, 1, 40)
    alone = bootstrap_auroc(id_scores, {"a": a}, n_boot=100, seed=9)
    both = bootstrap_auroc(id_scores, {"a": a, "b": b}, n_boot=100, seed=9)
    assert alone["a"] == both["a"]  # a dataset's CI does not depend on the others given
    with pytest.raises(ValueError, match="finite"):
        bootstrap_auroc([1.0, math.nan], {"a": [0.0]}, n_boot=5)


def test_bootstrap_1000_on_10k_docs_takes_seconds():
    rng = np.random.default_rng(0)
    id_scores = np.round(rng.uniform(0, 100, 5000), 2)
    ood = {f"d{i}": np.round(rng.uniform(0, 90, 1250), 2) for i in range(4)}
    start = time.perf_counter()
    cis = bootstrap_auroc(id_scores, ood, groups={"near": ["d0", "d1"], "far": ["d2", "d3"]}, n_boot=1000)
    elapsed = time.perf_counter() - start
    assert elapsed < 15, elapsed  # about 1 s on a laptop core; generous for a loaded 2-core CI box
    assert all(lo < hi for lo, hi in cis.values())


def test_failure_policies_in_scores():
    bench = get_benchmark("cifar10")
    records = [
        {"dataset": "cifar10", "ood_score": 90.0, "failed": False, "failure_policy": "most_ood"},
        {"dataset": "cifar10", "ood_score": None, "failed": True, "failure_policy": "most_ood"},
        {"dataset": "mnist", "ood_score": 10.0, "failed": False, "failure_policy": "most_ood"},
        {"dataset": "mnist", "ood_score": None, "failed": True, "failure_policy": "most_ood"},
    ]
    most_ood = scores_from_records(records, bench)
    assert most_ood.failure_policy == "most_ood"
    assert most_ood.scores["cifar10"].tolist() == [90.0, 9.0] and most_ood.scores["mnist"].tolist() == [10.0, 9.0]
    exclude = scores_from_records([r | {"failure_policy": "exclude"} for r in records], bench)
    assert exclude.scores["cifar10"].tolist() == [90.0] and exclude.scores["mnist"].tolist() == [10.0]
    assert exclude.n_failed == {"cifar10": 1, "mnist": 1} and exclude.fail_rate_all == 50.0


def test_documents_not_in_release_are_no_answers():
    """Records of documents without a released answer: out of the scores and of every failure share,
    counted per dataset; also when only the results JSON is there (1 - usable / answered)."""
    bench = get_benchmark("cifar10")
    records = [
        {"dataset": "cifar10", "ood_score": 90.0, "failed": False},
        {"dataset": "cifar10", "ood_score": None, "failed": True},
        {"dataset": "mnist", "ood_score": 10.0, "failed": False},
        {"dataset": "mnist", "ood_score": None, "failed": False, "not_in_release": True},
        {"dataset": "svhn", "ood_score": None, "failed": False, "not_in_release": True},
    ]
    scores = scores_from_records(records, bench)
    assert scores.n_total == {"cifar10": 2, "mnist": 1} and scores.n_failed == {"cifar10": 1, "mnist": 0}
    assert scores.n_not_in_release == {"mnist": 1, "svhn": 1} and scores.fail_rate_all == pytest.approx(100 / 3)
    assert "svhn" not in scores.scores and scores.scores["mnist"].tolist() == [10.0]
    run = Run("reguide_cifar10", "cifar10", "m", "", "", Path("r_results.json"), None,
                {"oodd": 2.0, "not_in_release_mnist": 1.0, "not_in_release_svhn": 1.0}, n_docs=5)
    assert overall_fail_rate(run, None) == pytest.approx(100 / 3)


# ----------------------------------------------------------------------------- plots


def test_plots_are_real_pngs(runs_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, err = run_cli([str(runs_dir), "--out", str(out), "--bootstrap", "0", "--models", "reguide_replay*"], capsys)
    assert code == 0, err
    pngs = sorted((out / "plots").rglob("*.png"))
    per_run = [p.name for p in pngs if p.name.startswith("reguide_replay_gpt__")]
    assert per_run == ["reguide_replay_gpt__reguide_baseline_cifar10_hist.png", "reguide_replay_gpt__reguide_baseline_cifar10_roc.png"]
    # and the cross-run figures of the leaderboard (test_leaderboard.py checks them)
    assert {"roc_overlay_mnist.png", "score_histograms.png"} <= {p.name for p in pngs}
    for png in pngs:
        assert str(png) in stdout and png.stat().st_size > 0
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 300
            pixels = np.asarray(image.convert("RGB"))
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # not one flat colour


def test_score_bins_isolate_the_tied_extremes():
    edges = score_bins(np.array([0.0, 37.5, 100.0, 100.0]))
    assert edges.size == 102 and edges[0] == pytest.approx(-0.5) and edges[-1] == pytest.approx(100.5)
    counts, _ = np.histogram([100.0, 99.0, 0.0, 1.0], bins=edges)
    assert counts[-1] == 1 and counts[0] == 1  # 100 and 99 (0 and 1) land in different bins
    assert score_bins(np.array([5.0, 5.0])).tolist() == [4.5, 5.5]


# ----------------------------------------------------------------------------- sort / filter / runs


def test_sort_and_filter(runs_dir, tmp_path, capsys):
    def order(*extra: str) -> list[tuple[str, str]]:
        out = tmp_path / "r"
        code, _, err = run_cli([str(runs_dir), "--out", str(out), "--bootstrap", "0", "--no-plots", *extra], capsys)
        assert code == 0, err
        with open(out / "cifar10.csv", newline="") as handle:
            return [(r["model"], r["task"], float(r["auroc_far"]), float(r["fpr95_near"])) for r in csv.DictReader(handle)]

    best_first = order("--sort-by", "auroc_far")
    assert [r[2] for r in best_first] == sorted((r[2] for r in best_first), reverse=True)
    assert [r[2] for r in order("--sort-by", "auroc_far", "--ascending")] == sorted(r[2] for r in best_first)
    # FPR: best (lowest) first by default, --descending reverses.
    assert [r[3] for r in order("--sort-by", "fpr95_near")] == sorted(r[3] for r in best_first)
    assert [r[3] for r in order("--sort-by", "fpr95_near", "--descending")] == sorted((r[3] for r in best_first), reverse=True)

    assert {r[0] for r in order("--models", "qwen2_5_vl")} == {"qwen2_5_vl (Qwen2.5-VL-7B-Instruct)"}
    assert {r[0] for r in order("--models", "Qwen/Qwen2.5-VL-7B-Instruct,reguide_replay (gpt)")} == {
        "qwen2_5_vl (Qwen2.5-VL-7B-Instruct)",
        "reguide_replay (gpt)",
    }
    assert {r[1] for r in order("--tasks", "reguide_baseline_*")} == {"reguide_baseline_cifar10"}


def test_newest_run_wins_and_is_announced(tmp_path, capsys):
    rng = np.random.default_rng(3)
    old = write_run(tmp_path / "out", GPT, {"reguide_baseline_cifar10": synth_records("cifar10", rng, quality=0.2)}, "20250101_000000")
    new = write_run(tmp_path / "out", GPT, {"reguide_baseline_cifar10": synth_records("cifar10", rng, quality=0.8)}, "20250201_000000")
    code, stdout, err = run_cli([str(tmp_path / "out"), "--out", str(tmp_path / "rep"), "--bootstrap", "0", "--no-plots"], capsys)
    assert code == 0
    (row,) = table_rows(stdout, "cifar10")
    assert row["AUROC far"] == f"{json.loads(new.read_text())['results']['reguide_baseline_cifar10']['auroc_far,none']:.1f}"
    (line,) = [ln for ln in err.splitlines() if "using the newest" in ln]
    assert line.startswith("reguide-report: note: 2 runs of reguide_replay") and str(new) in line and str(old) in line


def test_missing_samples_omit_cis_with_a_note(tmp_path, capsys):
    rng = np.random.default_rng(4)
    write_run(tmp_path / "out", QWEN, {"reguide_cifar10": synth_records("cifar10", rng, quality=0.5)}, "20250101_000000", samples=False)
    code, stdout, err = run_cli([str(tmp_path / "out"), "--out", str(tmp_path / "rep")], capsys)
    assert code == 0
    assert "no samples file" in err and "CIs and plots omitted" in err
    (row,) = table_rows(stdout, "cifar10")
    assert "[" not in row["AUROC near"] and row["AUROC near"] != "n/a"
    assert not (tmp_path / "rep" / "plots").exists()
    # Overall failure rate from the JSON alone: 1 - usable / documents.
    with open(tmp_path / "rep" / "cifar10.csv", newline="") as handle:
        (csv_row,) = list(csv.DictReader(handle))
    data = json.loads(next((tmp_path / "out").rglob("*_results.json")).read_text())
    entry = data["results"]["reguide_cifar10"]
    assert float(csv_row["fail_rate_all"]) == pytest.approx(100 * (1 - entry["oodd,none"] / data["n-samples"]["reguide_cifar10"]["effective"]))


def test_samples_of_another_run_are_flagged(tmp_path, capsys):
    rng = np.random.default_rng(5)
    write_run(tmp_path / "out", GPT, {"reguide_cifar10": synth_records("cifar10", rng, quality=0.5)}, "20250101_000000", overrides={"reguide_cifar10": {"auroc_mnist": 12.5}})
    code, stdout, err = run_cli([str(tmp_path / "out"), "--out", str(tmp_path / "rep"), "--bootstrap", "0", "--no-plots"], capsys)
    assert code == 0
    assert re.search(r"AUROC mnist is 12\.5000 in 20250101_000000_results\.json but \d+\.\d{4} from", err)
    assert "| 12.5 |" in stdout.split("### Per OoD dataset")[1]  # the JSON's value is what is shown


def test_labels_grow_only_where_they_would_clash():
    from reguide_tasks.report.runs import Run

    def run(model: str, args: str, task: str = "t", bench: str = "cifar10") -> Run:
        return Run(task, bench, model, args, "", Path("x"), None, {})

    runs = [
        run("llava", "pretrained=a/llava-7b"),
        run("llava", "pretrained=b/llava-7b"),
        run("qwen", "pretrained=Qwen/Qwen2-VL"),
        run("qwen", "pretrained=Qwen/Qwen2-VL,max_pixels=1", task="other"),  # other task: no clash
        run("clip_ood", "pretrained=openai/clip-vit-base-patch16,score=mcm,batch_size=64"),
        run("clip_ood", "pretrained=openai/clip-vit-base-patch16,score=glmcm,batch_size=64"),
        run("reguide_replay", "responses=/r/response/,model=gpt"),
        run("reguide_replay", "responses=/s/response/"),
        run("api", ""),
    ]
    assign_labels(runs)
    assert [r.label for r in runs] == [
        "llava (a/llava-7b)",
        "llava (b/llava-7b)",
        "qwen (Qwen2-VL)",
        "qwen (Qwen2-VL)",
        "clip_ood (clip-vit-base-patch16, zero-shot, MCM)",
        "clip_ood (clip-vit-base-patch16, zero-shot, GL-MCM)",
        "reguide_replay (gpt)",
        "reguide_replay (response)",
        "api",
    ]
    # Same settings written in another order: only the whole model_args tells them apart.
    twins = [run("m", "pretrained=x,a=1,b=2"), run("m", "pretrained=x,b=2,a=1")]
    assign_labels(twins)
    assert [r.label for r in twins] == ["m (pretrained=x,a=1,b=2)", "m (pretrained=x,b=2,a=1)"]


# ----------------------------------------------------------------------------- errors


def _assert_error(code: int, out: str, err: str, reason: str) -> None:
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("reguide-report: error: ") and reason in last
    assert sum(ln.startswith("reguide-report: error:") for ln in (out + err).splitlines()) == 1


def test_errors_exit_nonzero_with_one_line(runs_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_error(*run_cli([str(empty), "--out", str(tmp_path / "o")], capsys), "no *_results.json files found")
    _assert_error(*run_cli([str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys), "no such file or directory")

    broken = tmp_path / "broken" / "20250101_000000_results.json"
    broken.parent.mkdir()
    broken.write_text('{"results": {"reguide_cifar10": ')
    _assert_error(*run_cli([str(broken.parent), "--out", str(tmp_path / "o")], capsys), f"cannot read {broken}")

    other = tmp_path / "other" / "20250101_000000_results.json"
    other.parent.mkdir()
    other.write_text(json.dumps({"results": {"mmmu_val": {"alias": "mmmu_val", "mmmu_acc,none": 41.0}}, "config": {"model": "x"}}))
    _assert_error(*run_cli([str(other), "--out", str(tmp_path / "o")], capsys), "no ReGuide task results in 1 results file(s) (tasks found: mmmu_val)")

    _assert_error(*run_cli([str(runs_dir), "--out", str(tmp_path / "o"), "--sort-by", "auroc_moon"], capsys), "--sort-by 'auroc_moon' is not a column")
    _assert_error(*run_cli([str(runs_dir), "--out", str(tmp_path / "o"), "--models", "llava"], capsys), "--models 'llava' matches no run")
    _assert_error(*run_cli([str(runs_dir), "--out", str(tmp_path / "o"), "--bootstrap", "-1"], capsys), "--bootstrap must be >= 0")
    code, _, err = run_cli([str(runs_dir)], capsys)  # usage errors: argparse's status 2, same one-line form
    assert code == 2 and err.strip().splitlines()[-1] == "reguide-report: error: the following arguments are required: --out"


def test_non_reguide_tasks_beside_reguide_ones_are_noted(runs_dir, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    shutil.copytree(runs_dir / "Qwen__Qwen2.5-VL-7B-Instruct", mixed)
    (path,) = mixed.glob("*_results.json")
    data = json.loads(path.read_text())
    data["results"]["mmmu_val"] = {"alias": "mmmu_val", "mmmu_acc,none": 41.0}
    path.write_text(json.dumps(data))
    code, _, err = run_cli([str(mixed), "--out", str(tmp_path / "o"), "--bootstrap", "0", "--no-plots"], capsys)
    assert code == 0 and "ignored non-ReGuide task(s): mmmu_val" in err
    with pytest.raises(ReportError):
        load_runs([tmp_path / "o"])  # the report folder holds no results files
