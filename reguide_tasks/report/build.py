"""Cross-model report from lmms-eval outputs of the ReGuide tasks: tables, bootstrap CIs, plots.

Input layout (lmms-eval 0.7.3, ``--output_path OUT --log_samples``)
--------------------------------------------------------------------
``OUT/<sanitized model name>/<date_id>_results.json`` and, next to it,
``<date_id>_samples_<task>.jsonl`` (one line per document; its ``oodd`` key holds the per-document
record: ``dataset``, ``role``, ``ood_score``, ``failed``, ``score_rule``, ``failure_policy``, ...).
``<date_id>`` is ``YYYYMMDD_HHMMSS``. In the results JSON, ``results[task]`` maps
``"<metric>,none"`` to the aggregated value (percent), ``config`` holds ``model`` / ``model_args``,
``configs[task]`` the task config and ``n-samples[task]["effective"]`` the number of documents.

Conventions
-----------
- Every metric shown comes from the results JSON as the task computed it. The samples are used for
  the bootstrap CIs, the plots, the overall failure rate and a consistency check only.
- A run is identified by (``model``, ``model_args``, task); when several runs share that identity,
  the newest (by ``<date_id>``, then the JSON's ``date``, then file mtime) wins and a note says so.
- Column keys: ``id_acc``, ``fail_rate_id`` (the ID dataset's), ``fail_rate_all`` (all documents),
  ``<metric>_<d>`` for ``metric`` in ``auroc`` / ``fpr95`` (OpenOOD rule) / ``fpr95tpr`` (classic) /
  ``aupr_in`` / ``aupr_out`` and ``d`` an OoD dataset or ``near`` / ``far``; ``fail_rate_<d>``;
  ``auroc_<d>_lo`` / ``auroc_<d>_hi`` for the bootstrap CI; ``repaired_rate_<d>`` (% of answers whose
  score used a repaired key) and ``not_in_release_<d>`` (documents without a released answer, a
  count); ``key_reading`` (``repair`` or ``strict``). Values are percentages unless named a count.
- Documents without a released answer (records with ``not_in_release``) are no answers: they are left
  out of the scores, the CIs, the plots and every failure share, and reported per dataset.
- Problems that make a report impossible raise :class:`ReportError` (one-line message); problems that
  only drop a part (missing samples file) are returned as notes.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reguide_tasks.answers.scoring import FAILURE_POLICIES, apply_failure_policy
from reguide_tasks.data.benchmarks import BENCHMARKS, Benchmark, get_benchmark
from reguide_tasks.metrics.bootstrap import bootstrap_auroc
from reguide_tasks.metrics.ood import auroc as auroc_pct

RESULTS_SUFFIX = "_results.json"
FILTER_SUFFIX = ",none"
DETAIL_METRICS = ("auroc", "fpr95", "fpr95tpr")
ALL_METRICS = ("auroc", "fpr95", "fpr95tpr", "aupr_in", "aupr_out")
GROUPS = ("near", "far")
SUMMARY_KEYS = (
    "id_acc",
    "fail_rate_id",
    "fail_rate_all",
    "auroc_near",
    "auroc_far",
    "fpr95_near",
    "fpr95_far",
    "fpr95tpr_near",
    "fpr95tpr_far",
)
# Keys whose best value is the highest (default sort direction: descending).
_HIGHER_BETTER = ("id_acc", "auroc", "aupr")
_LOWER_BETTER = ("fpr95", "fail_rate")
_METRIC_LABELS = {"auroc": "AUROC", "fpr95": "FPR@95", "fpr95tpr": "FPR@95TPR", "aupr_in": "AUPR-In", "aupr_out": "AUPR-Out"}
_MODEL_ARG_KEYS = ("pretrained", "model", "responses")
_DATE_ID = re.compile(r"^(\d{8}_\d{6})")
# Difference (percentage points) between the JSON's AUROC and the one recomputed from the samples
# above which a note is printed: the samples probably do not belong to that run.
_CONSISTENCY_TOL = 0.01


class ReportError(Exception):
    """A report cannot be made; the message is one line meant for the user."""


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
    task_config: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def identity(self) -> tuple[str, str]:
        return (self.model, self.model_args)


@dataclass
class RunScores:
    """Per-document OoD scores of one run, after its failure policy.

    ``scores[d]``: the kept scores of dataset ``d`` (ID dataset included), higher = more ID.
    ``n_total[d]`` / ``n_failed[d]``: answered documents and failed answers before the policy.
    ``n_not_in_release[d]``: documents without a released answer (in neither of the above).
    """

    benchmark: Benchmark
    scores: dict[str, np.ndarray]
    n_total: dict[str, int]
    n_failed: dict[str, int]
    score_rule: str
    failure_policy: str
    n_not_in_release: dict[str, int] = field(default_factory=dict)
    key_reading: str = "repair"

    @property
    def id_scores(self) -> np.ndarray:
        return self.scores.get(self.benchmark.id_dataset, np.empty(0))

    @property
    def ood_datasets(self) -> list[str]:
        """OoD datasets present in the samples, in benchmark order (unknown ones last)."""
        known = [d for d in self.benchmark.ood_datasets if d in self.scores]
        extra = sorted(d for d in self.scores if d not in self.benchmark.datasets)
        return known + extra

    @property
    def fail_rate_all(self) -> float:
        total = sum(self.n_total.values())
        return 100.0 * sum(self.n_failed.values()) / total if total else math.nan


# ----------------------------------------------------------------------------- discovery / loading


def find_results_files(paths: Iterable[str | Path]) -> list[Path]:
    """Results files named by ``paths``: files as given, directories searched recursively for
    ``*_results.json``. Duplicates (same resolved path) are dropped. Missing path -> ReportError.
    """
    found: dict[Path, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            hits = sorted(path.rglob(f"*{RESULTS_SUFFIX}"))
        elif path.is_file():
            hits = [path]
        else:
            raise ReportError(f"no such file or directory: {path}")
        for hit in hits:
            found.setdefault(hit.resolve(), hit)
    return list(found.values())


def read_results_json(path: Path) -> dict[str, Any]:
    """The results JSON as a dict; ReportError if it is unreadable or not lmms-eval's layout."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"cannot read {path}: {_one_line(err)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ReportError(f"{path} is not an lmms-eval results file (no 'results' object)")
    return data


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def date_id(path: Path) -> str | None:
    """The ``YYYYMMDD_HHMMSS`` prefix lmms-eval gives its output files, or None."""
    match = _DATE_ID.match(path.name)
    return match.group(1) if match else None


def samples_path_for(results_path: Path, task: str) -> Path | None:
    """``<date_id>_samples_<task>.jsonl`` next to the results file, if it exists."""
    if not results_path.name.endswith(RESULTS_SUFFIX):
        return None
    prefix = results_path.name[: -len(RESULTS_SUFFIX)]
    candidate = results_path.with_name(f"{prefix}_samples_{task}.jsonl")
    return candidate if candidate.is_file() else None


def task_metrics(entry: Mapping[str, Any]) -> dict[str, float]:
    """``{"auroc_x,none": 97.1, "auroc_x_stderr,none": "N/A", "alias": ..}`` -> ``{"auroc_x": 97.1}``."""
    out: dict[str, float] = {}
    for key, value in entry.items():
        if not key.endswith(FILTER_SUFFIX) or "_stderr" in key:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key[: -len(FILTER_SUFFIX)]] = float(value)
    return out


_BENCH_NAME = {name: re.compile(rf"(?<![a-z0-9]){re.escape(name)}(?![0-9])") for name in BENCHMARKS}


def detect_benchmark(task: str, metrics: Mapping[str, float], samples_path: Path | None = None) -> str | None:
    """The task's benchmark: from its metric keys (``auroc_<d>`` / ``fail_rate_<d>``), else its name
    (``reguide_*cifar10*`` / ``*imagenet200*``), else the datasets in its samples file; None if none.
    """
    votes: Counter[str] = Counter()
    for key in metrics:
        for name, bench in BENCHMARKS.items():
            for prefix in ALL_METRICS + ("fail_rate",):
                dataset = key[len(prefix) + 1 :] if key.startswith(prefix + "_") else None
                if dataset in bench.datasets:
                    votes[name] += 1
    if votes:
        return votes.most_common(1)[0][0]
    named = [name for name, pattern in _BENCH_NAME.items() if pattern.search(task.lower())]
    if len(named) == 1:
        return named[0]
    if samples_path is not None:
        try:
            for record in _iter_records(samples_path, limit=50):
                for name, bench in BENCHMARKS.items():
                    if record.get("dataset") in bench.datasets:
                        return name
        except (ReportError, OSError, UnicodeDecodeError):
            return None  # an unreadable samples file is reported later, when its scores are read
    return None


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
        benchmark = detect_benchmark(task, metrics, samples)
        if benchmark is None:
            others.append(task)
            continue
        effective = (n_samples.get(task) or {}).get("effective")
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
                task_config=(data.get("configs") or {}).get(task) or {},
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


def model_arg(model_args: str, key: str) -> str | None:
    """Value of ``key=`` in an lmms-eval ``model_args`` string (``k=v,k=v``), or None."""
    for part in model_args.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None


def _name_arg(model_args: str) -> tuple[str, str] | None:
    """The (key, value) naming the model in ``model_args``: pretrained=, else model=, else responses=."""
    return next(((k, v) for k in _MODEL_ARG_KEYS if (v := model_arg(model_args, k))), None)


def _path_parts(value: str) -> list[str]:
    return [p for p in re.split(r"[/\\]", value) if p] or [value]


def _other_args(model_args: str) -> list[str]:
    """The ``k=v`` parts of ``model_args`` other than the naming one, stripped."""
    named = _name_arg(model_args)
    skip = named[0] if named else None
    return [p.strip() for p in model_args.split(",") if p.strip() and p.partition("=")[0].strip() != skip]


@dataclass
class _LabelState:
    model: str
    model_args: str
    depth: int = 1  # trailing path components of the name value shown
    extras: tuple[str, ...] = ()  # other model args shown (those that tell clashing runs apart)
    full: bool = False  # last resort: the whole model_args

    def text(self) -> str:
        if self.full:
            return f"{self.model} ({self.model_args})" if self.model_args else self.model
        named = _name_arg(self.model_args)
        inner = ["/".join(_path_parts(named[1])[-self.depth :])] if named else []
        inner += self.extras
        return f"{self.model} ({', '.join(inner)})" if inner else self.model


def assign_labels(runs: Sequence[Run]) -> None:
    """Set each run's ``label``: ``model (short name)`` where the short name is the last path
    component of ``pretrained=`` (else ``model=``, else ``responses=``) in ``model_args``.

    Labels are lengthened only where different model identities would share one in the same
    benchmark x task table: more path components where the names differ, else the model args
    that differ (``clip_ood (clip-vit-base-patch16, score=mcm)``), else the whole ``model_args``.
    """
    states = {run.identity: _LabelState(*run.identity) for run in runs}
    for _ in range(16):
        tables: dict[tuple[str, str, str], set[tuple[str, str]]] = {}
        for run in runs:
            tables.setdefault((run.benchmark, run.task, states[run.identity].text()), set()).add(run.identity)
        clashes = [sorted(ids) for ids in tables.values() if len(ids) > 1]
        if not clashes:
            break
        changed = False
        for group in clashes:
            names = {i: (_name_arg(i[1]) or ("", ""))[1] for i in group}
            for identity in group:
                state = states[identity]
                twins = [j for j in group if names[j] == names[identity]]
                if len(twins) > 1:
                    common = set.intersection(*(set(_other_args(j[1])) for j in twins))
                    extras = tuple(p for p in _other_args(identity[1]) if p not in common)
                    if extras != state.extras:
                        state.extras, changed = extras, True
                elif state.depth < len(_path_parts(names[identity])):
                    state.depth, changed = state.depth + 1, True
        if not changed:
            for group in clashes:
                for identity in group:
                    states[identity].full = True
    for run in runs:
        run.label = states[run.identity].text()


# ----------------------------------------------------------------------------- selection / samples


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
    names += [v for k in _MODEL_ARG_KEYS if (v := model_arg(run.model_args, k))]
    return names


def _filter(runs: list[Run], patterns: Sequence[str], names: Callable[[Run], list[str]], flag: str, known: list[str]) -> list[Run]:
    def matches(pattern: str, run: Run) -> bool:
        lowered = pattern.lower()
        return any(n == pattern or fnmatch.fnmatchcase(n.lower(), lowered) for n in names(run))

    for pattern in patterns:
        if not any(matches(pattern, r) for r in runs):
            raise ReportError(f"{flag} {pattern!r} matches no run (available: {'; '.join(known)})")
    return [r for r in runs if any(matches(p, r) for p in patterns)]


def _iter_records(path: Path, limit: int | None = None) -> Iterable[dict[str, Any]]:
    """The ``oodd`` records of a samples file (lines without one are skipped)."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if limit is not None and number > limit:
                return
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
            except json.JSONDecodeError as err:
                raise ReportError(f"{path}: line {number} is not JSON ({_one_line(err)})") from None
            record = sample.get("oodd") if isinstance(sample, dict) else None
            if isinstance(record, dict):
                yield record


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every ``oodd`` record of a samples file; ReportError if the file is unreadable."""
    try:
        return list(_iter_records(path))
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"cannot read {path}: {_one_line(err)}") from None


def scores_from_records(records: Sequence[Mapping[str, Any]], benchmark: Benchmark) -> RunScores:
    """Per-dataset scores after the run's failure policy, applied once to all documents pooled.

    A record is failed when ``failed`` is true or ``ood_score`` is null. The policy and score rule
    are read from the records (the most common value; ``exclude`` / ``max_id`` if absent).
    """
    policy = _most_common(records, "failure_policy", "exclude")
    if policy not in FAILURE_POLICIES:
        raise ReportError(f"unknown failure policy {policy!r} in the samples (known: {', '.join(FAILURE_POLICIES)})")
    rule = _most_common(records, "score_rule", "max_id")
    reading = _most_common(records, "key_reading", "repair")
    not_in_release = Counter(str(r.get("dataset")) for r in records if r.get("not_in_release"))
    records = [r for r in records if not r.get("not_in_release")]
    datasets = [str(r.get("dataset")) for r in records]
    raw = [None if r.get("failed") or r.get("ood_score") is None else float(r["ood_score"]) for r in records]
    values, kept = apply_failure_policy(raw, policy)
    kept_datasets = np.asarray(datasets, dtype=object)[kept]
    order = list(dict.fromkeys(datasets))
    scores = {d: values[kept_datasets == d] for d in order}
    n_total = Counter(datasets)
    n_failed = Counter(d for d, s in zip(datasets, raw) if s is None)
    return RunScores(benchmark, scores, {d: n_total[d] for d in order}, {d: n_failed[d] for d in order}, rule, policy, dict(not_in_release), reading)


def _most_common(records: Sequence[Mapping[str, Any]], key: str, default: str) -> str:
    values = Counter(str(r[key]) for r in records if r.get(key) is not None)
    return values.most_common(1)[0][0] if values else default


def load_scores(run: Run) -> tuple[RunScores | None, list[str]]:
    """The run's per-document scores, or None with a note when its samples are missing / unusable."""
    where = f"{run.label} on {run.task}"
    if run.samples_path is None:
        return None, [f"{where}: no samples file next to {run.results_path} (run lmms-eval with --log_samples): CIs and plots omitted"]
    try:
        records = read_records(run.samples_path)
    except ReportError as err:
        return None, [f"{where}: {err}: CIs and plots omitted"]
    if not records:
        return None, [f"{where}: {run.samples_path} has no 'oodd' records: CIs and plots omitted"]
    scores = scores_from_records(records, get_benchmark(run.benchmark))
    return scores, consistency_notes(run, scores)


def consistency_notes(run: Run, scores: RunScores) -> list[str]:
    """Notes where the AUROC recomputed from the samples differs from the results JSON."""
    notes = []
    for dataset in scores.ood_datasets:
        reported = run.metrics.get(f"auroc_{dataset}")
        if reported is None or math.isnan(reported):
            continue
        ood = scores.scores[dataset]
        recomputed = auroc_pct(np.r_[np.ones(scores.id_scores.size, bool), np.zeros(ood.size, bool)], np.r_[scores.id_scores, ood])
        if not abs(recomputed - reported) <= _CONSISTENCY_TOL:
            notes.append(
                f"{run.label} on {run.task}: AUROC {dataset} is {reported:.4f} in {run.results_path.name} but "
                f"{recomputed:.4f} from {run.samples_path.name if run.samples_path else 'the samples'}: samples of another run?"
            )
    return notes


# ----------------------------------------------------------------------------- tables


def run_row(run: Run, scores: RunScores | None, cis: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    """One table row: every column key of the run (NaN where the results JSON lacks a metric)."""
    bench = get_benchmark(run.benchmark)
    m = run.metrics
    nan = math.nan
    row: dict[str, Any] = {"model": run.label, "task": run.task, "benchmark": run.benchmark}
    row["id_acc"] = m.get("id_acc", nan)
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
    row["n_docs"] = run.n_docs if run.n_docs is not None else (sum(scores.n_total.values()) if scores else nan)
    row["score_rule"] = scores.score_rule if scores else _config_value(run.task_config, "score_rule")
    row["failure_policy"] = scores.failure_policy if scores else _config_value(run.task_config, "failure_policy")
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
    hook = re.search(r"\w*process_results\w*", _config_value(config, "process_results"))
    if hook is None:
        return ""
    return "strict" if hook.group().endswith("_strict") else "repair"


def _config_value(config: Any, key: str) -> str:
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


def higher_is_better(key: str) -> bool | None:
    """Whether a column's best value is its highest (None for non-metric columns)."""
    base = re.sub(r"_(lo|hi)$", "", key)
    if base.startswith(_HIGHER_BETTER):
        return True
    if base.startswith(_LOWER_BETTER):
        return False
    return None


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


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, float, np.number)):
        return f"{float(value):.{digits}f}"
    return str(value)


def _fmt_ci(row: Mapping[str, Any], key: str) -> str:
    """``97.7 [97.1, 98.2]`` when the row has a CI for ``key``, else just the value."""
    text = _fmt(row.get(key))
    lo, hi = row.get(f"{key}_lo", math.nan), row.get(f"{key}_hi", math.nan)
    if text != "n/a" and not (math.isnan(lo) or math.isnan(hi)):
        text += f" [{lo:.1f}, {hi:.1f}]"
    return text


def _show_task(table: pd.DataFrame) -> bool:
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
            headers[f"{metric}_{group}"] = f"{_METRIC_LABELS[metric]} {group}"
    cols = [("model", "Model")] + ([("task", "Task")] if _show_task(table) else [])
    return cols + [(k, headers[k]) for k in SUMMARY_KEYS]


def detail_datasets(table: pd.DataFrame) -> list[str]:
    """OoD datasets with a per-dataset column in the table, in column order."""
    return [c[len("auroc_") :] for c in table.columns if c.startswith("auroc_") and not c.endswith(("_lo", "_hi")) and c[len("auroc_") :] not in GROUPS]


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]], align_left: int = 1) -> str:
    """A GitHub-flavoured Markdown table; the first ``align_left`` columns left-aligned."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, header)) + " |"]
    lines.append("|" + "|".join(":---" if i < align_left else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in body]
    return "\n".join(lines)


def benchmark_markdown(name: str, table: pd.DataFrame, *, n_boot: int, seed: int) -> str:
    """One benchmark's section: summary table, per-dataset table, conventions."""
    bench = get_benchmark(name)
    columns = summary_columns(table)
    left = 2 if _show_task(table) else 1
    rows = table.to_dict("records")
    summary = markdown_table(
        [h for _, h in columns],
        [[_fmt_ci(r, k) if k.startswith("auroc_") else _fmt(r[k]) for k, _ in columns] for r in rows],
        left,
    )
    datasets = detail_datasets(table)
    detail_cols = columns[:left] + [(f"{m}_{d}", f"{_METRIC_LABELS[m]} {d}") for d in datasets for m in DETAIL_METRICS]
    detail = markdown_table(
        [h for _, h in detail_cols],
        [[_fmt_ci(r, k) if k.startswith("auroc_") else _fmt(r[k]) for k, _ in detail_cols] for r in rows],
        left,
    )
    rules = sorted({f"{r['score_rule'] or '?'} / {r['failure_policy'] or '?'} / {r.get('key_reading') or '?'}" for r in rows})
    ci_text = (
        f"Brackets: bootstrap 95% CI of the AUROC (percentile, ID and OoD documents resampled separately, "
        f"B={n_boot}, seed={seed}), where the samples file was found."
        if n_boot
        else "No bootstrap CIs (--bootstrap 0)."
    )
    intro = (
        f"ID: {bench.id_dataset}; near-OoD: {', '.join(bench.near)}; far-OoD: {', '.join(bench.far)}. "
        f"Score rule / failure policy / key reading: {', '.join(rules)}."
    )
    answers = answers_markdown(table, bench, left)
    legend = (
        "All values in %. AUROC: ID vs OoD, higher is better. FPR@95: OpenOOD rule (OoD positive: share of "
        "ID images flagged OoD when 95% of OoD images are caught). FPR@95TPR: classic (ID positive: share of "
        "OoD images accepted when 95% of ID images are accepted). Lower FPR is better. near / far: unweighted "
        f"means over the datasets. Fail: share of answers without a usable score. Repaired: share of answers "
        f"whose score used a repaired key (key reading 'repair'). Not in release: documents without a released "
        f"answer, left out of every metric (a dataset without any answer is n/a, and so is its group). {ci_text}"
    )
    return "\n\n".join([f"## {name}", intro, summary, "### Per OoD dataset", detail, "### Answers per dataset", answers, legend])


def answers_markdown(table: pd.DataFrame, bench: Benchmark, left: int) -> str:
    """One row per run and dataset: failed and repaired shares (%), documents not in the release."""
    header = ["Model", "Task"][:left] + ["Key reading", "Dataset", "Fail", "Repaired", "Not in release"]
    body = []
    for r in table.to_dict("records"):
        for dataset in bench.datasets:
            missing = r.get(f"not_in_release_{dataset}", math.nan)
            body.append(
                [str(r[k]) for k in ("model", "task")[:left]]
                + [str(r.get("key_reading") or "?"), dataset, _fmt(r.get(f"fail_rate_{dataset}")),
                   _fmt(r.get(f"repaired_rate_{dataset}")), _fmt(missing, 0)]
            )
    return markdown_table(header, body, left + 2)


def report_markdown(tables: Mapping[str, pd.DataFrame], notes: Sequence[str], *, n_boot: int, seed: int) -> str:
    parts = ["# ReGuide OoD detection report"]
    parts += [benchmark_markdown(name, t, n_boot=n_boot, seed=seed) for name, t in tables.items()]
    if notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(parts) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def benchmark_latex(name: str, table: pd.DataFrame) -> str:
    """A booktabs ``tabular`` of the summary columns, metric groups under ``\\cmidrule`` headers."""
    columns = summary_columns(table)
    left = 2 if _show_task(table) else 1
    keys = [k for k, _ in columns[left:]]
    # Header groups over the value columns: (title, width); 1-based column numbers for \cmidrule.
    groups = [("", 1), ("Fail", 2), *[(_METRIC_LABELS[m], 2) for m in DETAIL_METRICS]]
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
        cells = [latex_escape(str(row[k])) for k, _ in columns[:left]] + [_fmt(row[k]).replace("n/a", "--") for k in keys]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the whole report


@dataclass
class Report:
    """What :func:`make_report` produced: the Markdown text, the tables, written files, notes."""

    markdown: str
    tables: dict[str, pd.DataFrame]
    files: list[Path]
    notes: list[str]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "run"


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
    note: Callable[[str], None] | None = None,
) -> Report:
    """Read the runs under ``paths``, write ``report.md``, ``<benchmark>.csv``, ``report.tex`` and
    (``plots``) PNGs under ``out_dir/plots/``; return what was made. ``note`` is called with each
    note as it arises (the CLI prints them). ReportError for anything that prevents a report.
    """
    if n_boot < 0:
        raise ReportError(f"--bootstrap must be >= 0, got {n_boot}")
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
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    if plots:
        from reguide_tasks.report.plots import plot_run  # matplotlib only when plotting

        for run, scores in loaded:
            if scores is not None:
                stem = out / "plots" / run.benchmark / f"{_slug(run.label)}__{_slug(run.task)}"
                files += plot_run(run, scores, stem)
    markdown = report_markdown(tables, notes, n_boot=n_boot, seed=seed)
    md_path = out / "report.md"
    md_path.write_text(markdown, encoding="utf-8")
    tex_path = out / "report.tex"
    tex_path.write_text("\n\n".join(benchmark_latex(n, t) for n, t in tables.items()) + "\n", encoding="utf-8")
    csv_paths = []
    for name, table in tables.items():
        csv_path = out / f"{name}.csv"
        table.to_csv(csv_path, index=False)
        csv_paths.append(csv_path)
    return Report(markdown, tables, [md_path, *csv_paths, tex_path, *files], notes)
