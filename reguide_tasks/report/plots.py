"""Plots of one run's per-document OoD scores: ROC curves and score histograms (matplotlib, PNG).

Conventions: the score is the run's ID score after its failure policy (by default the max confidence
over the ID classes), HIGHER = MORE in-distribution. ROC curves take ID as the positive class
(x: share of OoD images accepted as ID, y: share of ID images accepted), the orientation in which
the AUROC is reported. Histograms show each set's share of images in percent, on a log axis.

Every figure uses constrained layout, so titles, legends and labels never overlap a panel, from a
handful of images per dataset to tens of thousands. ``*_figure`` functions return the open Figure
(for tests); ``plot_*`` write it and close it.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # after the backend is chosen
import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator
from sklearn.metrics import auc, roc_curve

if TYPE_CHECKING:
    from reguide_tasks.report.runs import Run
    from reguide_tasks.report.samples import RunScores

_DPI = 110

# What each score rule of reguide_tasks.answers.scoring measures, for axis labels and titles.
_SCORE_MEANING = {
    "max_id": "max ID-class confidence",
    "msp": "max ID-class confidence / sum of all",
    "neg_none": "minus the 'none of these classes' confidence",
    "id_minus_none": "max ID-class confidence - 'none of these classes'",
}

# The y axis of every histogram: each set's share, so sets of different sizes compare.
SHARE_LABEL = "% of the set's images (log scale)"

# Share of the panel height a histogram's 100% bar may reach; the rest holds the legend.
_BAR_HEIGHT_SHARE = 0.72


def id_score_label(rule: str | None = "max_id") -> str:
    """The axis name of the score: what the rule measures, and which way is ID. ``None``: runs
    with different rules share the axis."""
    if rule is None:
        return "ID score (each run's score rule; higher = more ID)"
    return f"ID score ({_SCORE_MEANING.get(rule, f'score rule {rule}')}; higher = more ID)"


def wrap_title(title: str, width_in: float, fontsize: float) -> str:
    """``title`` with each of its lines wrapped to fit a figure ``width_in`` inches wide."""
    chars = max(int(width_in * 72 / (0.62 * fontsize)), 20)
    return "\n".join(textwrap.fill(line, chars) or line for line in title.splitlines() or [""])


def bin_count(n: int) -> int:
    """Histogram bins for ``n`` pooled scores: 101 (one per integer of a 0-100 confidence) from 200
    scores on, fewer and wider below, so a handful of scores still gives bars one can see."""
    return 101 if n >= 200 else 21 if n >= 50 else 11


def score_bins(values: np.ndarray, n_bins: int = 101) -> np.ndarray:
    """Shared histogram edges: ``n_bins`` equal bins whose first / last are CENTRED on the minimum /
    maximum, so the heavy ties at the extremes (LVLM confidences 0 and 100) get bins of their own;
    on a 0-100 scale with 101 bins each integer has its own bin. A single value (all tie) gets one
    unit-wide bin; :func:`score_xlim` pads the axis around it.
    """
    if values.size == 0:
        return np.array([0.0, 1.0])
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return np.array([lo - 0.5, lo + 0.5])
    width = (hi - lo) / (n_bins - 1)
    return lo - width / 2 + width * np.arange(n_bins + 1)


def score_xlim(edges: np.ndarray) -> tuple[float, float]:
    """x limits holding every bin; a lone bin (all scores tie) gets room either side so it reads as
    one narrow bar, not as a filled panel."""
    lo, hi = float(edges[0]), float(edges[-1])
    if edges.size > 2:
        return lo, hi
    pad = 4 * (hi - lo)
    return lo - pad, hi + pad


def share_floor(sizes: Sequence[int]) -> float:
    """Bottom of a log share axis: the power of ten below half the smallest non-zero share (one
    image of the largest set), so every bar rises visibly above it."""
    largest = max((n for n in sizes if n), default=1)
    return 10.0 ** math.floor(math.log10(0.5 / largest))


def share_ticks(floor: float) -> list[float]:
    """Log ticks from ``floor`` to 100%: at 1, 2, 5 per decade up to three decades, else one per
    decade, so the labels stay readable at any set size."""
    decades = round(-math.log10(floor))
    subs = (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    return [s * 10.0**e for e in range(-decades, 1) for s in subs if s * 10.0**e <= 1.0]


def log_share_axis(ax: plt.Axes, floor: float, legend_inside: bool = True) -> None:
    """A log y axis of shares from ``floor`` to 100% (labelled in percent), with headroom above 100%
    for a legend inside the panel (a sliver without one); no tick above 100%."""
    ax.set_yscale("log")
    top = floor * (1.0 / floor) ** (1.0 / _BAR_HEIGHT_SHARE) if legend_inside else 1.3
    ax.set_ylim(floor, top)
    ax.yaxis.set_major_locator(FixedLocator(share_ticks(floor)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{100 * v:g}%"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())



def share_hist(ax: plt.Axes, values: np.ndarray, edges: np.ndarray, **style: object) -> None:
    """Histogram of ``values`` on ``edges`` as the share of the set (each document weighs 1 / n);
    filled and translucent unless ``style`` says otherwise. Draws nothing for an empty set."""
    if values.size:
        weights = np.full(values.size, 1.0 / values.size)
        ax.hist(values, bins=edges, weights=weights, **{"histtype": "stepfilled", "alpha": 0.45, **style})


def no_scores_note(ax: plt.Axes, text: str) -> None:
    """A grey note in the middle of a panel that has a set without scores."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.35",
            bbox={"facecolor": "white", "edgecolor": "0.7", "boxstyle": "round"})


def _title(run: Run, scores: RunScores, what: str) -> str:
    return f"{run.label} | {run.task}\n{what}\n{id_score_label(scores.score_rule)}; failures: {scores.failure_policy}"


def _role(scores: RunScores, dataset: str) -> str:
    try:
        return scores.benchmark.role(dataset)
    except ValueError:
        return "?"


def plotted_datasets(scores: RunScores) -> list[str]:
    """Every OoD dataset of the benchmark (those without scores included, so a plot can say so),
    then any unknown dataset of the samples."""
    known = list(scores.benchmark.ood_datasets)
    return known + [d for d in scores.ood_datasets if d not in known]


def why_no_scores(scores: RunScores, dataset: str) -> str:
    """Why ``dataset`` has no kept score in this run, in a few words."""
    if dataset not in scores.scores:
        missing = scores.n_not_in_release.get(dataset, 0)
        return f"{missing} without a released answer" if missing else "not in the samples"
    failed, total = scores.n_failed.get(dataset, 0), scores.n_total.get(dataset, 0)
    return f"all {total} failed" if total and failed == total else "none kept"


def roc_figure(run: Run, scores: RunScores, aurocs: Mapping[str, float] | None = None) -> plt.Figure:
    """One ROC curve of ID vs each OoD dataset; legend with the AUROC (the results JSON's value
    from ``aurocs`` when given, else the run's metric, else the curve's area). A dataset without
    scores, or a run without ID scores, gets a legend entry saying so instead of a curve."""
    aurocs = aurocs if aurocs is not None else run.metrics
    fig, ax = plt.subplots(figsize=(6.4, 5.8), layout="constrained")
    id_scores = scores.id_scores
    for i, dataset in enumerate(plotted_datasets(scores)):
        ood = scores.scores.get(dataset, np.empty(0))
        role = _role(scores, dataset)
        if ood.size == 0:
            ax.plot([], [], linestyle="none", label=f"{dataset} ({role}): no scores (n/a; {why_no_scores(scores, dataset)})")
            continue
        if id_scores.size == 0:
            ax.plot([], [], linestyle="none", label=f"{dataset} ({role}, n={ood.size}): n/a, no ID scores")
            continue
        fpr, tpr = roc_points(id_scores, ood)
        value = aurocs.get(f"auroc_{dataset}")
        if value is None or math.isnan(value):
            value = 100.0 * float(auc(fpr, tpr))
        ax.plot(fpr, tpr, linestyle="-" if role == "near" else "--", color=plt.cm.tab10(i % 10),
                label=f"{dataset} ({role}, n={ood.size}): AUROC {value:.1f}")
    roc_frame(ax)
    what = f"ROC, ID ({scores.benchmark.id_dataset}, n={id_scores.size}) positive"
    ax.set_title(wrap_title(_title(run, scores, what), 6.2, 9), fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_roc(run: Run, scores: RunScores, path: Path, aurocs: Mapping[str, float] | None = None) -> Path:
    """:func:`roc_figure` written to ``path``."""
    return save(roc_figure(run, scores, aurocs), path)


def histogram_figure(run: Run, scores: RunScores) -> plt.Figure:
    """Score histograms, ID vs each OoD dataset (one panel each), on shared bins, as the share of
    each set's images on a log axis, so the few scores between the tied extremes stay visible."""
    datasets = plotted_datasets(scores)
    sets = {d: scores.scores.get(d, np.empty(0)) for d in datasets}
    pooled = np.concatenate([scores.id_scores, *sets.values()])
    edges = score_bins(pooled, bin_count(pooled.size))
    floor = share_floor([scores.id_scores.size, *(v.size for v in sets.values())])
    ncols = min(3, max(len(datasets), 1))
    nrows = max(math.ceil(len(datasets) / ncols), 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.2 * nrows + 0.9), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    for ax, dataset in zip(axes.flat, datasets):
        _histogram_panel(ax, scores, dataset, sets[dataset], edges, floor)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    _label_histogram_axes(axes, id_score_label(scores.score_rule))
    axes[0, 0].set_xlim(*score_xlim(edges))
    fig.suptitle(wrap_title(_title(run, scores, "score histograms"), 4.6 * ncols, 10), fontsize=10)
    return fig


def _histogram_panel(ax: plt.Axes, scores: RunScores, dataset: str, ood: np.ndarray, edges: np.ndarray, floor: float) -> None:
    """One panel: the ID set (blue) and one OoD set (red), or a note when the OoD set has none."""
    id_name = scores.benchmark.id_dataset
    for name, values, color in ((id_name, scores.id_scores, "tab:blue"), (dataset, ood, "tab:red")):
        share_hist(ax, values, edges, color=color, label=f"{name} (n={values.size})")
    if ood.size == 0:
        no_scores_note(ax, f"{dataset}: no scores\n({why_no_scores(scores, dataset)})")
    failed = f"failed: ID {scores.n_failed.get(id_name, 0)}, OoD {scores.n_failed.get(dataset, 0)}"
    ax.set_title(f"{dataset} ({_role(scores, dataset)}); {failed}", fontsize=9)
    log_share_axis(ax, floor)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)


def _label_histogram_axes(axes: np.ndarray, xlabel: str) -> None:
    """Every shown panel names both axes and ticks its x axis (a hidden panel may sit below one),
    so no panel is left unlabelled whatever the grid."""
    for ax in axes.flat:
        if ax.get_visible():
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.yaxis.set_tick_params(labelleft=True)
            ax.set_xlabel(textwrap.fill(xlabel, 60), fontsize=8)
            ax.set_ylabel(SHARE_LABEL, fontsize=8)


def plot_histograms(run: Run, scores: RunScores, path: Path) -> Path:
    """:func:`histogram_figure` written to ``path``."""
    return save(histogram_figure(run, scores), path)


def roc_points(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the ROC curve with ID positive and higher scores more ID; both sides non-empty."""
    is_id = np.r_[np.ones(id_scores.size, bool), np.zeros(ood_scores.size, bool)]
    fpr, tpr, _ = roc_curve(is_id, np.r_[id_scores, ood_scores])
    return fpr, tpr


def roc_frame(ax: plt.Axes) -> None:
    """Chance diagonal, unit limits, FPR / TPR axis labels (ID positive) and grid of a ROC panel."""
    ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle=":")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="FPR: OoD images accepted as ID", ylabel="TPR: ID images accepted")
    ax.grid(alpha=0.3)


def save(fig: plt.Figure, path: Path) -> Path:
    """Lay out, write ``fig`` as a PNG at ``path`` (creating its folder), close it; returns ``path``.
    Matplotlib's PNG carries no date, so equal figures give equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def plot_run(run: Run, scores: RunScores, stem: Path) -> list[Path]:
    """``<stem>_roc.png`` and ``<stem>_hist.png`` for one run; returns the paths written."""
    return [
        plot_roc(run, scores, stem.with_name(stem.name + "_roc.png")),
        plot_histograms(run, scores, stem.with_name(stem.name + "_hist.png")),
    ]
