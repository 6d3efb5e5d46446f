"""The lines ``reguide-eval`` ends a run with: one compact row per task of ours, where its results and
samples are, and the ``reguide-report`` command to run next.

lmms-eval's own table (every metric key, alphabetical) is printed before it, unchanged. The figures
are read back from the results files this run wrote, the way ``reguide-report`` reads them, so the
two never disagree (``failed %`` is the report's "Fail all").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.report.files import RESULTS_SUFFIX, ReportError, read_results_json
from reguide_tasks.report.runs import Run, runs_from_results
from reguide_tasks.report.tables import overall_fail_rate
from reguide_tasks.report.unmeasured import unmeasured_lines

NOT_SAVED = Path("(not saved)")  # the results path of a run that wrote no file

COLUMNS = (
    ("ID acc", "id_acc"),
    ("AUROC near", "auroc_near"),
    ("AUROC far", "auroc_far"),
    ("FPR@95 near", "fpr95_near"),
    ("FPR@95 far", "fpr95_far"),
    ("failed %", None),  # overall_fail_rate
)


def results_written_since(output_path: str | Path, since: float) -> list[Path]:
    """The results JSONs under ``output_path`` written at or after ``since`` (a ``time.time()``)."""
    root = Path(output_path)
    if not root.is_dir():
        return []
    written = {p: p.stat().st_mtime for p in root.rglob(f"*{RESULTS_SUFFIX}")}
    return sorted((p for p, mtime in written.items() if mtime >= since - 1.0), key=written.__getitem__)


def _cell(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1f}"


def summary_rows(runs: Sequence[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        values = [overall_fail_rate(run, None) if key is None else run.metrics.get(key) for _, key in COLUMNS]
        rows.append([run.task, str(run.n_docs if run.n_docs is not None else "?"), *map(_cell, values)])
    return rows


def format_table(rows: Sequence[Sequence[str]]) -> str:
    header = ["task", "docs", *(name for name, _ in COLUMNS)]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        return "  ".join([first, *(f"{cell:>{width}}" for cell, width in zip(cells[1:], widths[1:]))])

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def why_unmeasured(run: Run) -> list[str]:
    """The reasons for the run's n/a AUROCs, from its metrics (the samples file, up to hundreds of MB,
    is not read at the end of a run: the per-dataset counts say enough)."""
    if not any(_missing_auroc(run, target) for target in (*get_benchmark(run.benchmark).ood_datasets, "near", "far")):
        return []
    return unmeasured_lines(run, None)


def _missing_auroc(run: Run, target: str) -> bool:
    value = run.metrics.get(f"auroc_{target}")
    return value is None or math.isnan(value)


def run_summary(output_path: str | Path, since: float) -> str | None:
    """The end-of-run text, or None when this run wrote no results of our tasks there."""
    runs: list[Run] = []
    for path in results_written_since(output_path, since):
        try:
            found, _ = runs_from_results(path, read_results_json(path))
        except ReportError:  # reguide-report explains an unreadable file; the run itself worked
            continue
        runs.extend(found)
    return summary_text(runs, output_path)


def unsaved_run_summary(results: Sequence[Mapping[str, Any]]) -> str | None:
    """The end-of-run text of a run without ``--output_path``, from lmms-eval's results in memory (no
    samples: the n/a reasons come from the metrics alone); None when none of them is a task of ours."""
    runs = [run for data in results for run in runs_from_results(NOT_SAVED, data)[0]]
    return summary_text(runs, None)


def summary_text(runs: Sequence[Run], output_path: str | Path | None) -> str | None:
    """The table, the reasons for every n/a, and where the files are (``output_path`` None: none)."""
    if not runs:
        return None
    lines = ["", "reguide-eval summary (percent; near / far: OpenOOD means; n/a: no scores):", format_table(summary_rows(runs)), ""]
    for run in runs:
        explained = why_unmeasured(run)
        if explained:
            lines.append(f"n/a in {run.task}:")
            lines.extend(f"  {line}" for line in explained)
            lines.append("")
    if output_path is None:
        lines.append("results: not written (no --output_path); add --output_path DIR --log_samples to keep them for reguide-report")
        return "\n".join(lines)
    for path in dict.fromkeys(run.results_path for run in runs):
        lines.append(f"results: {path}")
    lines.extend(f"samples: {run.samples_path}" for run in runs if run.samples_path)
    lines.append(f"next: reguide-report {output_path} --out {Path(output_path) / 'report'}")
    return "\n".join(lines)
