"""Per-document OoDD records and the aggregation of each metric key over them.

A record (the sample log's ``oodd`` entry) says what the model answered and how it was scored,
including how its class names were read (``key_reading``, ``repaired_keys``, ``unknown_keys``,
``repaired_prediction``, ``score_repaired``). For each metric key a document contributes one shared
compact item ``[dataset, score or None, correct or None, failure policy, not in release, score used a
repaired key]``; only the keys its dataset takes part in (ID documents: all keys), which keeps
lmms-eval's sample logs small. Aggregations turn item lists into percentages.

A document without a released answer (``reguide_replay`` with ``missing=skip``) is no answer of the
model: it is left out of every metric (its dataset still counts as part of the task, so a dataset
with no released answer at all is NaN, as is its group) and counted in ``not_in_release_<d>``.
"""

from __future__ import annotations

import math
import operator
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from reguide_tasks.data.benchmarks import Benchmark, get_benchmark
from reguide_tasks.metrics.ood import ood_table
from reguide_tasks.answers.scoring import apply_failure_policy, is_correct, ood_score, predicted_class, score_uses_repair

METRIC_FAMILIES = ("auroc", "fpr95", "fpr95tpr", "aupr_in", "aupr_out")
HIGHER_IS_BETTER = {"auroc": True, "fpr95": False, "fpr95tpr": False, "aupr_in": True, "aupr_out": True}
RECORD_KEY = "oodd"
# What a model that has no answer for a document (reguide_replay with missing=skip) returns.
NO_ANSWER = "[no released answer]"
# What lmms-eval's API models (openai, async_openai, ...) answer once their retries are spent.
REQUEST_FAILED = "[LMMS_EVAL_REQUEST_FAILED"
BUDGET_EXCEEDED = "[LMMS_EVAL_BUDGET_EXCEEDED]"


def placeholder_reason(answer_text: object) -> str | None:
    """Why there is no answer when ``answer_text`` is a placeholder rather than a model's answer: no
    released answer, an API request that failed after its retries, a spent API budget. Else None."""
    text = str(answer_text or "").strip()
    if text == NO_ANSWER:
        return "no released answer"
    if text.startswith(REQUEST_FAILED):  # "[LMMS_EVAL_REQUEST_FAILED after N retries] <error>"
        attempts, _, error = text[len(REQUEST_FAILED) :].partition("]")
        return f"request failed{attempts.rstrip()}: {error.strip()}"[:300]
    if text.startswith(BUDGET_EXCEEDED):
        return "API budget exceeded"
    return None


def failure_reason(parsed, answer_text: object) -> str:
    """The parser's reason; for a failed answer that is a placeholder, what the placeholder says."""
    if parsed.status != "failed":
        return parsed.reason
    return placeholder_reason(answer_text) or parsed.reason


def is_not_in_release(answer_text: object) -> bool:
    """Whether the answer is the replay's placeholder for a document the release has no answer for."""
    return str(answer_text or "").strip() == NO_ANSWER


def build_record(doc: Mapping, parsed, id_classes: Sequence[str], score_rule: str, failure_policy: str, answer_text: str = "", key_reading: str = "repair") -> dict:
    score = ood_score(parsed, id_classes, score_rule)
    if score is not None and not math.isfinite(score):
        score = None
    is_id = doc["role"] == "id"
    reason = failure_reason(parsed, answer_text)
    missing = is_not_in_release(answer_text)
    RUN_COUNTS["documents"] += 1
    if score is None and reason.startswith(("request failed", "API budget")):
        RUN_COUNTS["request failures"] += 1
        RUN_COUNTS.setdefault("first failure", reason)  # type: ignore[arg-type]
    return {
        "dataset": doc["dataset"],
        "role": doc["role"],
        "image": doc["image"],
        "label_name": doc["label_name"],
        "prediction": predicted_class(parsed, id_classes),
        "correct": bool(is_correct(parsed, doc["label_name"])) if is_id and not missing else None,
        "ood_score": score,
        "failed": score is None and not missing,  # no answer is not a failed answer
        "not_in_release": missing,
        "status": "not in release" if missing else parsed.status,
        "reason": reason,
        "score_rule": score_rule,
        "failure_policy": failure_policy,
        "key_reading": key_reading,
        "repaired_keys": dict(getattr(parsed, "repaired_keys", None) or {}),
        "repaired_prediction": getattr(parsed, "repaired_prediction", None),
        "unknown_keys": list(getattr(parsed, "unknown_keys", None) or ()),
        "score_repaired": score_uses_repair(parsed, id_classes, score_rule, score),
    }


# Per process: documents scored, and how many of them had no answer because the request itself failed
# (API retries spent, budget). reguide-eval reads it after a run: all requests failed = a failed run.
RUN_COUNTS: dict = {"documents": 0, "request failures": 0}


REGUIDE_FAMILIES = ("aux_pred_rate", "mean_kept", "filtered_out")
# Per dataset, every task: % of answers without a usable score; % of answers whose score depends on a
# repaired key; documents without a released answer (a count, left out of every other metric).
DATASET_FAMILIES = ("fail_rate", "repaired_rate", "not_in_release")


def metric_keys(benchmark: Benchmark, stage: str = "baseline") -> list[str]:
    """Every aggregated key of a benchmark's task, in table order. Per dataset: ``fail_rate_<d>``,
    ``repaired_rate_<d>`` and ``not_in_release_<d>`` (see :data:`DATASET_FAMILIES`). ReGuide tasks
    add, per dataset, ``aux_pred_rate_<d>`` (% of answers predicting an auxiliary class),
    ``mean_kept_<d>`` (mean kept suggestions per image) and ``filtered_out_<d>`` (suggestions dropped
    by filtering, in total)."""
    targets = [*benchmark.ood_datasets, "near", "far"]
    keys = [f"{family}_{target}" for target in targets for family in METRIC_FAMILIES]
    keys.append("id_acc")
    keys.extend(f"{family}_{d}" for family in DATASET_FAMILIES for d in benchmark.datasets)
    if stage == "reguide":
        keys.extend(f"{family}_{d}" for family in REGUIDE_FAMILIES for d in benchmark.datasets)
    keys.append(RECORD_KEY)
    return keys


def _keys_for_dataset(benchmark: Benchmark, dataset: str) -> tuple[str, ...]:
    return _keys_for(benchmark.name, dataset)


@lru_cache(maxsize=None)
def _keys_for(benchmark_name: str, dataset: str) -> tuple[str, ...]:
    benchmark = get_benchmark(benchmark_name)
    role = benchmark.role(dataset)
    own = tuple(f"{family}_{dataset}" for family in DATASET_FAMILIES)
    if role == "id":
        per_dataset = tuple(f"{family}_" for family in DATASET_FAMILIES)
        return tuple(k for k in metric_keys(benchmark) if not k.startswith(per_dataset)) + own
    targets = (dataset, role)
    return tuple(f"{family}_{t}" for t in targets for family in METRIC_FAMILIES) + own + (RECORD_KEY,)


def per_doc_metrics(record: Mapping, benchmark: Benchmark) -> dict:
    item = [
        record["dataset"],
        record["ood_score"],
        record["correct"],
        record["failure_policy"],
        bool(record.get("not_in_release")),
        bool(record.get("score_repaired")),
    ]
    out = dict.fromkeys(_keys_for_dataset(benchmark, record["dataset"]), item)  # one shared item (see _TableCache)
    if "suggestions_kept" in record and not record.get("not_in_release"):  # an answered ReGuide record
        stage_item = [record["dataset"], bool(record.get("predicted_aux")), len(record["suggestions_kept"]), len(record["suggestions_dropped"])]
        out.update({f"{family}_{record['dataset']}": stage_item for family in REGUIDE_FAMILIES})
    out[RECORD_KEY] = dict(record)
    return out


def _benchmark_of(items: Sequence) -> Benchmark:
    datasets = {item[0] for item in items}
    for name in ("cifar10", "imagenet200"):
        bench = get_benchmark(name)
        if bench.id_dataset in datasets or datasets & set(bench.ood_datasets):
            return bench
    raise ValueError(f"items of unknown datasets: {sorted(datasets)}")


def aggregate_metric(key: str, items: Sequence) -> float:
    """Aggregate one metric key over per-doc items (or records for ``oodd``); percent, NaN if undefined."""
    if not items:
        return float("nan")
    if key == RECORD_KEY:
        return float(sum(1 for record in items if record.get("ood_score") is not None))
    if key.startswith("aux_pred_rate_"):
        return 100.0 * float(np.mean([item[1] for item in items]))
    if key.startswith("mean_kept_"):
        return float(np.mean([item[2] for item in items]))
    if key.startswith("filtered_out_"):
        return float(sum(item[3] for item in items))
    if key.startswith("not_in_release_"):
        return float(sum(1 for item in items if _not_in_release(item)))
    answered = [item for item in items if not _not_in_release(item)]
    if not answered:
        return float("nan")
    if key.startswith("fail_rate_"):
        return 100.0 * float(np.mean([item[1] is None for item in answered]))
    if key.startswith("repaired_rate_"):
        return 100.0 * float(np.mean([_score_repaired(item) for item in answered]))
    if key == "id_acc":
        return 100.0 * float(np.mean([bool(item[2]) for item in answered]))
    return float(_ood_table_of(items).get(key, float("nan")))


def _not_in_release(item: Sequence) -> bool:
    return len(item) > 4 and bool(item[4])  # items of older logs have four fields


def _score_repaired(item: Sequence) -> bool:
    return len(item) > 5 and bool(item[5])


def _ood_table_of(items: Sequence) -> dict[str, float]:
    """The OoD metric table over one key's items (ID + OoD documents, compact items)."""
    cached = _TABLES.get(items)
    if cached is not None:
        return cached
    bench = _benchmark_of(items)
    policy = items[0][3]
    # Every document says its dataset is part of the task; only answered ones are scored.
    all_datasets = np.asarray([item[0] for item in items], dtype=object)
    answered = [item for item in items if not _not_in_release(item)]
    scores, kept = apply_failure_policy([item[1] for item in answered], policy)
    datasets = np.asarray([item[0] for item in answered], dtype=object)[kept]
    id_scores = scores[datasets == bench.id_dataset]
    # A dataset whose every answer failed stays in (as an empty array -> NaN, and NaN for its group):
    # dropping it would silently turn "near" into the mean of the remaining datasets.
    ood = {d: scores[datasets == d] for d in bench.ood_datasets if np.any(all_datasets == d)}
    table = ood_table(id_scores, ood, bench.near, bench.far)
    _TABLES.put(items, table)
    return table


class _TableCache:
    """Tables by item list, matched by the identity of every item.

    A document sends the same item object to each metric key it takes part in, so the five keys of a
    target (``auroc_mnist``, ``fpr95_mnist``, ...) aggregate lists of the very same objects in the same
    order: one table serves all five. Entries hold their items, so no id is reused while cached; lists
    that were copied or unpickled (several ranks) simply miss and are computed again.
    """

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._entries: dict[tuple[int, int, int], tuple[tuple, dict]] = {}

    @staticmethod
    def _key(items: Sequence) -> tuple[int, int, int]:
        return len(items), id(items[0]), id(items[-1])

    def get(self, items: Sequence) -> dict | None:
        entry = self._entries.get(self._key(items))
        if entry is None or not all(map(operator.is_, entry[0], items)):
            return None
        return entry[1]

    def put(self, items: Sequence, table: dict) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[self._key(items)] = (tuple(items), table)


_TABLES = _TableCache()
