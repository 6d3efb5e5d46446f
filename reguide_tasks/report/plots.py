"""Plots of one run's per-document OoD scores: ROC curves and score histograms (matplotlib, PNG).

Conventions: scores are OoD scores after the run's failure policy, HIGHER = MORE in-distribution.
ROC curves take ID as the positive class (x: share of OoD images accepted as ID, y: share of ID
images accepted), the orientation in which the AUROC is reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # after the backend is chosen
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from sklearn.metrics import auc, roc_curve

if TYPE_CHECKING:
    from reguide_tasks.report.runs import Run
    from reguide_tasks.report.samples import RunScores

_DPI = 110


def score_bins(values: np.ndarray, n_bins: int = 101) -> np.ndarray:
    """Shared histogram edges: ``n_bins`` equal bins whose first / last are CENTRED on the minimum /
    maximum, so the heavy ties at the extremes (LVLM confidences 0 and 100) get bins of their own;
    on a 0-100 scale each integer has its own bin. A single value gets one unit-wide bin.
    """
    if values.size == 0:
        return np.array([0.0, 1.0])
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return np.array([lo - 0.5, lo + 0.5])
    width = (hi - lo) / (n_bins - 1)
    return lo - width / 2 + width * np.arange(n_bins + 1)


def _title(run: Run, scores: RunScores, what: str) -> str:
    return (
        f"{run.label} | {run.task}\n{what}; score {scores.score_rule} (higher = more ID), "
        f"failures: {scores.failure_policy}"
    )


def _role(scores: RunScores, dataset: str) -> str:
    try:
        return scores.benchmark.role(dataset)
    except ValueError:
        return "?"


def plot_roc(run: Run, scores: RunScores, path: Path, aurocs: Mapping[str, float] | None = None) -> Path:
    """One figure, one ROC curve of ID vs each OoD dataset; legend with the AUROC (the results
    JSON's value from ``aurocs`` when given, else the run's metric, else the curve's area).
    """
    aurocs = aurocs if aurocs is not None else run.metrics
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    id_scores = scores.id_scores
    for i, dataset in enumerate(scores.ood_datasets):
        ood = scores.scores[dataset]
        if id_scores.size == 0 or ood.size == 0:
            continue
        fpr, tpr = roc_points(id_scores, ood)
        value = aurocs.get(f"auroc_{dataset}")
        if value is None or math.isnan(value):
            value = 100.0 * float(auc(fpr, tpr))
        role = _role(scores, dataset)
        ax.plot(
            fpr,
            tpr,
            linestyle="-" if role == "near" else "--",
            color=plt.cm.tab10(i % 10),
            label=f"{dataset} ({role}, n={ood.size}): AUROC {value:.1f}",
        )
    roc_frame(ax)
    ax.set_title(_title(run, scores, f"ROC, ID ({scores.benchmark.id_dataset}, n={id_scores.size}) positive"), fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    return save(fig, path)


def plot_histograms(run: Run, scores: RunScores, path: Path) -> Path:
    """Score histograms, ID vs each OoD dataset (one panel each), on shared bins, as the fraction
    of each set's documents on a log axis so the few scores between the tied extremes stay visible.
    """
    datasets = scores.ood_datasets
    pooled = np.concatenate([scores.id_scores, *(scores.scores[d] for d in datasets)])
    edges = score_bins(pooled)
    ncols = min(3, max(len(datasets), 1))
    nrows = max(math.ceil(len(datasets) / ncols), 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows + 0.8), sharex=True, sharey=True, squeeze=False)
    id_name = scores.benchmark.id_dataset
    for ax, dataset in zip(axes.flat, datasets):
        for name, values, color in ((id_name, scores.id_scores, "tab:blue"), (dataset, scores.scores[dataset], "tab:red")):
            share_hist(ax, values, edges, color=color, label=f"{name} (n={values.size})")
        failed = f"failed: ID {scores.n_failed.get(id_name, 0)}, OoD {scores.n_failed.get(dataset, 0)}"
        ax.set_title(f"{dataset} ({_role(scores, dataset)}); {failed}", fontsize=9)
        log_share_axis(ax)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(datasets) :]:
        ax.set_visible(False)
    for col in range(ncols):
        # The lowest shown panel of each column carries the x axis (a hidden panel may sit below it).
        shown = [ax for ax in axes[:, col] if ax.get_visible()]
        if shown:
            shown[-1].xaxis.set_tick_params(labelbottom=True)
            shown[-1].set_xlabel("OoD score")
    for ax in axes[:, 0]:
        ax.set_ylabel("share of the set's documents")
    fig.suptitle(_title(run, scores, "score histograms"), fontsize=10)
    return save(fig, path)


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


def share_hist(ax: plt.Axes, values: np.ndarray, edges: np.ndarray, **style: object) -> None:
    """Histogram of ``values`` on ``edges`` as the share of the set (each document weighs 1 / n);
    filled and translucent unless ``style`` says otherwise. Draws nothing for an empty set."""
    if values.size:
        weights = np.full(values.size, 1.0 / values.size)
        ax.hist(values, bins=edges, weights=weights, **{"histtype": "stepfilled", "alpha": 0.45, **style})


def log_share_axis(ax: plt.Axes) -> None:
    """A log y axis of shares, ticked at 1, 2, 5 per decade and labelled in percent."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{100 * v:g}%"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def save(fig: plt.Figure, path: Path) -> Path:
    """Lay out, write ``fig`` as a PNG at ``path`` (creating its folder), close it; returns ``path``.
    Matplotlib's PNG carries no date, so equal figures give equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
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
