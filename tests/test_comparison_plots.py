"""The cross-run figures: real PNGs, equal bytes for equal inputs, the edge cases, no open figures."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from reguide_tasks.metrics.calibration import calibration_summary, reliability_bins
from reguide_tasks.report.comparison_plots import (
    plot_forest,
    plot_reliability,
    plot_roc_overlay,
    plot_score_histograms,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIES = np.array([0.0, 50.0, 100.0])


def _tied(rng: np.random.Generator, n: int, p: tuple[float, float, float]) -> np.ndarray:
    return rng.choice(TIES, size=n, p=p)


def _check_png(path: Path, min_width: int = 300, min_height: int = 200) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000
    height, width = mpimg.imread(path).shape[:2]
    assert width >= min_width and height >= min_height


def _roc_curves(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        "model A | ReGuide": (_tied(rng, 40, (0.1, 0.2, 0.7)), _tied(rng, 30, (0.6, 0.2, 0.2))),
        "model A | baseline": (_tied(rng, 40, (0.3, 0.3, 0.4)), _tied(rng, 30, (0.3, 0.3, 0.4))),
        "model B | no OoD documents": (_tied(rng, 40, (0.1, 0.2, 0.7)), np.empty(0)),
    }


def _forest_rows() -> list[tuple[str, float, float, float, bool]]:
    return [
        ("qwen | cifar10 | near", 4.2, 1.1, 7.0, True),
        ("qwen | cifar10 | far", -0.8, -3.5, 2.0, False),
        ("llava | cifar10 | near", math.nan, math.nan, math.nan, False),
        ("llava | cifar10 | far", 1.5, math.nan, math.nan, False),
    ]


def _calibration(rng: np.random.Generator, failures: int = 5) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.r_[_tied(rng, 60, (0.1, 0.3, 0.6)), np.full(failures, np.nan)]
    correct = np.r_[rng.random(60) < confidence[:60] / 120, np.zeros(failures, bool)]
    return confidence, correct


@pytest.fixture(autouse=True)
def _no_figure_left_open():
    plt.close("all")
    yield
    assert plt.get_fignums() == []


def test_roc_overlay_writes_a_png_with_an_empty_side(tmp_path):
    curves = _roc_curves(np.random.default_rng(0))
    path = plot_roc_overlay(curves, "cifar10 vs svhn (far OoD) " * 6, tmp_path / "deep" / "roc.png")
    assert path == tmp_path / "deep" / "roc.png"
    _check_png(path)


def test_roc_overlay_legend_reads_the_auroc_and_n_a(tmp_path, monkeypatch):
    seen = {}
    original_legend = plt.Axes.legend

    def record(ax, *args, **kwargs):
        seen["labels"] = [t for t in ax.get_legend_handles_labels()[1]]
        return original_legend(ax, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "legend", record)
    curves = {"perfect": (np.array([100.0, 100.0]), np.array([0.0, 50.0])), "tied": (TIES, TIES), "empty": (np.empty(0), TIES)}
    plot_roc_overlay(curves, "t", tmp_path / "roc.png")
    assert seen["labels"] == ["perfect (AUROC 100.0)", "tied (AUROC 50.0)", "empty: no ID scores (n/a)"]


def test_roc_overlay_single_run_and_no_runs(tmp_path):
    one = plot_roc_overlay({"only": (TIES, np.array([0.0, 0.0]))}, "one run", tmp_path / "one.png")
    _check_png(one)
    _check_png(plot_roc_overlay({}, "no runs", tmp_path / "none.png"))


def test_score_histograms_rows_per_model(tmp_path):
    rng = np.random.default_rng(1)
    scores = {
        "qwen | ReGuide": {"cifar10": _tied(rng, 50, (0.1, 0.1, 0.8)), "svhn": _tied(rng, 30, (0.7, 0.2, 0.1)), "cifar100": _tied(rng, 30, (0.3, 0.3, 0.4))},
        "llava | baseline": {"cifar10": _tied(rng, 50, (0.2, 0.2, 0.6)), "svhn": np.empty(0)},
    }
    path = _check_path(plot_score_histograms(scores, "cifar10 benchmark", tmp_path / "h" / "hist.png"), tmp_path / "h" / "hist.png")
    height, width = mpimg.imread(path).shape[:2]
    single = plot_score_histograms({"qwen": scores["qwen | ReGuide"]}, "one model", tmp_path / "one.png")
    assert mpimg.imread(single).shape[0] < height  # height grows with the models
    _check_png(single, min_height=250)
    _check_png(plot_score_histograms({}, "nothing", tmp_path / "none.png"))
    assert width > 300


def _check_path(path: Path, expected: Path) -> Path:
    assert path == expected
    _check_png(path)
    return path


def test_reliability_with_failures_and_summary(tmp_path):
    confidence, correct = _calibration(np.random.default_rng(2))
    summary = calibration_summary(confidence, correct)
    assert summary["n_failed"] == 5
    for binning in ("equal_width", "equal_mass"):
        bins = reliability_bins(confidence, correct, n_bins=10, binning=binning)
        keys = {"ECE": summary["ece_equal_width"], "Brier": summary["brier"], "AURC": summary["aurc"], "n": summary["n"], "n_failed": summary["n_failed"]}
        _check_png(plot_reliability(bins, f"qwen | cifar10 | {binning}", tmp_path / f"{binning}.png", summary=keys))
    _check_png(plot_reliability(bins, "no summary", tmp_path / "plain.png"))


def test_reliability_of_all_failed_answers(tmp_path):
    bins = reliability_bins([None, None, None], [False, False, False])
    assert bins.count.size == 0
    summary = calibration_summary([None, None, None], [False, False, False])
    _check_png(plot_reliability(bins, "all failed", tmp_path / "empty.png", summary=summary))


def test_forest_with_nan_rows_and_height_growing_with_rows(tmp_path):
    rows = _forest_rows()
    many = _check_path(plot_forest(rows * 3, "ReGuide vs baseline " * 8, tmp_path / "f" / "many.png"), tmp_path / "f" / "many.png")
    few = plot_forest(rows[:1], "one row", tmp_path / "few.png", xlabel="FPR@95 difference (pp)")
    _check_png(few, min_height=150)
    assert mpimg.imread(many).shape[0] > mpimg.imread(few).shape[0]
    _check_png(plot_forest([("all n/a", math.nan, math.nan, math.nan, False)], "n/a only", tmp_path / "nan.png"), min_height=150)
    _check_png(plot_forest([], "no rows", tmp_path / "empty.png"), min_height=150)


def test_equal_inputs_give_equal_bytes(tmp_path):
    confidence, correct = _calibration(np.random.default_rng(3))
    bins = reliability_bins(confidence, correct)
    summary = calibration_summary(confidence, correct)
    scores = {"m": {"id": _tied(np.random.default_rng(4), 20, (0.2, 0.3, 0.5)), "ood": TIES}}
    makers = {
        "roc": lambda p: plot_roc_overlay(_roc_curves(np.random.default_rng(5)), "roc", p),
        "hist": lambda p: plot_score_histograms(scores, "hist", p),
        "rel": lambda p: plot_reliability(bins, "rel", p, summary=summary),
        "forest": lambda p: plot_forest(_forest_rows(), "forest", p),
    }
    for name, make in makers.items():
        first, second = make(tmp_path / "a" / f"{name}.png"), make(tmp_path / "b" / f"{name}.png")
        assert first.read_bytes() == second.read_bytes(), name
