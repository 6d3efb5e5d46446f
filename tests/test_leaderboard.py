"""The leaderboard, ReGuide vs baseline and calibration sections of reguide-report, and its HTML page,
on synthetic runs written by lmms-eval's own EvaluationTracker (as in test_report). Model answers are
synthetic here: no model weights or benchmark images exist on this machine."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_report import GPT, QWEN, synth_records, write_run

from reguide_tasks.metrics.paired import delong_mean_test, delong_test, holm
from reguide_tasks.report.make import make_report

CLAUDE = ("openai", "model_version=claude,base_url=http://127.0.0.1:1/v1")


def with_confidence(records: list[dict], rng: np.random.Generator) -> list[dict]:
    """Give ID answers a verbalized confidence of their prediction (failed answers: none)."""
    for record in records:
        if record["role"] == "id":
            record["prediction_confidence"] = None if record["failed"] else float(rng.choice([60.0, 90.0, 100.0]))
            record["correct"] = bool(record["correct"]) and not record["failed"]
    return records


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """cifar10: three models on the same documents (GPT far better than the others), Qwen's ReGuide
    run on them too, and one run on a smaller document set; every ID answer has a confidence."""
    out = tmp_path_factory.mktemp("leaderboard_runs")
    rng = np.random.default_rng(11)
    write_run(out, QWEN, {
        "reguide_baseline_cifar10": with_confidence(synth_records("cifar10", rng, quality=0.2), rng),
        "reguide_cifar10": with_confidence(synth_records("cifar10", rng, quality=0.95), rng),
    }, "20250301_101500")
    write_run(out, GPT, {"reguide_baseline_cifar10": with_confidence(synth_records("cifar10", rng, quality=0.95), rng)}, "20250302_090000")
    write_run(out, CLAUDE, {"reguide_baseline_cifar10_25pct": with_confidence(synth_records("cifar10", rng, quality=0.25, n_id=40, n_ood=20), rng)}, "20250303_090000")
    return out


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("leaderboard_report")
    return make_report([runs], out, n_boot=200, plots=True), out


def test_runs_are_ranked_only_within_their_document_set(report):
    made, _ = report
    board = made.comparisons["cifar10"]["leaderboard"]
    rows = {(r["model"], r["task"]): r for r in board.to_dict("records")}
    big = [r for r in rows.values() if r["documents"].startswith("A ")]
    small = [r for r in rows.values() if r["documents"].startswith("B ")]
    assert len(big) == 3 and len(small) == 1
    assert small[0]["rank"] == 1 and small[0]["documents"] == "B (160)"
    ranked = sorted(big, key=lambda r: r["rank"])
    assert [r["rank"] for r in ranked] == [1, 2, 3]
    assert all(a["auroc_near"] >= b["auroc_near"] for a, b in itertools.pairwise(ranked))
    assert "only among runs given the same documents" in made.markdown


def _scores_of(made, row):
    return next(s for (r, s) in made.loaded if r.label == row["model"] and r.task == row["task"])


def _take(scores, dataset, keys):
    """The run's kept scores of ``dataset`` for documents ``keys`` (sorted), in that order."""
    order = np.argsort(scores.keys[dataset])
    return scores.scores[dataset][order][np.searchsorted(scores.keys[dataset][order], keys)]


def _shared(a, b, dataset):
    return np.intersect1d(a.keys[dataset], b.keys[dataset])


def test_next_rank_tests_are_delong_on_shared_documents_holm_corrected(report):
    made, _ = report
    board = made.comparisons["cifar10"]["leaderboard"].to_dict("records")
    ordered = sorted((r for r in board if r["documents"].startswith("A ")), key=lambda r: r["rank"])
    raw = []
    for upper, lower in itertools.pairwise(ordered):
        a, b = _scores_of(made, upper), _scores_of(made, lower)
        ids = _shared(a, b, "cifar10")
        near = {d: (_take(a, d, _shared(a, b, d)), _take(b, d, _shared(a, b, d))) for d in a.benchmark.near}
        raw.append(delong_mean_test(_take(a, "cifar10", ids), _take(b, "cifar10", ids), near).p_value)
    adjusted = holm(raw)  # the other rows have no test (NaN), which Holm does not count
    got = {(r["model"], r["task"]): r["p_holm"] for r in board}
    assert [got[(r["model"], r["task"])] for r in ordered[:-1]] == pytest.approx(list(adjusted), abs=1e-12)
    # The two runs of quality 0.95 are not told apart; the one of quality 0.2 ranks last, significantly.
    assert not ordered[0]["vs_next"].endswith("*") and ordered[1]["vs_next"].endswith("*")
    assert ordered[-1]["vs_next"] == ""


def test_reguide_vs_baseline_matches_delong_per_dataset_and_group(report):
    made, _ = report
    deltas = made.comparisons["cifar10"]["reguide_vs_baseline"]
    assert len(set(deltas["model"])) == 1  # only Qwen has both a baseline and a ReGuide run
    targets = list(deltas["target"])
    assert targets == ["cifar100", "tin", "mnist", "svhn", "texture", "places365", "near", "far"]
    reguide = next(s for r, s in made.loaded if r.task == "reguide_cifar10")
    baseline = next(s for r, s in made.loaded if r.task == "reguide_baseline_cifar10" and r.label == deltas["model"][0])
    row = deltas.set_index("target").loc["mnist"]
    ids, keys = _shared(reguide, baseline, "cifar10"), _shared(reguide, baseline, "mnist")
    is_id = np.r_[np.ones(ids.size, bool), np.zeros(keys.size, bool)]
    want = delong_test(
        is_id,
        np.r_[_take(reguide, "cifar10", ids), _take(reguide, "mnist", keys)],
        np.r_[_take(baseline, "cifar10", ids), _take(baseline, "mnist", keys)],
    )
    assert row["delta"] == pytest.approx(want.delta, abs=1e-9) and row["ci_low"] == pytest.approx(want.ci_low, abs=1e-9)
    assert row["p_value"] == pytest.approx(want.p_value, abs=1e-12)
    assert list(deltas["p_holm"]) == pytest.approx(list(holm(deltas["p_value"])), abs=1e-12)
    assert deltas.set_index("target").loc["far", "delta"] > 0  # synthetic ReGuide separates better
    assert "### ReGuide vs baseline" in made.markdown


def test_calibration_counts_answers_without_confidence(report, runs):
    made, _ = report
    table = made.comparisons["cifar10"]["calibration"].set_index("task")
    row = table.loc["reguide_cifar10"]
    scores = next(s for r, s in made.loaded if r.task == "reguide_cifar10")
    assert row["n"] == scores.id_confidence.size and row["n_failed"] == int(np.isnan(scores.id_confidence).sum()) > 0
    assert 0 <= row["ece_equal_width"] <= 100 and 0 <= row["brier"] <= 1 and row["n_out_of_range"] == 0


def test_plots_and_html_page_are_written(report):
    _, out = report
    names = {p.name for p in (out / "plots" / "cifar10").glob("*.png")}
    assert {"roc_overlay_mnist.png", "score_histograms.png", "reguide_vs_baseline.png"} <= names
    assert any(n.startswith("reliability__") for n in names)
    page = (out / "report.html").read_text()
    assert page.count("<table>") >= 5 and page.count("data:image/png;base64,") == len(list((out / "plots").rglob("*.png")))
    assert "Leaderboard" in page and "FPR@95" in page


def test_report_is_deterministic(runs, tmp_path):
    first = make_report([runs], tmp_path / "one", n_boot=50, plots=False)
    second = make_report([runs], tmp_path / "two", n_boot=50, plots=False)
    assert first.markdown == second.markdown
    for name in ("cifar10_leaderboard.csv", "cifar10_reguide_vs_baseline.csv", "cifar10_calibration.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (bash utils/setup.sh installs it for the tests)")
def test_html_page_renders_in_headless_chromium(report, tmp_path):
    """The page as a browser shows it: tables in the DOM, every embedded plot decoded; a screenshot
    is kept in this test's temp dir."""
    _, out = report
    page = (out / "report.html").resolve().as_uri()
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--virtual-time-budget=5000", "--dump-dom", page], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    images = len(list((out / "plots").rglob("*.png")))
    assert f'data-images="{images}"' in dom.stdout and f'data-images-decoded="{images}"' in dom.stdout
    assert dom.stdout.count("<table>") >= 5 and "Leaderboard" in dom.stdout
    shot = tmp_path / "report.png"
    done = subprocess.run([*common, "--window-size=1400,2000", f"--screenshot={shot}", page], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
