"""Cross-run figures of the leaderboard: ROC overlays, score histograms per model, reliability
diagrams and forest plots of paired differences (matplotlib, Agg backend, PNG).

Plain data in, a path out (``*_figure``: the open Figure, for tests): no function here reads runs
or records. Conventions as in :mod:`reguide_tasks.report.plots`: ID scores are HIGHER = MORE
in-distribution, constrained layout keeps titles and legends off the panels, ROC curves take ID
as the positive class (x: share of OoD images accepted as ID, y: share of ID images accepted), and
equal inputs give byte-identical PNGs (matplotlib writes no date into a PNG).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from reguide_tasks.metrics.ood import auroc
from reguide_tasks.report.plots import (
    SHARE_LABEL,
    bin_count,
    id_score_label,
    log_share_axis,
    plt,
    roc_frame,
    roc_points,
    save,
    score_bins,
    score_xlim,
    share_floor,
    share_hist,
    wrap_title,
)

_LINESTYLES = ("-", "--", "-.", ":")


def _style(i: int) -> dict[str, object]:
    """Colour (tab10) and, past ten, line style of the i-th series."""
    return {"color": plt.cm.tab10(i % 10), "linestyle": _LINESTYLES[(i // 10) % len(_LINESTYLES)]}


def roc_overlay_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, score_rule: str | None = "max_id") -> plt.Figure:
    """One ROC curve per run label on one ID-vs-OoD pair (one figure per OoD dataset and benchmark).

    ``curves[label] = (id_scores, ood_scores)``, higher = more ID, in the order given. The legend
    reads ``label (AUROC xx.x)`` (:func:`reguide_tasks.metrics.ood.auroc`, percent); a label with an
    empty side gets no curve and ``label: no OoD scores (n/a)`` (or ``no ID scores``).
    """
    fig, ax = plt.subplots(figsize=(6.4, 5.8), layout="constrained")
    for i, (label, (id_scores, ood_scores)) in enumerate(curves.items()):
        id_scores, ood_scores = np.asarray(id_scores, float), np.asarray(ood_scores, float)
        if id_scores.size == 0 or ood_scores.size == 0:
            side = "OoD" if ood_scores.size == 0 else "ID"
            ax.plot([], [], linestyle="none", label=f"{label}: no {side} scores (n/a)")
            continue
        fpr, tpr = roc_points(id_scores, ood_scores)
        value = auroc(np.r_[np.ones(id_scores.size, bool), np.zeros(ood_scores.size, bool)], np.r_[id_scores, ood_scores])
        ax.plot(fpr, tpr, **_style(i), label=f"{label} (AUROC {value:.1f})")
    roc_frame(ax)
    ax.set_title(wrap_title(f"{title}\nROC, ID positive; {id_score_label(score_rule)}", 6.2, 9), fontsize=9)
    if curves:
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
    return fig


def plot_roc_overlay(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, path: Path, score_rule: str | None = "max_id") -> Path:
    """:func:`roc_overlay_figure` written to ``path``."""
    return save(roc_overlay_figure(curves, title, score_rule), path)


def score_histograms_figure(scores: Mapping[str, Mapping[str, np.ndarray]], title: str, score_rule: str | None = "max_id") -> plt.Figure:
    """Score histograms per model: one panel row per outer key (model), shared x and shared bins.

    ``scores[model][dataset]`` are a dataset's ID scores (higher = more ID); the FIRST dataset of
    each model is its ID set (filled), the others OoD sets (outlines). The y axis is the share of
    each set's images on a log scale, as in :func:`reguide_tasks.report.plots.histogram_figure`; a
    dataset keeps its colour across rows; the legend sits right of its panel, off the bars; an empty
    set reads ``no scores (n/a)``. ``score_rule`` names the x axis (None: the runs' rules differ).
    """
    datasets = list(dict.fromkeys(d for per_model in scores.values() for d in per_model))
    colours = {d: _style(i)["color"] for i, d in enumerate(datasets)}
    arrays = {m: {d: np.asarray(v, float) for d, v in per_model.items()} for m, per_model in scores.items()}
    every = [v for per_model in arrays.values() for v in per_model.values()]
    pooled = np.concatenate([np.empty(0), *every])
    edges = score_bins(pooled, bin_count(pooled.size))
    floor = share_floor([v.size for v in every])
    nrows = max(len(arrays), 1)
    fig, axes = plt.subplots(nrows, 1, figsize=(7.6, 2.4 * nrows + 1.1), sharex=True, sharey=True, squeeze=False, layout="constrained")
    for ax, (model, per_model) in zip(axes[:, 0], arrays.items()):
        _model_panel(ax, model, per_model, colours, edges)
    for ax in axes[:, 0]:
        log_share_axis(ax, floor, legend_inside=False)
        ax.set_ylabel(SHARE_LABEL, fontsize=8)
        ax.grid(alpha=0.3)
    if not arrays:
        axes[0, 0].text(0.5, 0.5, "no scores", ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[0, 0].set_xlim(*score_xlim(edges))
    axes[-1, 0].set_xlabel(id_score_label(score_rule))
    fig.suptitle(wrap_title(f"{title}\nscore histograms; {id_score_label(score_rule)}", 7.6, 10), fontsize=10)
    return fig


def _model_panel(ax: plt.Axes, model: str, per_model: Mapping[str, np.ndarray], colours: Mapping[str, object], edges: np.ndarray) -> None:
    """One model's row: its ID set filled, its OoD sets as outlines, the legend right of the panel."""
    for j, (dataset, values) in enumerate(per_model.items()):
        role = "ID" if j == 0 else "OoD"
        style = {"histtype": "stepfilled", "alpha": 0.4} if j == 0 else {"histtype": "step", "linewidth": 1.4}
        share_hist(ax, values, edges, color=colours[dataset], label=f"{dataset} ({role}, n={values.size})", **style)
        if values.size == 0:
            ax.plot([], [], linestyle="none", label=f"{dataset} ({role}): no scores (n/a)")
    ax.set_title(model, fontsize=9)
    if per_model:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_score_histograms(scores: Mapping[str, Mapping[str, np.ndarray]], title: str, path: Path, score_rule: str | None = "max_id") -> Path:
    """:func:`score_histograms_figure` written to ``path``."""
    return save(score_histograms_figure(scores, title, score_rule), path)


def _format(value: float) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "n/a"
    return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.3g}"


def plot_reliability(bins, title: str, path: Path, summary: Mapping[str, float] | None = None) -> Path:
    """Reliability diagram of verbalized confidence from
    :func:`reguide_tasks.metrics.calibration.reliability_bins` output (fractions in [0, 1], non-empty
    bins only), drawn in percent.

    Top: each bin's accuracy as a bar over [lower, upper] (a bin of one tied value, lower == upper,
    gets a 1-point-wide bar), its mean confidence as a point, the gap between the two shaded, and
    the diagonal of perfect calibration. Bottom: the answers per bin. ``summary`` (e.g. ECE, Brier,
    AURC, n, n_failed) goes into a text box.
    """
    lower, upper = 100 * np.asarray(bins.lower, float), 100 * np.asarray(bins.upper, float)
    confidence, accuracy = 100 * np.asarray(bins.confidence, float), 100 * np.asarray(bins.accuracy, float)
    count = np.asarray(bins.count, int)
    width = np.maximum(upper - lower, 1.0)
    left = (lower + upper) / 2 - width / 2
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.0, 6.6), sharex=True, gridspec_kw={"height_ratios": (3, 1)}, layout="constrained")
    top.plot([0, 100], [0, 100], color="0.5", linewidth=0.9, linestyle=":", label="perfect calibration")
    top.bar(left, accuracy, width=width, align="edge", color="tab:blue", alpha=0.55, edgecolor="tab:blue", label="accuracy")
    gap_low, gap_high = np.minimum(accuracy, confidence), np.maximum(accuracy, confidence)
    top.bar(left, gap_high - gap_low, bottom=gap_low, width=width, align="edge", color="tab:red", alpha=0.25, hatch="//", label="gap")
    top.plot(confidence, confidence, linestyle="none", marker="o", markersize=4, color="tab:red", clip_on=False, label="mean confidence")
    top.set(xlim=(0, 100), ylim=(0, 101), ylabel="accuracy (%)")
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    if count.size == 0:
        top.text(50, 50, "no answer with a confidence", ha="center", va="center", fontsize=9)
    if summary:
        text = "\n".join(f"{key}: {_format(value)}" for key, value in summary.items())
        top.text(0.97, 0.04, text, transform=top.transAxes, ha="right", va="bottom", fontsize=8, family="monospace",
                 bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.6"})
    bottom.bar(left, count, width=width, align="edge", color="0.45")
    for x, n in zip(left + width / 2, count):
        bottom.annotate(str(n), (x, n), ha="center", va="bottom", fontsize=6, xytext=(0, 1), textcoords="offset points")
    bottom.set(xlim=(0, 100), ylim=(0, max(int(count.max(initial=0)), 1) * 1.25), xlabel="stated confidence (%)", ylabel="answers")
    bottom.grid(alpha=0.3)
    fig.suptitle(wrap_title(f"{title}\nreliability of the stated confidence (failed answers left out)", 6.0, 10), fontsize=10)
    return save(fig, path)


def plot_forest(
    rows: Sequence[tuple[str, float, float, float, bool]],
    title: str,
    path: Path,
    xlabel: str = "AUROC difference (ReGuide - baseline, pp)",
) -> Path:
    """Forest plot: one row per ``(label, delta, ci_low, ci_high, significant)``, top to bottom in
    the order given; the point and its CI whisker, a zero line, significant rows filled and starred,
    open markers otherwise; a row whose delta is NaN reads "n/a". Height grows with the rows.
    """
    n = len(rows)
    fig, ax = plt.subplots(figsize=(7.0, 1.5 + 0.34 * max(n, 1)), layout="constrained")
    ax.axvline(0.0, color="0.4", linewidth=0.9)
    finite = [v for _, delta, lo, hi, _ in rows for v in (delta, lo, hi) if not math.isnan(v)]
    span = max((abs(v) for v in finite), default=1.0) or 1.0
    labels = []
    for y, (label, delta, lo, hi, significant) in zip(range(n - 1, -1, -1), rows):
        labels.append(f"{label} *" if significant and not math.isnan(delta) else label)
        if math.isnan(delta):
            ax.text(0.0, y, "n/a", ha="center", va="center", fontsize=8, color="0.35", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            continue
        if not (math.isnan(lo) or math.isnan(hi)):
            ax.plot([lo, hi], [y, y], color="tab:blue", linewidth=1.4)
            ax.plot([lo, lo, math.nan, hi, hi], [y - 0.15, y + 0.15, math.nan, y - 0.15, y + 0.15], color="tab:blue", linewidth=1.0)
        ax.plot([delta], [y], marker="*" if significant else "o", markersize=11 if significant else 6, color="tab:blue",
                markerfacecolor="tab:blue" if significant else "white", markeredgewidth=1.2)
    ax.plot([], [], marker="*", markersize=9, color="tab:blue", linestyle="none", label="significant (CI excludes 0)")
    ax.plot([], [], marker="o", markerfacecolor="white", color="tab:blue", linestyle="none", label="not significant")
    ax.set_yticks(range(n - 1, -1, -1), labels, fontsize=8)
    ax.set(ylim=(-0.8, max(n, 1) - 0.2), xlim=(-1.15 * span, 1.15 * span), xlabel=xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=7, frameon=False)
    if n == 0:
        ax.text(0.0, 0.0, "no rows", ha="center", va="center", fontsize=9)
    fig.suptitle(wrap_title(title, 7.0, 9), fontsize=9)
    return save(fig, path)
