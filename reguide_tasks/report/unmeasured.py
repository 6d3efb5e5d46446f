"""Why a run has no AUROC for an OoD dataset or group: the lines ``reguide-eval`` prints under its
summary, so that an ``n/a`` is never left unexplained (a ``--limit`` run that left a dataset out, a
dataset with no released answer, every answer of a side failed).

An AUROC needs scored answers on both sides, ID and the OoD set; the FPR and AUPR metrics of the same
dataset need the same, so one line covers them all. A group (near / far) is the mean over its
datasets and is n/a when any of them is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.report.runs import Run
from reguide_tasks.report.samples import RunScores


def _missing(metrics: Mapping[str, float], key: str) -> bool:
    value = metrics.get(key)
    return value is None or (isinstance(value, float) and math.isnan(value))


def why_no_scores(dataset: str, scores: RunScores | None, metrics: Mapping[str, float]) -> str:
    """Why ``dataset`` has no scored answer in the run, from its samples (or its metrics without them)."""
    if scores is None:  # the metrics alone: not_in_release_<d> exists exactly when the run held a <d> document
        if _missing(metrics, f"not_in_release_{dataset}"):
            return f"no {dataset} document in this run"
        absent = metrics[f"not_in_release_{dataset}"]
        if not _missing(metrics, f"fail_rate_{dataset}") and metrics[f"fail_rate_{dataset}"] < 100.0:
            return ""  # some of its answers were scored: the other side is what is missing
        if absent:
            return f"{int(absent)} {dataset} documents have no released answer"
        return f"no scored {dataset} answer (--output_path with --log_samples keeps the per-dataset counts)"
    kept = len(scores.scores.get(dataset, ()))
    answered = scores.n_total.get(dataset, 0)
    absent = scores.n_not_in_release.get(dataset, 0)
    if kept:
        return ""
    if not answered and not absent:
        return f"no {dataset} document in this run"
    if not answered:
        return f"its {absent} {dataset} documents have no released answer"
    failed = scores.n_failed.get(dataset, 0)
    return f"all {answered} {dataset} answers lack a usable score ({failed} failed; failure policy {scores.failure_policy})"


def _absent(dataset: str, scores: RunScores | None, metrics: Mapping[str, float]) -> bool:
    """Whether the run held no document of ``dataset`` at all."""
    if scores is None:
        return _missing(metrics, f"not_in_release_{dataset}")
    return not scores.n_total.get(dataset) and not scores.n_not_in_release.get(dataset)


def unmeasured_lines(run: Run, scores: RunScores | None) -> list[str]:
    """One line per OoD dataset or group whose AUROC is n/a in ``run``, saying why; [] when all exist."""
    bench = get_benchmark(run.benchmark)
    metrics = run.metrics
    lines = []
    # Without samples the metrics tell only whether the ID set had a document at all.
    if scores is not None:
        id_reason = why_no_scores(bench.id_dataset, scores, metrics)
    else:
        id_reason = f"no {bench.id_dataset} document in this run" if _absent(bench.id_dataset, None, metrics) else ""
    unmeasured = []
    for dataset in bench.ood_datasets:
        if not _missing(metrics, f"auroc_{dataset}"):
            continue
        unmeasured.append(dataset)
        reasons = [r for r in (id_reason, why_no_scores(dataset, scores, metrics)) if r]
        lines.append(f"{dataset}: AUROC, FPR@95, FPR@95TPR, AUPR n/a: {'; '.join(reasons) or 'no scored answers on one side'}")
    for group, members in (("near", bench.near), ("far", bench.far)):
        if _missing(metrics, f"auroc_{group}"):
            lacking = [d for d in members if d in unmeasured] or list(members)
            lines.append(f"{group}: n/a: the mean over {', '.join(members)} needs every one ({', '.join(lacking)} n/a)")
    limited = run.n_docs is not None and run.n_docs_of_task and run.n_docs < run.n_docs_of_task
    if limited and any(_absent(d, scores, metrics) for d in (bench.id_dataset, *unmeasured)):
        lines.append(f"(--limit kept {run.n_docs:,} of the task's {run.n_docs_of_task:,} documents, datasets in proportion: a larger --limit reaches every dataset)")
    return lines
