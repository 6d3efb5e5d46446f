"""Which runs a report covers: the ReGuide (model, task) runs of the results files, one per
identity, labelled, then selected by model / task name.

A run is identified by (``model``, ``model_args``, task); when several runs share that identity, the
newest (by ``<date_id>``, then the JSON's ``date``, then file mtime) wins and a note says so. Its
metrics are the results JSON's, as the task computed them.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reguide_tasks.data.benchmarks import (
    BENCHMARKS,
    BenchmarkError,
    register_benchmark_file,
    register_written_benchmarks,
)
from reguide_tasks.lmms.task_yamls import task_benchmark
from reguide_tasks.report.files import (
    RESULTS_SUFFIX,
    ReportError,
    date_id,
    find_results_files,
    iter_records,
    read_results_json,
    samples_path_for,
    task_metrics,
)
from reguide_tasks.report.labels import MODEL_ARG_KEYS, identity_labels, model_arg
from reguide_tasks.vocab import OOD_METRICS as ALL_METRICS


@dataclass
class Run:
    """One (model, task) evaluation read from a results JSON.

    ``metrics`` holds the task's ``",none"`` metrics without that suffix (numbers only).
    ``label`` is set by :func:`assign_labels` once every run is known.
    """

    task: str
    benchmark: str
    model: str
    model_args: str
    date: str
    results_path: Path
    samples_path: Path | None
    metrics: dict[str, float]
    n_docs: int | None = None
    # The task's whole document set; more than n_docs when the run had a --limit.
    n_docs_of_task: int | None = None
    task_config: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def identity(self) -> tuple[str, str]:
        return (self.model, self.model_args)


_BENCH_NAME = {name: re.compile(rf"(?<![a-z0-9]){re.escape(name)}(?![0-9])") for name in BENCHMARKS}


def detect_benchmark(task: str, metrics: Mapping[str, float], samples_path: Path | None = None) -> str | None:
    """The task's benchmark: from its metric keys (``auroc_<d>`` / ``fail_rate_<d>``), else its name
    (``reguide_*cifar10*`` / ``*imagenet200*``), else the datasets in its samples file; None if none.
    """
    known = task_benchmark(task)  # one of our task names (a user's benchmark's included): exact
    if known is not None:
        return known
    votes: Counter[str] = Counter()
    for key in metrics:
        for name, bench in BENCHMARKS.items():
            for prefix in ALL_METRICS + ("fail_rate",):
                dataset = key[len(prefix) + 1 :] if key.startswith(prefix + "_") else None
                # an OoD metric names an OoD set (cifar10 is CIFAR100's near set and CIFAR10's ID set)
                if dataset in (bench.datasets if prefix == "fail_rate" else bench.ood_datasets):
                    votes[name] += 1
    if votes:
        return votes.most_common(1)[0][0]
    named = [name for name, pattern in _BENCH_NAME.items() if pattern.search(task.lower())]
    if len(named) == 1:
        return named[0]
    if samples_path is not None:
        try:
            for record in iter_records(samples_path, limit=50):
                for name, bench in BENCHMARKS.items():
                    if record.get("dataset") in bench.datasets:
                        return name
        except (ReportError, OSError, UnicodeDecodeError):
            return None  # an unreadable samples file is reported later, when its scores are read
    return None


def register_named_benchmark(task: str, task_config: Mapping[str, Any]) -> None:
    """A user's task that no copy next to the results describes (a plain ``lmms-eval --include_path``
    run of a ``reguide-new-benchmark`` folder): register the benchmark file its task metadata names,
    when that file is still there. A malformed file is a :class:`ReportError` naming the field."""
    named = (task_config.get("metadata") or {}).get("benchmark_file") if isinstance(task_config.get("metadata"), Mapping) else None
    if task_benchmark(task) is not None or not isinstance(named, str) or not Path(named).is_file():
        return
    try:
        register_benchmark_file(named)
    except BenchmarkError as err:
        raise ReportError(f"task {task}: {err}") from None


def _is_reguide(task: str, metrics: Mapping[str, float]) -> bool:
    return task.startswith("reguide") or any(k.startswith("auroc_") for k in metrics)


def _run_date(path: Path, data: Mapping[str, Any]) -> str:
    """Sortable date of a run: the file's date id, else the JSON's ``date``, else ''."""
    return date_id(path) or str(data.get("date") or "")


def runs_from_results(path: Path, data: Mapping[str, Any]) -> tuple[list[Run], list[str]]:
    """The ReGuide task runs of one results JSON (group entries and other tasks skipped), and the
    names of the non-ReGuide tasks it holds.
    """
    config = data.get("config") or {}
    model = str(config.get("model") or data.get("model_name") or path.parent.name)
    model_args = _model_args_str(config.get("model_args"))
    groups = {g for g, subtasks in (data.get("group_subtasks") or {}).items() if subtasks}
    n_samples = data.get("n-samples") or {}
    runs, others = [], []
    for task, entry in data["results"].items():
        if task in groups or not isinstance(entry, dict):
            continue
        metrics = task_metrics(entry)
        if not _is_reguide(task, metrics):
            others.append(task)
            continue
        samples = samples_path_for(path, task)
        task_config = (data.get("configs") or {}).get(task) or {}
        register_named_benchmark(task, task_config)
        benchmark = detect_benchmark(task, metrics, samples)
        if benchmark is None:
            others.append(task)
            continue
        counts = n_samples.get(task) or {}
        effective, original = counts.get("effective"), counts.get("original")
        runs.append(
            Run(
                task=task,
                benchmark=benchmark,
                model=model,
                model_args=model_args,
                date=_run_date(path, data),
                results_path=path,
                samples_path=samples,
                metrics=metrics,
                n_docs=int(effective) if isinstance(effective, (int, float)) else None,
                n_docs_of_task=int(original) if isinstance(original, (int, float)) else None,
                task_config=task_config,
            )
        )
    return runs, others


def _model_args_str(model_args: Any) -> str:
    if model_args is None:
        return ""
    if isinstance(model_args, dict):
        return ",".join(f"{k}={v}" for k, v in model_args.items())
    return str(model_args)


def load_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[str]]:
    """Every ReGuide run under ``paths`` (newest per model x task), labelled, and notes.

    ReportError when no results file is found, one is unreadable, or none holds a ReGuide task.
    """
    paths = list(paths)
    try:  # a user's benchmark: the copy reguide-eval wrote next to its results
        register_written_benchmarks(paths)
    except BenchmarkError as err:
        raise ReportError(str(err)) from None
    files = find_results_files(paths)
    if not files:
        raise ReportError(f"no *{RESULTS_SUFFIX} files found under {', '.join(map(str, paths))}")
    runs: list[Run] = []
    others: set[str] = set()
    for path in files:
        file_runs, file_others = runs_from_results(path, read_results_json(path))
        runs += file_runs
        others.update(file_others)
    if not runs:
        listed = ", ".join(sorted(others)) or "none"
        raise ReportError(f"no ReGuide task results in {len(files)} results file(s) (tasks found: {listed})")
    notes = [f"ignored non-ReGuide task(s): {', '.join(sorted(others))}"] if others else []
    runs, newest_notes = keep_newest(runs)
    assign_labels(runs)
    return runs, notes + newest_notes


def keep_newest(runs: Sequence[Run]) -> tuple[list[Run], list[str]]:
    """One run per (model, model_args, task): the newest; notes name the ones dropped."""
    by_key: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        by_key.setdefault((*run.identity, run.task), []).append(run)
    kept, notes = [], []
    for (model, _, task), group in by_key.items():
        group = sorted(group, key=lambda r: (r.date, _mtime(r.results_path)))
        kept.append(group[-1])
        if len(group) > 1:
            older = ", ".join(str(r.results_path) for r in group[:-1])
            notes.append(
                f"{len(group)} runs of {model} on {task}: using the newest, {group[-1].results_path} "
                f"({group[-1].date or 'no date'}); ignoring {older}"
            )
    return kept, notes


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def assign_labels(runs: Sequence[Run]) -> None:
    """Set each run's ``label``: :func:`~reguide_tasks.report.labels.identity_labels`, the tables
    being benchmark x task.
    """
    labels = identity_labels(((run.benchmark, run.task), run.identity) for run in runs)
    for run in runs:
        run.label = labels[run.identity]


def select_runs(runs: Sequence[Run], models: Sequence[str] | None = None, tasks: Sequence[str] | None = None) -> list[Run]:
    """Runs matching ``models`` (label, model name, its pretrained/model/responses value, or a
    case-insensitive glob on the label) and ``tasks`` (name or glob). A pattern that matches no run
    -> ReportError listing what exists.
    """
    selected = list(runs)
    if models:
        selected = _filter(selected, models, _model_names, "--models", sorted({r.label for r in runs}))
    if tasks:
        selected = _filter(selected, tasks, lambda r: [r.task], "--tasks", sorted({r.task for r in runs}))
    return selected


def _model_names(run: Run) -> list[str]:
    names = [run.label, run.model]
    names += [v for k in MODEL_ARG_KEYS if (v := model_arg(run.model_args, k))]
    return names


def _filter(runs: list[Run], patterns: Sequence[str], names: Callable[[Run], list[str]], flag: str, known: list[str]) -> list[Run]:
    def matches(pattern: str, run: Run) -> bool:
        lowered = pattern.lower()
        return any(n == pattern or fnmatch.fnmatchcase(n.lower(), lowered) for n in names(run))

    for pattern in patterns:
        if not any(matches(pattern, r) for r in runs):
            raise ReportError(f"{flag} {pattern!r} matches no run (available: {'; '.join(known)})")
    return [r for r in runs if any(matches(p, r) for p in patterns)]
