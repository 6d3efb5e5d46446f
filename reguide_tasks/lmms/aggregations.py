"""The aggregations the task YAMLs name: one function per metric family, percent, NaN if undefined.

lmms-eval hands an aggregation only the items of one metric key, not the key. Each family's function
reads its target from the items themselves: ``auroc_mnist`` aggregates the ID documents and MNIST's,
``auroc_far`` the ID documents and every far dataset's (see
:func:`reguide_tasks.lmms.records.keys_of_dataset`), so the OoD datasets among the items name the
target: one dataset -> that dataset, several -> the group they share. Per-dataset families
(``fail_rate_<d>``, ``aux_pred_rate_<d>``, ...) only ever see their dataset's items.

The five OoD metrics of a target aggregate the very same item objects in the same order, so one metric
table serves all five (:class:`_TableCache`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import numpy as np

from reguide_tasks.answers.scoring import apply_failure_policy
from reguide_tasks.data.benchmarks import BENCHMARKS, Benchmark, get_benchmark
from reguide_tasks.lmms.records import ScoreItem, SuggestionItem
from reguide_tasks.metrics.ood import ood_table
from reguide_tasks.vocab import RECORD_KEY, metric_key, split_metric_key

NAN = float("nan")

__all__ = [
    "AGGREGATIONS",
    "aggregate_aupr_in",
    "aggregate_aupr_out",
    "aggregate_auroc",
    "aggregate_aux_pred_rate",
    "aggregate_fail_rate",
    "aggregate_filtered_out",
    "aggregate_fpr95",
    "aggregate_fpr95tpr",
    "aggregate_id_acc",
    "aggregate_mean_kept",
    "aggregate_metric",
    "aggregate_not_in_release",
    "aggregate_oodd",
    "aggregate_repaired_rate",
]


# ---------------------------------------------------------------- OoD metrics (per dataset or group)
def aggregate_auroc(items: Sequence) -> float:
    return _ood_metric("auroc", items)


def aggregate_fpr95(items: Sequence) -> float:
    return _ood_metric("fpr95", items)


def aggregate_fpr95tpr(items: Sequence) -> float:
    return _ood_metric("fpr95tpr", items)


def aggregate_aupr_in(items: Sequence) -> float:
    return _ood_metric("aupr_in", items)


def aggregate_aupr_out(items: Sequence) -> float:
    return _ood_metric("aupr_out", items)


# ---------------------------------------------------------------- per dataset, every task
def aggregate_id_acc(items: Sequence) -> float:
    answered = _answered(items)
    return 100.0 * float(np.mean([bool(item.correct) for item in answered])) if answered else NAN


def aggregate_fail_rate(items: Sequence) -> float:
    answered = _answered(items)
    return 100.0 * float(np.mean([item.score is None for item in answered])) if answered else NAN


def aggregate_repaired_rate(items: Sequence) -> float:
    answered = _answered(items)
    return 100.0 * float(np.mean([item.score_repaired for item in answered])) if answered else NAN


def aggregate_not_in_release(items: Sequence) -> float:
    if not items:
        return NAN
    return float(sum(1 for item in map(ScoreItem.of, items) if item.not_in_release))


# ---------------------------------------------------------------- per dataset, ReGuide tasks
def aggregate_aux_pred_rate(items: Sequence) -> float:
    if not items:
        return NAN
    return 100.0 * float(np.mean([SuggestionItem.of(item).predicted_aux for item in items]))


def aggregate_mean_kept(items: Sequence) -> float:
    if not items:
        return NAN
    return float(np.mean([SuggestionItem.of(item).n_kept for item in items]))


def aggregate_filtered_out(items: Sequence) -> float:
    if not items:
        return NAN
    return float(sum(SuggestionItem.of(item).n_dropped for item in items))


# ---------------------------------------------------------------- the record key
def aggregate_oodd(records: Sequence) -> float:
    """The number of documents with a usable score (the records themselves stay in the samples)."""
    if not records:
        return NAN
    return float(sum(1 for record in records if record.get("ood_score") is not None))


AGGREGATIONS: dict[str, Callable[[Sequence], float]] = {
    "auroc": aggregate_auroc,
    "fpr95": aggregate_fpr95,
    "fpr95tpr": aggregate_fpr95tpr,
    "aupr_in": aggregate_aupr_in,
    "aupr_out": aggregate_aupr_out,
    "id_acc": aggregate_id_acc,
    "fail_rate": aggregate_fail_rate,
    "repaired_rate": aggregate_repaired_rate,
    "not_in_release": aggregate_not_in_release,
    "aux_pred_rate": aggregate_aux_pred_rate,
    "mean_kept": aggregate_mean_kept,
    "filtered_out": aggregate_filtered_out,
    RECORD_KEY: aggregate_oodd,
}


def aggregate_metric(key: str, items: Sequence) -> float:
    """Aggregate the items of metric ``key`` with its family's function (what lmms-eval does with the
    YAML's ``aggregation``); for callers that hold the key, such as tests and reports."""
    return AGGREGATIONS[split_metric_key(key)[0]](items)


# ---------------------------------------------------------------- helpers
def _answered(items: Sequence) -> list[ScoreItem]:
    return [item for item in map(ScoreItem.of, items) if not item.not_in_release]


def _benchmark_of(items: Sequence[ScoreItem], datasets: set[str]) -> Benchmark:
    """The benchmark the items name (several share dataset names: cifar10 is CIFAR100's near OoD);
    items of older logs name none: the first benchmark holding their datasets."""
    named = {item.benchmark for item in items if item.benchmark}
    if len(named) == 1:
        return get_benchmark(named.pop())
    if named:
        raise ValueError(f"the items of one metric key come from several benchmarks: {sorted(named)}")
    for bench in BENCHMARKS.values():
        if bench.id_dataset in datasets or datasets & set(bench.ood_datasets):
            return bench
    raise ValueError(f"items of unknown datasets: {sorted(datasets)}")


def _ood_metric(family: str, items: Sequence) -> float:
    if not items:
        return NAN
    table, target = _ood_table_of(items)
    return table.get(metric_key(family, target), NAN) if target else NAN


def _target(bench: Benchmark, datasets: set[str]) -> str:
    """The dataset or group a key's items stand for; "" when no OoD document is among them."""
    ood = sorted(datasets - set(bench.id_datasets))
    if len(ood) <= 1:
        return ood[0] if ood else ""
    groups = {bench.role(d) for d in ood}
    if len(groups) != 1:
        raise ValueError(f"the items of one metric key mix OoD datasets of several groups: {ood}")
    return groups.pop()


def _ood_table_of(items: Sequence) -> tuple[dict[str, float], str]:
    """The OoD metric table over one key's items (ID + OoD documents) and the target they stand for."""
    cached = _TABLES.get(items)
    if cached is not None:
        return cached
    typed = [ScoreItem.of(item) for item in items]
    all_datasets = {item.dataset for item in typed}
    bench = _benchmark_of(typed, all_datasets)
    # Every document says its dataset is part of the task; only answered ones are scored.
    answered = [item for item in typed if not item.not_in_release]
    scores, kept = apply_failure_policy([item.score for item in answered], typed[0].failure_policy)
    datasets = np.asarray([item.dataset for item in answered], dtype=object)[kept]
    id_scores = scores[np.isin(datasets, bench.id_datasets)]  # full-spectrum: shifted ID sets too
    # A dataset whose every answer failed stays in (as an empty array -> NaN, and NaN for its group):
    # dropping it would silently turn "near" into the mean of the remaining datasets.
    ood = {d: scores[datasets == d] for d in bench.ood_datasets if d in all_datasets}
    result = (ood_table(id_scores, ood, bench.near, bench.far), _target(bench, all_datasets))
    _TABLES.put(items, result)
    return result


class _TableCache:
    """Tables by item list, matched by the identity of every item.

    A document sends the same item object to each metric key it takes part in, so the five keys of a
    target (``auroc_mnist``, ``fpr95_mnist``, ...) aggregate lists of the very same objects in the same
    order: one table serves all five. Entries hold their items, so no id is reused while cached; lists
    that were copied or unpickled (several ranks) simply miss and are computed again.
    """

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._entries: dict[tuple[int, int, int], tuple[tuple, tuple]] = {}

    @staticmethod
    def _key(items: Sequence) -> tuple[int, int, int]:
        return len(items), id(items[0]), id(items[-1])

    def get(self, items: Sequence) -> tuple | None:
        entry = self._entries.get(self._key(items))
        if entry is None or not all(map(operator.is_, entry[0], items)):
            return None
        return entry[1]

    def put(self, items: Sequence, value: tuple) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[self._key(items)] = (tuple(items), value)


_TABLES = _TableCache()
