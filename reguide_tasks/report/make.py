"""``make_report``: the whole cross-model report of the ReGuide tasks from lmms-eval outputs, in
order: runs, their samples and bootstrap CIs, tables, the comparisons (leaderboard, ReGuide vs
baseline, calibration), plots, files written (Markdown, CSV, LaTeX, the HTML page).

Conventions
-----------
- Every metric shown comes from the results JSON as the task computed it. The samples are used for
  the bootstrap CIs, the plots, the overall failure rate and a consistency check only.
- Problems that make a report impossible raise :class:`~reguide_tasks.report.files.ReportError`
  (one-line message); problems that only drop a part (missing samples file) are returned as notes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.metrics.bootstrap import bootstrap_auroc
from reguide_tasks.report.escape import csv_safe, file_part
from reguide_tasks.report.files import ReportError
from reguide_tasks.report.leaderboard import (
    Scored,
    calibration_table,
    leaderboard,
    reguide_vs_baseline,
)
from reguide_tasks.report.render import write_report
from reguide_tasks.report.render_comparisons import comparisons_markdown
from reguide_tasks.report.runs import load_runs, select_runs
from reguide_tasks.report.samples import load_scores
from reguide_tasks.report.staging import final_paths, staged
from reguide_tasks.report.tables import build_tables, run_row, sort_tables
from reguide_tasks.vocab import split_metric_key


@dataclass
class Report:
    """What :func:`make_report` produced: the Markdown text, the tables, written files, notes."""

    markdown: str
    tables: dict[str, pd.DataFrame]
    files: list[Path]
    notes: list[str]
    # Per benchmark: "leaderboard", "reguide_vs_baseline" and "calibration" tables.
    comparisons: dict[str, dict[str, pd.DataFrame]]
    # (run, its per-document scores or None) for every run in the report.
    loaded: list[tuple]


def _slug(text: str) -> str:
    return file_part(text)


def make_report(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    sort_by: str | None = None,
    descending: bool | None = None,
    models: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    plots: bool = True,
    primary: str | None = None,
    html: bool = True,
    note: Callable[[str], None] | None = None,
) -> Report:
    """Read the runs under ``paths``, write ``report.md``, ``<benchmark>.csv``, ``report.tex``, the
    comparison CSVs, (``plots``) PNGs under ``out_dir/plots/`` and (``html``) ``report.html``; return
    what was made. ``primary`` is the metric the leaderboard ranks by (None: the fallback order of
    :mod:`reguide_tasks.report.leaderboard`). ``note`` is called with each
    note as it arises (the CLI prints them). ReportError for anything that prevents a report.
    """
    if n_boot < 0:
        raise ReportError(f"--bootstrap must be >= 0, got {n_boot}")
    check_primary(primary)
    emit = note or (lambda _text: None)
    runs, notes = load_runs(paths)
    for text in notes:
        emit(text)
    runs = select_runs(runs, models, tasks)
    out = Path(out_dir)
    rows, loaded = [], []
    for run in runs:
        scores, run_notes = load_scores(run)
        cis: dict[str, tuple[float, float]] = {}
        if scores is not None and n_boot:
            bench = get_benchmark(run.benchmark)
            cis = bootstrap_auroc(
                scores.id_scores,
                {d: scores.scores[d] for d in scores.ood_datasets},
                groups={"near": bench.near, "far": bench.far},
                n_boot=n_boot,
                seed=seed,
            )
        for text in run_notes:
            emit(text)
        notes += run_notes
        rows.append(run_row(run, scores, cis))
        loaded.append((run, scores))
    tables = build_tables(rows)
    if sort_by:
        tables = sort_tables(tables, sort_by, descending)  # before plotting: a bad key fails fast
    with staged(out) as staging:  # the report whole, or the one there before untouched (docs/security.md)
        files: list[Path] = []
        if plots:
            from reguide_tasks.report.plots import plot_run  # matplotlib only when plotting

            for run, scores in loaded:
                if scores is not None:
                    stem = staging / "plots" / run.benchmark / f"{_slug(run.label)}__{_slug(run.task)}"
                    files += plot_run(run, scores, stem)
        comparisons = compare_runs(loaded, rows, primary)
        sections = {name: comparisons_markdown(parts, primary) for name, parts in comparisons.items()}
        markdown, written = write_report(staging, tables, notes, n_boot=n_boot, seed=seed, comparisons=sections)
        written += write_comparison_csvs(staging, comparisons)
        if plots:
            from reguide_tasks.report.make_plots import (
                plot_comparisons,  # matplotlib only when plotting
            )

            files += plot_comparisons(staging / "plots", loaded, comparisons)
        if html:
            from reguide_tasks.report.html import write_html

            written.append(write_html(staging / "report.html", markdown, staging))
        written, files = final_paths(written, staging, out), final_paths(files, staging, out)
    return Report(markdown, tables, [*written, *files], notes, comparisons, loaded)


def check_primary(primary: str | None) -> None:
    """ReportError unless ``primary`` is None or a metric key the leaderboard can rank by."""
    if primary is None:
        return
    try:
        split_metric_key(primary)
    except ValueError:
        raise ReportError(f"--rank-by {primary!r} is not a metric key (e.g. auroc_near, auroc_far, fpr95_near, id_acc)") from None


def compare_runs(loaded: Sequence[tuple], rows: Sequence[dict], primary: str | None) -> dict[str, dict[str, pd.DataFrame]]:
    """Per benchmark: the leaderboard, ReGuide vs baseline and calibration tables."""
    entries = [Scored(run, scores, row) for (run, scores), row in zip(loaded, rows)]
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for name in dict.fromkeys(e.run.benchmark for e in entries):
        mine = [e for e in entries if e.run.benchmark == name]
        out[name] = {
            "leaderboard": leaderboard(mine, primary),
            "reguide_vs_baseline": reguide_vs_baseline(mine),
            "calibration": calibration_table(mine),
        }
    return out


def write_comparison_csvs(out: Path, comparisons: dict[str, dict[str, pd.DataFrame]]) -> list[Path]:
    paths = []
    for name, parts in comparisons.items():
        for part, table in parts.items():
            if len(table):
                path = out / f"{name}_{part}.csv"
                csv_safe(table).to_csv(path, index=False)
                paths.append(path)
    return paths
