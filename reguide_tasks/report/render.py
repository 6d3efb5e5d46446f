"""Tables written out: the Markdown report, one CSV per benchmark, and LaTeX (booktabs) tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reguide_tasks.data.benchmarks import Benchmark, get_benchmark
from reguide_tasks.report.columns import DETAIL_METRICS, METRIC_LABELS
from reguide_tasks.report.escape import csv_safe, latex_escape, md_text
from reguide_tasks.report.tables import detail_datasets, show_task, summary_columns
from reguide_tasks.report.ties import TIE_MARK, tie_flagged, tie_legend


def fmt_value(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, float, np.number)):
        return f"{float(value):.{digits}f}"
    return str(value)


def fmt_with_ci(row: Mapping[str, Any], key: str) -> str:
    """``97.7 [97.1, 98.2]`` when the row has a CI for ``key``, else just the value."""
    text = fmt_value(row.get(key))
    lo, hi = row.get(f"{key}_lo", math.nan), row.get(f"{key}_hi", math.nan)
    if text != "n/a" and not (math.isnan(lo) or math.isnan(hi)):
        text += f" [{lo:.1f}, {hi:.1f}]"
    return text


def fmt_cell(row: Mapping[str, Any], key: str) -> str:
    """A metric cell: an AUROC with its CI, an FPR marked when its threshold sits on a wide tie block
    (:mod:`reguide_tasks.report.ties`), anything else as :func:`fmt_value`."""
    if key.startswith("auroc_"):
        return fmt_with_ci(row, key)
    text = fmt_value(row.get(key))
    return text + TIE_MARK if tie_flagged(row, key) else text


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]], align_left: int = 1) -> str:
    """A GitHub-flavoured Markdown table; the first ``align_left`` columns left-aligned. Every cell
    is escaped (:func:`~reguide_tasks.report.escape.md_text`): a name from data stays in its cell."""
    cell = md_text
    lines = ["| " + " | ".join(map(cell, header)) + " |"]
    lines.append("|" + "|".join(":---" if i < align_left else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in body]
    return "\n".join(lines)


# One line per FPR column: which rule, and what ties do (both stop at the first threshold reaching
# 95% TPR; every image tied at it counts as accepted, with no interpolation or random tie-break).
FPR_LEGEND = (
    "FPR@95 (OpenOOD v1.5 rule): OoD is the positive class; the share of ID images flagged OoD at the first "
    "threshold that catches 95% of the OoD images. ID images tied with that threshold's score are all flagged.",
    "FPR@95TPR (classic, MCM and most papers): ID is the positive class; the share of OoD images accepted at "
    "the first threshold that accepts 95% of the ID images. OoD images tied with that threshold's score are all "
    "accepted, so tied confidences (many answers of 100.0) can lift it far above FPR@95.",
)


def benchmark_markdown(name: str, table: pd.DataFrame, *, n_boot: int, seed: int) -> str:
    """One benchmark's section: summary table, per-dataset table, conventions."""
    bench = get_benchmark(name)
    columns = summary_columns(table)
    left = 2 if show_task(table) else 1
    rows = table.to_dict("records")
    summary = markdown_table(
        [h for _, h in columns],
        [[fmt_cell(r, k) for k, _ in columns] for r in rows],
        left,
    )
    datasets = detail_datasets(table)
    detail_cols = columns[:left] + [(f"{m}_{d}", f"{METRIC_LABELS[m]} {d}") for d in datasets for m in DETAIL_METRICS]
    detail = markdown_table(
        [h for _, h in detail_cols],
        [[fmt_cell(r, k) for k, _ in detail_cols] for r in rows],
        left,
    )
    rules = sorted({f"{r['score_rule'] or '?'} / {r['failure_policy'] or '?'} / {r.get('key_reading') or '?'}" for r in rows})
    ci_text = (
        f"Brackets: bootstrap 95% CI of the AUROC (percentile, ID and OoD documents resampled separately, "
        f"B={n_boot}, seed={seed}), where the samples file was found."
        if n_boot
        else "No bootstrap CIs (--bootstrap 0)."
    )
    shifted = f"; covariate-shifted ID (on the ID side of every OoD metric): {', '.join(bench.csid)}" if bench.csid else ""
    intro = (
        f"ID: {bench.id_dataset}; near-OoD: {', '.join(bench.near)}; far-OoD: {', '.join(bench.far)}{shifted}. "
        f"Score rule / failure policy / key reading: {', '.join(rules)}."
    )
    answers = answers_markdown(table, bench, left)
    legend = (
        "All values in %. AUROC: ID vs OoD, higher is better. Lower FPR is better. near / far: unweighted "
        f"means over the datasets. Fail: share of answers without a usable score. Repaired: share of answers "
        f"whose score used a repaired key (key reading 'repair'). Not in release: documents without a released "
        f"answer, left out of every metric (a dataset without any answer is n/a, and so is its group). {ci_text}"
    )
    fpr_legend = "\n".join(f"- {line}" for line in (*FPR_LEGEND, tie_legend()))
    sections = [f"## {name}", md_text(intro), summary, "### Per OoD dataset", detail]
    if bench.csid:
        accuracy_cols = columns[:left] + [("id_acc", f"ID acc {bench.id_dataset}")] + [(f"id_acc_{d}", f"ID acc {d}") for d in bench.csid]
        sections += ["### ID accuracy per ID set", markdown_table([h for _, h in accuracy_cols], [[fmt_cell(r, k) for k, _ in accuracy_cols] for r in rows], left)]
    return "\n\n".join([*sections, "### Answers per dataset", answers, legend, fpr_legend])


def answers_markdown(table: pd.DataFrame, bench: Benchmark, left: int) -> str:
    """One row per run and dataset: failed and repaired shares (%), documents not in the release."""
    header = ["Model", "Task"][:left] + ["Key reading", "Dataset", "Fail", "Repaired", "Not in release"]
    body = []
    for r in table.to_dict("records"):
        for dataset in bench.datasets:
            missing = r.get(f"not_in_release_{dataset}", math.nan)
            body.append(
                [str(r[k]) for k in ("model", "task")[:left]]
                + [str(r.get("key_reading") or "?"), dataset, fmt_value(r.get(f"fail_rate_{dataset}")),
                   fmt_value(r.get(f"repaired_rate_{dataset}")), fmt_value(missing, 0)]
            )
    return markdown_table(header, body, left + 2)


def report_markdown(
    tables: Mapping[str, pd.DataFrame],
    notes: Sequence[str],
    *,
    n_boot: int,
    seed: int,
    comparisons: Mapping[str, str] | None = None,
) -> str:
    """The whole report; ``comparisons``: per benchmark, the Markdown of its comparison sections
    (leaderboard, ReGuide vs baseline, calibration), placed after the benchmark's own tables."""
    parts = ["# ReGuide OoD detection report"]
    for name, table in tables.items():
        parts.append(benchmark_markdown(name, table, n_boot=n_boot, seed=seed))
        if comparisons and comparisons.get(name):
            parts.append(comparisons[name])
    if notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {md_text(n)}" for n in notes))
    return "\n\n".join(parts) + "\n"


def benchmark_latex(name: str, table: pd.DataFrame) -> str:
    """A booktabs ``tabular`` of the summary columns, metric groups under ``\\cmidrule`` headers."""
    columns = summary_columns(table)
    left = 2 if show_task(table) else 1
    keys = [k for k, _ in columns[left:]]
    # Header groups over the value columns: (title, width); 1-based column numbers for \cmidrule.
    groups = [("", 1), ("Fail", 2), *[(METRIC_LABELS[m], 2) for m in DETAIL_METRICS]]
    top, rules, col = [""] * left, [], left + 1
    for title, width in groups:
        if title:
            top.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(title)}}}")
            rules.append(rf"\cmidrule(lr){{{col}-{col + width - 1}}}")
        else:
            top += [""] * width
        col += width
    second = [h for _, h in columns[:left]] + ["ID acc", "ID", "all", "near", "far", "near", "far", "near", "far"]
    lines = [
        f"% {name}: values in %; FPR@95 = OpenOOD rule, FPR@95TPR = classic. Needs \\usepackage{{booktabs}}.",
        r"\begin{tabular}{" + "l" * left + "r" * len(keys) + "}",
        r"\toprule",
        " & ".join(top) + r" \\",
        " ".join(rules),
        " & ".join(latex_escape(h) for h in second) + r" \\",
        r"\midrule",
    ]
    for row in table.to_dict("records"):
        cells = [latex_escape(str(row[k])) for k, _ in columns[:left]] + [fmt_value(row[k]).replace("n/a", "--") for k in keys]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def write_report(
    out: Path,
    tables: Mapping[str, pd.DataFrame],
    notes: Sequence[str],
    *,
    n_boot: int,
    seed: int,
    comparisons: Mapping[str, str] | None = None,
) -> tuple[str, list[Path]]:
    """Write ``report.md``, ``<benchmark>.csv`` and ``report.tex`` into ``out`` (which exists);
    return the Markdown and the paths written, in that order.
    """
    markdown = report_markdown(tables, notes, n_boot=n_boot, seed=seed, comparisons=comparisons)
    md_path = out / "report.md"
    md_path.write_text(markdown, encoding="utf-8")
    tex_path = out / "report.tex"
    tex_path.write_text("\n\n".join(benchmark_latex(n, t) for n, t in tables.items()) + "\n", encoding="utf-8")
    csv_paths = []
    for name, table in tables.items():
        csv_path = out / f"{name}.csv"
        csv_safe(table).to_csv(csv_path, index=False)
        csv_paths.append(csv_path)
    return markdown, [md_path, *csv_paths, tex_path]
