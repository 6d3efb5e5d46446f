"""The report's figures hold at any run size: 3 images per dataset, 50,000, all scores tied, and a
dataset without scores. Checked on the matplotlib objects after drawing: axis names, readable y
ticks, bars inside their panels, titles off the panels, and a legend that names missing datasets."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.transforms import Bbox

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.report import make_plots
from reguide_tasks.report.comparison_plots import (
    roc_overlay_figure,
    score_histograms_figure,
)
from reguide_tasks.report.plots import (
    bin_count,
    histogram_figure,
    id_score_label,
    roc_figure,
    score_bins,
    share_ticks,
)
from reguide_tasks.report.runs import Run
from reguide_tasks.report.samples import RunScores

BENCH = get_benchmark("imagenet200")
SIZES = (3, 50_000)


def _scores(n: int, ties: bool = False, missing: bool = False) -> RunScores:
    """A run of ``n`` images per dataset; ``missing``: every ssb_hard answer failed, ninco absent."""
    rng = np.random.default_rng(n)
    scores = {}
    for i, dataset in enumerate(BENCH.datasets):
        values = np.clip(np.round(rng.normal(85 if i == 0 else 55, 20, n)), 0, 100)
        values[rng.random(n) < 0.3] = 100.0  # the usual pile at the top confidence
        scores[dataset] = np.full(n, 100.0) if ties else values
    failed = dict.fromkeys(BENCH.datasets, 0)
    if missing:
        scores["ssb_hard"], failed["ssb_hard"] = np.empty(0), n
        del scores["ninco"], failed["ninco"]
    return RunScores(BENCH, scores, {d: n for d in scores}, failed, "max_id", "exclude")


RUN = Run("reguide_imagenet200", "imagenet200", "m", "", "", Path("r.json"), None, {}, label="qwen2-vl-7b")


def _cross_run(n: int) -> dict[str, dict[str, np.ndarray]]:
    full, gaps = _scores(n), _scores(n, missing=True)
    return {"qwen | ReGuide": dict(full.scores), "llava | baseline": {d: gaps.scores.get(d, np.empty(0)) for d in BENCH.datasets}}


def _drawn(fig: plt.Figure) -> plt.Figure:
    fig.canvas.draw()
    return fig


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _panels(fig: plt.Figure) -> list[plt.Axes]:
    return [ax for ax in fig.axes if ax.get_visible()]


def _overlap(a: Bbox, b: Bbox, tolerance: float = 0.5) -> bool:
    """Whether two display boxes share more than a sliver (``tolerance`` pixels) in both directions."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tolerance and min(a.y1, b.y1) - max(a.y0, b.y0) > tolerance


def _check_titles_off_panels(fig: plt.Figure) -> None:
    renderer = fig.canvas.get_renderer()
    panels = _panels(fig)
    titles = [fig._suptitle] if fig._suptitle is not None else []
    titles += [ax.title for ax in panels if ax.get_title()]
    assert titles
    for title in titles:
        box = title.get_window_extent(renderer)
        for ax in panels:
            assert not _overlap(box, ax.get_window_extent(renderer)), (title.get_text(), ax.get_title())
        assert box.y1 <= fig.bbox.y1 + 0.5  # and inside the figure


def _check_y_ticks(ax: plt.Axes) -> None:
    """At least two labelled y ticks inside the limits, none overlapping the next."""
    renderer = ax.figure.canvas.get_renderer()
    lo, hi = ax.get_ylim()
    shown = [t for t in ax.yaxis.get_major_ticks() if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text()]
    assert len(shown) >= 2, ax.get_title()
    boxes = sorted((t.label1.get_window_extent(renderer) for t in shown), key=lambda b: b.y0)
    assert all(below.y1 <= above.y0 + 0.5 for below, above in itertools.pairwise(boxes))


def _check_bars_inside(ax: plt.Axes) -> None:
    """Every bar lies within the panel's x range and under its top (a log axis clips bottoms at 0)."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    assert ax.patches or ax.texts, ax.get_title()
    for patch in ax.patches:
        box = patch.get_window_extent(renderer)
        assert frame.x0 - 0.5 <= box.x0 and box.x1 <= frame.x1 + 0.5, ax.get_title()
        assert box.y1 <= frame.y1 + 0.5, ax.get_title()


@pytest.mark.parametrize(("n", "ties"), [(3, False), (50_000, False), (3, True)], ids=["3", "50000", "3_all_tied"])
def test_run_histograms_hold_at_any_size(n, ties):
    """Both axes named (the x axis as the ID score), y ticks readable, bars inside, titles off."""
    fig = _drawn(histogram_figure(RUN, _scores(n, ties=ties)))
    panels = _panels(fig)
    assert len(panels) == len(BENCH.ood_datasets)
    for ax in panels:
        assert ax.get_xlabel().replace("\n", " ") == id_score_label("max_id")
        assert "max ID-class confidence" in ax.get_xlabel() and "OoD score" not in ax.get_xlabel()
        assert "%" in ax.get_ylabel()
        _check_y_ticks(ax)
        _check_bars_inside(ax)
        assert ax.get_ylim()[1] > 1.0  # 100% bars stay under the top, the legend above them
    assert "higher = more ID" in fig._suptitle.get_text()
    _check_titles_off_panels(fig)
    if ties:  # one narrow bar with room either side, not a filled panel
        lo, hi = panels[0].get_xlim()
        assert lo < 99.5 and hi > 100.5


@pytest.mark.parametrize("n", SIZES)
def test_run_roc_legend_names_datasets_without_scores(n):
    fig = _drawn(roc_figure(RUN, _scores(n, missing=True)))
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts[0] == f"ssb_hard (near): no scores (n/a; all {n} failed)"
    assert texts[1] == "ninco (near): no scores (n/a; not in the samples)"
    assert len(texts) == len(BENCH.ood_datasets) and all("AUROC" in t for t in texts[2:])
    _check_titles_off_panels(fig)
    assert "higher = more ID" in fig.axes[0].get_title()


def test_run_histograms_say_which_panel_has_no_scores():
    fig = histogram_figure(RUN, _scores(3, missing=True))  # texts only: no drawing needed
    notes = {ax.get_title().split(" ")[0]: [t.get_text() for t in ax.texts] for ax in _panels(fig)}
    assert notes["ssb_hard"] == ["ssb_hard: no scores\n(all 3 failed)"]
    assert notes["ninco"] == ["ninco: no scores\n(not in the samples)"]
    assert notes["textures"] == []


@pytest.mark.parametrize("n", SIZES)
def test_cross_run_histograms_hold_at_any_size(n):
    fig = _drawn(score_histograms_figure(_cross_run(n), "imagenet200: ID scores per run"))
    panels = _panels(fig)
    assert panels[-1].get_xlabel() == id_score_label("max_id")
    for ax in panels:
        assert "%" in ax.get_ylabel()
        _check_y_ticks(ax)
        _check_bars_inside(ax)
    legend = [t.get_text() for t in panels[1].get_legend().get_texts()]
    assert "ssb_hard (OoD): no scores (n/a)" in legend and "ninco (OoD): no scores (n/a)" in legend
    _check_titles_off_panels(fig)


def test_cross_run_roc_overlay_names_runs_without_scores():
    curves = {"qwen": (np.array([90.0, 100.0, 60.0]), np.array([0.0, 60.0, 90.0])), "llava": (np.array([90.0]), np.empty(0))}
    fig = _drawn(roc_overlay_figure(curves, "imagenet200: ID vs ssb_hard"))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][1] == "llava: no OoD scores (n/a)"
    _check_titles_off_panels(fig)


def test_comparisons_keep_a_run_without_a_dataset(tmp_path, monkeypatch):
    """The cross-run ROC of ninco lists the run that has no ninco scores (as n/a)."""
    seen = {}
    monkeypatch.setattr(make_plots, "plot_roc_overlay", lambda curves, title, path, rule: seen.setdefault(path.name, curves) and path)
    monkeypatch.setattr(make_plots, "plot_score_histograms", lambda scores, title, path, rule: seen.setdefault(path.name, scores) and path)
    other = Run("reguide_baseline_imagenet200", "imagenet200", "m", "", "", Path("b.json"), None, {}, label="llava")
    make_plots.plot_comparisons(tmp_path, [(RUN, _scores(3)), (other, _scores(3, missing=True))], {"imagenet200": {}})
    assert seen["roc_overlay_ninco.png"]["llava"][1].size == 0 and seen["roc_overlay_ninco.png"]["qwen2-vl-7b"][1].size == 3
    assert seen["score_histograms.png"]["llava"]["ninco"].size == 0


def test_bins_and_ticks_scale_with_the_run():
    assert bin_count(3 * 6) == 11 and bin_count(50_000 * 6) == 101
    few = score_bins(np.array([0.0, 60.0, 90.0, 100.0]), bin_count(18))
    assert few[0] == pytest.approx(-5.0) and few[-1] == pytest.approx(105.0)  # 10-point bins, 0 and 100 centred
    assert share_ticks(0.1) == pytest.approx([0.1, 0.2, 0.5, 1.0])
    assert share_ticks(1e-5) == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])  # one per decade past three
