"""Per-document OoDD records and the typed items each metric key aggregates.

A record (the sample log's ``oodd`` entry) says what the model answered and how it was scored,
including how its class names were read (``key_reading``, ``repaired_keys``, ``unknown_keys``,
``repaired_prediction``, ``score_repaired``). For each metric key a document takes part in (ID
documents: all of them; an OoD document: its dataset's and its group's keys, and its own per-dataset
keys) it hands lmms-eval one shared :class:`ScoreItem`; a ReGuide answer adds a
:class:`SuggestionItem` for the ReGuide families. Sharing one item object per document keeps
lmms-eval's sample logs small and lets the five OoD metrics of a target share one table
(:mod:`reguide_tasks.lmms.aggregations`).

A document without a released answer (``reguide_replay`` with ``missing=skip``) is no answer of the
model: it is left out of every metric (its dataset still counts as part of the task, so a dataset
with no released answer at all is NaN, as is its group) and counted in ``not_in_release_<d>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import NamedTuple

from reguide_tasks.answers.scoring import (
    is_correct,
    ood_score,
    predicted_class,
    prediction_confidence,
    score_uses_repair,
)
from reguide_tasks.data.benchmarks import ID_ROLES, Benchmark, get_benchmark
from reguide_tasks.lmms.run_state import RUN
from reguide_tasks.vocab import (
    DATASET_FAMILIES,
    GROUPS,
    ID_ACCURACY,
    NO_ANSWER,
    OOD_METRICS,
    RECORD_KEY,
    REGUIDE_FAMILIES,
    metric_key,
    placeholder_reason,
)


class ScoreItem(NamedTuple):
    """What one document contributes to the OoD metrics, ``id_acc`` and the per-dataset rates.

    Logged by lmms-eval as a JSON list in this field order (older logs have only the first four).
    """

    dataset: str
    score: float | None  # None: no usable score (the failure policy decides)
    correct: bool | None  # ID documents with an answer only
    failure_policy: str
    not_in_release: bool = False
    score_repaired: bool = False
    benchmark: str = ""  # which benchmark's roles the aggregation reads ("" in older logs)

    @classmethod
    def of(cls, item: Sequence) -> ScoreItem:
        """An item as lmms-eval hands it back: this class, or a plain list read from a log."""
        return item if isinstance(item, ScoreItem) else cls(*item)


class SuggestionItem(NamedTuple):
    """What one answered ReGuide document contributes to the ReGuide families."""

    dataset: str
    predicted_aux: bool  # the stage-2 prediction is one of the auxiliary classes
    n_kept: int  # suggestions the stage-2 prompt showed
    n_dropped: int  # suggestions filtering dropped

    @classmethod
    def of(cls, item: Sequence) -> SuggestionItem:
        return item if isinstance(item, SuggestionItem) else cls(*item)


def failure_reason(parsed, answer_text: object) -> str:
    """The parser's reason; for a failed answer that is a placeholder, what the placeholder says."""
    if parsed.status != "failed":
        return parsed.reason
    return placeholder_reason(answer_text) or parsed.reason


def is_not_in_release(answer_text: object) -> bool:
    """Whether the answer is the replay's placeholder for a document the release has no answer for."""
    return str(answer_text or "").strip() == NO_ANSWER


def not_in_release_record(doc: Mapping, score_rule: str, failure_policy: str, key_reading: str = "repair") -> dict:
    """The record of a document the release has no answer for: what :func:`build_record` writes for
    the replay's placeholder (tested), without parsing or scoring it. Most documents of a long replay
    with missing=skip take this path."""
    RUN.count_scored(None)
    return {
        "dataset": doc["dataset"],
        "role": doc["role"],
        "image": doc["image"],
        "label_name": doc["label_name"],
        "prediction": None,
        "prediction_confidence": None,
        "correct": None,
        "ood_score": None,
        "failed": False,
        "not_in_release": True,
        "status": "not in release",
        "reason": _NO_ANSWER_REASON,
        "score_rule": score_rule,
        "failure_policy": failure_policy,
        "key_reading": key_reading,
        "repaired_keys": {},
        "repaired_prediction": None,
        "unknown_keys": [],
        "score_repaired": False,
        "list_position": doc.get("list_position"),
    }


_NO_ANSWER_REASON = placeholder_reason(NO_ANSWER)


def build_record(doc: Mapping, parsed, id_classes: Sequence[str], score_rule: str, failure_policy: str, answer_text: str = "", key_reading: str = "repair") -> dict:
    score = ood_score(parsed, id_classes, score_rule)
    if score is not None and not math.isfinite(score):
        score = None
    is_id = doc["role"] in ID_ROLES  # covariate-shifted ID images have a class too
    reason = failure_reason(parsed, answer_text)
    missing = is_not_in_release(answer_text)
    request_failed = score is None and reason.startswith(("request failed", "API budget"))
    RUN.count_scored(reason if request_failed else None)
    return {
        "dataset": doc["dataset"],
        "role": doc["role"],
        "image": doc["image"],
        "label_name": doc["label_name"],
        "prediction": predicted_class(parsed, id_classes),
        "prediction_confidence": prediction_confidence(parsed, id_classes),  # calibration (reguide-report)
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
        # the document's place in its set's own list (the report reads scores in that order)
        "list_position": doc.get("list_position"),
    }


def metric_keys(benchmark: Benchmark, stage: str = "baseline") -> list[str]:
    """Every aggregated key of a benchmark's task, in table order: the OoD metrics per OoD dataset and
    group, ``id_acc``, the :data:`~reguide_tasks.vocab.DATASET_FAMILIES` per dataset, for ReGuide
    tasks the :data:`~reguide_tasks.vocab.REGUIDE_FAMILIES` per dataset, then the record key."""
    targets = [*benchmark.ood_datasets, *GROUPS]
    keys = [metric_key(family, target) for target in targets for family in OOD_METRICS]
    keys.append(ID_ACCURACY)
    keys.extend(metric_key(ID_ACCURACY, d) for d in benchmark.csid)  # full-spectrum: each shifted set's own
    keys.extend(metric_key(family, d) for family in DATASET_FAMILIES for d in benchmark.datasets)
    if stage == "reguide":
        keys.extend(metric_key(family, d) for family in REGUIDE_FAMILIES for d in benchmark.datasets)
    keys.append(RECORD_KEY)
    return keys


@cache
def keys_of_dataset(benchmark_name: str, dataset: str) -> tuple[str, ...]:
    """The metric keys a document of ``dataset`` takes part in (ReGuide families aside). ID images
    (the ID test set, and in a full-spectrum view each covariate-shifted set) are on the ID side of
    every OoD metric; ``id_acc`` is the ID test set's accuracy, ``id_acc_<set>`` a shifted set's."""
    benchmark = get_benchmark(benchmark_name)
    role = benchmark.role(dataset)
    own = tuple(metric_key(family, dataset) for family in DATASET_FAMILIES)
    if role in ID_ROLES:
        accuracy = ID_ACCURACY if role == "id" else metric_key(ID_ACCURACY, dataset)
        per_dataset = tuple(f"{family}_" for family in (*DATASET_FAMILIES, ID_ACCURACY))
        return tuple(k for k in metric_keys(benchmark) if k == accuracy or (k != ID_ACCURACY and not k.startswith(per_dataset))) + own
    targets = (dataset, role)
    return tuple(metric_key(family, t) for t in targets for family in OOD_METRICS) + own + (RECORD_KEY,)


def per_doc_metrics(record: Mapping, benchmark: Benchmark) -> dict:
    """``process_results``' answer for one scored record: each key it takes part in -> its item."""
    if record.get("not_in_release"):  # every such document of a dataset hands the same item
        item = _not_in_release_item(record["dataset"], record["failure_policy"], benchmark.name)
    else:
        item = ScoreItem(
            record["dataset"],
            record["ood_score"],
            record["correct"],
            record["failure_policy"],
            False,
            bool(record.get("score_repaired")),
            benchmark.name,
        )
    out: dict = dict.fromkeys(keys_of_dataset(benchmark.name, record["dataset"]), item)  # one shared item
    if "suggestions_kept" in record and not record.get("not_in_release"):  # an answered ReGuide record
        suggestion = SuggestionItem(record["dataset"], bool(record.get("predicted_aux")), len(record["suggestions_kept"]), len(record["suggestions_dropped"]))
        out.update({metric_key(family, record["dataset"]): suggestion for family in REGUIDE_FAMILIES})
    out[RECORD_KEY] = record
    return out


@cache
def _not_in_release_item(dataset: str, failure_policy: str, benchmark: str = "") -> ScoreItem:
    return ScoreItem(dataset, None, None, failure_policy, True, False, benchmark)
