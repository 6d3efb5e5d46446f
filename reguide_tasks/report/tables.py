"""Table rows: one row per run (every column key, from its results JSON, samples and CIs), rows
grouped into one DataFrame per benchmark, sorting, and which columns a table shows."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from reguide_tasks.data.benchmarks import BENCHMARKS, get_benchmark
from reguide_tasks.report.columns import (
    DETAIL_METRICS,
    METRIC_LABELS,
    SUMMARY_KEYS,
    higher_is_better,
)
from reguide_tasks.report.files import ReportError
from reguide_tasks.report.runs import Run
from reguide_tasks.report.samples import RunScores
from reguide_tasks.report.ties import tie_columns
from reguide_tasks.vocab import GROUPS


def run_row(run: Run, scores: RunScores | None, cis: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    """One table row: every column key of the run (NaN where the results JSON lacks a metric)."""
    bench = get_benchmark(run.benchmark)
    m = run.metrics
    nan = math.nan
    row: dict[str, Any] = {"model": run.label, "task": run.task, "benchmark": run.benchmark}
    row["id_acc"] = m.get("id_acc", nan)
    for dataset in bench.csid:  # full-spectrum: each covariate-shifted ID set's own accuracy
        row[f"id_acc_{dataset}"] = m.get(f"id_acc_{dataset}", nan)
    row["fail_rate_id"] = m.get(f"fail_rate_{bench.id_dataset}", nan)
    row["fail_rate_all"] = overall_fail_rate(run, scores)
    for metric in DETAIL_METRICS:
        for group in GROUPS:
            row[f"{metric}_{group}"] = m.get(f"{metric}_{group}", nan)
    extra = sorted({k.split("_", 1)[1] for k in m if k.startswith("auroc_")} - set(bench.ood_datasets) - set(GROUPS))
    datasets = list(bench.ood_datasets) + extra
    for dataset in datasets:
        for metric in DETAIL_METRICS:
            row[f"{metric}_{dataset}"] = m.get(f"{metric}_{dataset}", nan)
    for key in (*GROUPS, *datasets):
        lo, hi = cis.get(key, (nan, nan))
        row[f"auroc_{key}_lo"], row[f"auroc_{key}_hi"] = lo, hi
    for metric in ("aupr_in", "aupr_out"):
        for key in (*GROUPS, *datasets):
            row[f"{metric}_{key}"] = m.get(f"{metric}_{key}", nan)
    for dataset in bench.datasets:
        row[f"fail_rate_{dataset}"] = m.get(f"fail_rate_{dataset}", nan)
    for dataset in bench.datasets:
        row[f"repaired_rate_{dataset}"] = m.get(f"repaired_rate_{dataset}", nan)
    for dataset in bench.datasets:
        counted = scores.n_not_in_release.get(dataset, 0) if scores else nan
        row[f"not_in_release_{dataset}"] = m.get(f"not_in_release_{dataset}", counted)
    row.update(tie_columns(scores))
    row["n_docs"] = run.n_docs if run.n_docs is not None else (sum(scores.n_total.values()) if scores else nan)
    row["score_rule"] = scores.score_rule if scores else config_value(run.task_config, "score_rule")
    row["failure_policy"] = scores.failure_policy if scores else config_value(run.task_config, "failure_policy")
    row["key_reading"] = scores.key_reading if scores else _key_reading_of(run.task_config)
    row["date"] = run.date
    row["model_name"] = run.model
    row["model_args"] = run.model_args
    row["results_file"] = str(run.results_path)
    row["samples_file"] = str(run.samples_path) if run.samples_path else ""
    return row


def overall_fail_rate(run: Run, scores: RunScores | None) -> float:
    """Failed share of all documents (percent): a ``fail_rate_all`` / ``fail_rate`` metric if the
    task reports one, else counted in the samples, else ``1 - oodd / n-samples`` from the JSON.
    """
    for key in ("fail_rate_all", "fail_rate"):
        if key in run.metrics:
            return run.metrics[key]
    if scores is not None:
        return scores.fail_rate_all
    usable = run.metrics.get("oodd")
    answered = (run.n_docs or 0) - sum(v for k, v in run.metrics.items() if k.startswith("not_in_release_") and not math.isnan(v))
    if usable is not None and answered > 0:
        return 100.0 * (1.0 - usable / answered)
    return math.nan


def _key_reading_of(config: Any) -> str:
    """'strict' when the task's process_results is a ``..._strict`` variant, else 'repair'."""
    hook = re.search(r"\w*process_results\w*", config_value(config, "process_results"))
    if hook is None:
        return ""
    return "strict" if hook.group().endswith("_strict") else "repair"


def config_value(config: Any, key: str) -> str:
    """First value of ``key`` anywhere in a (nested) task config, as a string; '' if absent."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if key in node and isinstance(node[key], (str, int, float)):
                return str(node[key])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return ""


def build_tables(rows: Sequence[Mapping[str, Any]]) -> dict[str, pd.DataFrame]:
    """Rows grouped into one DataFrame per benchmark (benchmark order of ``BENCHMARKS``), sorted by
    model then task.
    """
    tables = {}
    for name in BENCHMARKS:
        mine = [r for r in rows if r["benchmark"] == name]
        if mine:
            frame = pd.DataFrame(mine)
            tables[name] = frame.sort_values(["model", "task"], kind="stable").reset_index(drop=True)
    return tables


def sort_tables(tables: Mapping[str, pd.DataFrame], key: str, descending: bool | None = None) -> dict[str, pd.DataFrame]:
    """Tables sorted by column ``key`` (NaN last; ties keep model / task order). ``descending``
    None: best first for metrics (AUROC / accuracy / AUPR descending, FPR / failure rates
    ascending), ascending otherwise. Tables without the column are left as they are; a key no
    table has -> ReportError.
    """
    if not any(key in t.columns for t in tables.values()):
        known = sorted({c for t in tables.values() for c in t.columns})
        raise ReportError(f"--sort-by {key!r} is not a column (columns: {', '.join(known)})")
    if descending is None:
        descending = bool(higher_is_better(key))
    return {
        name: t.sort_values(key, ascending=not descending, na_position="last", kind="stable").reset_index(drop=True)
        if key in t.columns
        else t
        for name, t in tables.items()
    }


def show_task(table: pd.DataFrame) -> bool:
    return table["task"].nunique() > 1


def summary_columns(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(key, header) of the summary table; the task column only when the table has several tasks."""
    headers = {
        "id_acc": "ID acc",
        "fail_rate_id": "Fail ID",
        "fail_rate_all": "Fail all",
    }
    for metric in DETAIL_METRICS:
        for group in GROUPS:
            headers[f"{metric}_{group}"] = f"{METRIC_LABELS[metric]} {group}"
    cols = [("model", "Model")] + ([("task", "Task")] if show_task(table) else [])
    return cols + [(k, headers[k]) for k in SUMMARY_KEYS]


def detail_datasets(table: pd.DataFrame) -> list[str]:
    """OoD datasets with a per-dataset column in the table, in column order."""
    return [c[len("auroc_") :] for c in table.columns if c.startswith("auroc_") and not c.endswith(("_lo", "_hi")) and c[len("auroc_") :] not in GROUPS]
