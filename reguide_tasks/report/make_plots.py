"""The cross-run figures of a report, per benchmark: ROC curves of every run overlaid (one figure per
OoD dataset of the benchmark; a run without that dataset's scores is marked n/a), ID-score
histograms per run, a reliability diagram per run with confidences, and a forest plot of the
ReGuide - baseline deltas. Files under ``plots/<benchmark>/``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from reguide_tasks.metrics.calibration import calibration_summary, reliability_bins
from reguide_tasks.report.comparison_plots import (
    plot_forest,
    plot_reliability,
    plot_roc_overlay,
    plot_score_histograms,
)
from reguide_tasks.report.escape import file_part
from reguide_tasks.report.leaderboard import calibration_inputs
from reguide_tasks.report.plots import plotted_datasets


def _slug(text: str) -> str:
    return file_part(text)


def _names(loaded: Sequence[tuple]) -> dict[int, str]:
    """A legend name per run: its label, with the task when a label has several runs."""
    per_label: dict[str, int] = {}
    for run, _ in loaded:
        per_label[run.label] = per_label.get(run.label, 0) + 1
    return {i: run.label if per_label[run.label] == 1 else f"{run.label} | {run.task}" for i, (run, _) in enumerate(loaded)}


def plot_comparisons(plots_dir: Path, loaded: Sequence[tuple], comparisons: Mapping[str, Mapping[str, pd.DataFrame]]) -> list[Path]:
    """Write every cross-run figure; ``loaded``: (run, scores or None) pairs; return the paths."""
    names = _names(loaded)
    files: list[Path] = []
    for bench_name, parts in comparisons.items():
        mine = [(names[i], run, scores) for i, (run, scores) in enumerate(loaded) if run.benchmark == bench_name and scores is not None]
        if not mine:
            continue
        where = plots_dir / bench_name
        datasets = list(dict.fromkeys(d for _, _, scores in mine for d in plotted_datasets(scores)))
        rules = {scores.score_rule for _, _, scores in mine}
        rule = rules.pop() if len(rules) == 1 else None  # None: the runs' rules differ
        for dataset in datasets:
            # A run without this dataset's scores stays in the legend, as "no OoD scores (n/a)".
            curves = {name: (scores.id_scores, scores.scores.get(dataset, np.empty(0))) for name, _, scores in mine}
            title = f"{bench_name}: ID vs {dataset}"
            files.append(plot_roc_overlay(curves, title, where / f"roc_overlay_{_slug(dataset)}.png", rule))
        histograms = {name: {scores.benchmark.id_dataset: scores.id_scores, **{d: scores.scores.get(d, np.empty(0)) for d in plotted_datasets(scores)}}
                      for name, _, scores in mine}
        title = f"{bench_name}: ID scores per run (after each run's failure policy)"
        files.append(plot_score_histograms(histograms, title, where / "score_histograms.png", rule))
        for name, run, scores in mine:
            if scores.has_confidence and scores.id_confidence.size:
                confidence, correct, _ = calibration_inputs(scores)
                bins = reliability_bins(confidence, correct)
                summary = calibration_summary(confidence, correct)
                title = f"{name}: verbalized confidence on {scores.benchmark.id_dataset}"
                files.append(plot_reliability(bins, title, where / f"reliability__{_slug(run.label)}__{_slug(run.task)}.png", summary))
        deltas = parts.get("reguide_vs_baseline")
        if deltas is not None and len(deltas):
            rows = [
                (f"{r['model']} | {r['target']}", r["delta"], r["ci_low"], r["ci_high"], not math.isnan(r["p_holm"]) and r["p_holm"] <= 0.05)
                for r in deltas.to_dict("records")
            ]
            files.append(plot_forest(rows, f"{bench_name}: ReGuide - baseline (DeLong 95% CI, * Holm p <= 0.05)", where / "reguide_vs_baseline.png"))
    return files
