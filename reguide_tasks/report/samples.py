"""A run's samples file read back into per-document OoD scores (:class:`RunScores`), after the run's
failure policy, and checked against the AUROC of its results JSON.

Documents without a released answer (records with ``not_in_release``) are no answers: they are left
out of the scores (so of the CIs, the plots and every failure share) and counted per dataset.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reguide_tasks.answers.scoring import FAILURE_POLICIES, apply_failure_policy
from reguide_tasks.data.benchmarks import Benchmark, get_benchmark
from reguide_tasks.metrics.ood import auroc as auroc_pct
from reguide_tasks.report.files import ReportError, read_records
from reguide_tasks.report.runs import Run

# Difference (percentage points) between the JSON's AUROC and the one recomputed from the samples
# above which a note is printed: the samples probably do not belong to that run.
_CONSISTENCY_TOL = 0.01


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
    # ``keys[d]``: the document (image) of each kept score in ``scores[d]``, for paired tests.
    keys: dict[str, np.ndarray] = field(default_factory=dict)
    # Every document the run was given (answered or not): the run's document set.
    documents: frozenset = frozenset()
    # ID documents with an answer: the confidence of the predicted class (NaN: failed answer) and
    # whether the prediction was right; ``has_confidence`` False for samples written before records
    # carried ``prediction_confidence``.
    id_confidence: np.ndarray = field(default_factory=lambda: np.empty(0))
    id_correct: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    has_confidence: bool = False

    @property
    def id_scores(self) -> np.ndarray:
        """The ID side: the ID test set's scores, then (full-spectrum) each covariate-shifted set's."""
        return _joined([self.scores.get(d, np.empty(0)) for d in self.benchmark.id_datasets])

    @property
    def id_keys(self) -> np.ndarray:
        """The documents of :attr:`id_scores`, in the same order."""
        return _joined([self.keys.get(d, np.empty(0, dtype=object)) for d in self.benchmark.id_datasets])

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


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def scores_from_records(records: Sequence[Mapping[str, Any]], benchmark: Benchmark) -> RunScores:
    """Per-dataset scores after the run's failure policy, applied once to all documents pooled.

    A record is failed when ``failed`` is true or ``ood_score`` is null. The policy and score rule
    are read from the records (the most common value; ``exclude`` / ``max_id`` if absent).
    """
    # In the document set's own order (records carry it since runs were interleaved), so that the
    # bootstrap resamples the same arrays whatever order the run asked in; older samples: file order.
    if records and all(isinstance(r.get("list_position"), int) for r in records):
        records = sorted(records, key=lambda r: r["list_position"])
    documents = frozenset(str(r.get("image")) for r in records)
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
    kept_keys = np.asarray([str(r.get("image")) for r in records], dtype=object)[kept]
    order = list(dict.fromkeys(datasets))
    scores = {d: values[kept_datasets == d] for d in order}
    keys = {d: kept_keys[kept_datasets == d] for d in order}
    n_total = Counter(datasets)
    n_failed = Counter(d for d, s in zip(datasets, raw) if s is None)
    id_records = [r for r in records if r.get("dataset") == benchmark.id_dataset]
    confidence = [r.get("prediction_confidence") for r in id_records]
    return RunScores(
        benchmark, scores, {d: n_total[d] for d in order}, {d: n_failed[d] for d in order}, rule, policy,
        dict(not_in_release), reading, keys, documents,
        id_confidence=np.asarray([math.nan if c is None or r.get("failed") else float(c) for c, r in zip(confidence, id_records)], dtype=float),
        id_correct=np.asarray([bool(r.get("correct")) for r in id_records], dtype=bool),
        has_confidence=any("prediction_confidence" in r for r in id_records),
    )


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
    bench = get_benchmark(run.benchmark)
    images = Counter(str(r.get("image")) for r in records)
    twice = [image for image, n in images.items() if n > 1]
    if twice:
        return None, [f"{where}: {run.samples_path} has {len(twice)} documents more than once (e.g. {twice[0]}; two runs in one file?): CIs and plots omitted"]
    foreign = Counter(str(r.get("dataset")) for r in records if r.get("dataset") not in bench.datasets)
    ours = len(records) - sum(foreign.values())
    if run.n_docs is not None and run.n_docs not in (len(records), ours):
        # a record whose image is not one of the run's documents (or a line lost) is no figure of that run
        return None, [f"{where}: {run.samples_path} has {ours} records of {bench.name}'s datasets but {run.results_path.name} counted "
                      f"{run.n_docs} documents (records added or lost: samples of another run, or edited?): CIs and plots omitted"]
    notes = []
    if foreign:
        records = [r for r in records if r.get("dataset") in bench.datasets]
        listed = ", ".join(f"{d}: {n}" for d, n in sorted(foreign.items()))
        notes.append(f"{where}: {sum(foreign.values())} records in {run.samples_path} are of datasets not in {bench.name} ({listed}): left out of the CIs, plots and failure shares")
        if not records:
            return None, [*notes[:1], f"{where}: no record of {bench.name}'s datasets left: CIs and plots omitted"]
    scores = scores_from_records(records, bench)
    return scores, notes + consistency_notes(run, scores)


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
