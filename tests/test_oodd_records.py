"""Per-doc records -> metric items -> aggregated values, on hand-made records."""

from __future__ import annotations

import math

import pytest

from reguide_tasks.answers.scoring import FAILURE_POLICIES, SCORE_RULES
from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.lmms.aggregations import aggregate_metric
from reguide_tasks.lmms.hooks import _parse
from reguide_tasks.lmms.records import (
    ScoreItem,
    build_record,
    metric_keys,
    not_in_release_record,
    per_doc_metrics,
)
from reguide_tasks.vocab import NO_ANSWER, REJECTION_CLASS

BENCH = get_benchmark("cifar10")


def record(dataset, score, correct=None, policy="exclude", **extra):
    return {"dataset": dataset, "role": BENCH.role(dataset), "ood_score": score, "correct": correct, "failure_policy": policy, **extra}


def aggregate(records, stage="baseline"):
    per_key: dict[str, list] = {}
    for r in records:
        for key, value in per_doc_metrics(r, BENCH).items():
            per_key.setdefault(key, []).append(value)
    return {key: aggregate_metric(key, per_key.get(key, [])) for key in metric_keys(BENCH, stage)}


def test_hand_computed_table():
    records = [record("cifar10", 90, True), record("cifar10", 80, False), record("cifar10", None, False),
               record("cifar100", 85), record("cifar100", 10), record("mnist", 5), record("mnist", None)]
    out = aggregate(records)
    assert out["auroc_cifar100"] == pytest.approx(75.0)  # pairs: (90>85, 90>10, 80<85, 80>10) -> 3/4
    assert out["auroc_mnist"] == 100.0
    assert out["auroc_near"] == pytest.approx(75.0)  # tin absent: mean over cifar100 only
    assert out["auroc_far"] == 100.0
    assert out["id_acc"] == pytest.approx(100 / 3)
    assert out["fail_rate_cifar10"] == pytest.approx(100 / 3) and out["fail_rate_mnist"] == 50.0 and out["fail_rate_cifar100"] == 0.0
    assert out["oodd"] == 5
    assert math.isnan(out["auroc_svhn"])  # no documents at all


def test_most_ood_policy_ranks_failures_lowest_across_id_and_ood():
    records = [record("cifar10", 90, True, "most_ood"), record("cifar10", None, False, "most_ood"),
               record("mnist", 5, policy="most_ood"), record("mnist", None, policy="most_ood")]
    out = aggregate(records)
    # scores become 90, f, 5, f with f below 5: ID > OoD for (90,5),(90,f); f vs 5 lost; f vs f tie
    assert out["auroc_mnist"] == pytest.approx(100 * (1 + 1 + 0 + 0.5) / 4)


def test_a_dataset_whose_answers_all_failed_is_nan_and_so_is_its_group():
    out = aggregate([record("cifar10", 90, True), record("cifar100", 10), record("tin", None)])
    assert math.isnan(out["auroc_tin"]) and math.isnan(out["auroc_near"])
    assert out["fail_rate_tin"] == 100.0


def test_reguide_stage_metrics():
    common = dict(suggestions_dropped=[["cat", "id class"], ["x", "duplicate"]])
    records = [record("cifar10", 90, True, suggestions_kept=["a", "b"], predicted_aux=False, **common),
               record("mnist", 5, suggestions_kept=["a", "b", "c", "d"], predicted_aux=True, **common),
               record("mnist", 6, suggestions_kept=[], predicted_aux=False, suggestions_dropped=[])]
    out = aggregate(records, "reguide")
    assert out["aux_pred_rate_mnist"] == 50.0 and out["aux_pred_rate_cifar10"] == 0.0
    assert out["mean_kept_mnist"] == 2.0 and out["mean_kept_cifar10"] == 2.0
    assert out["filtered_out_mnist"] == 2.0


def test_one_table_per_target_and_no_stale_table_for_other_items():
    """The five keys of a target share one table (same item objects); a list that differs in any item,
    or holds equal but distinct items (several ranks, unpickled), gets its own computation."""
    from reguide_tasks.lmms import aggregations as oodd_records

    calls = []
    real = oodd_records.ood_table

    def counting(*args):
        calls.append(args)
        return real(*args)

    oodd_records.ood_table, saved = counting, oodd_records.ood_table
    try:
        records = [record("cifar10", 90, True), record("cifar10", 80, False), record("mnist", 5), record("mnist", 85)]
        items = [per_doc_metrics(r, BENCH)["auroc_mnist"] for r in records]
        same_objects = list(items)  # another key's list: the very same item objects
        values = {key: aggregate_metric(key, same_objects if key.startswith("fpr") else items)
                  for key in ("auroc_mnist", "fpr95_mnist", "fpr95tpr_mnist", "aupr_in_mnist", "aupr_out_mnist")}
        assert len(calls) == 1 and values["auroc_mnist"] == pytest.approx(75.0)

        changed = list(items)
        changed[1] = per_doc_metrics(record("cifar10", 1, False), BENCH)["auroc_mnist"]  # same ends, new middle
        assert aggregate_metric("auroc_mnist", changed) == pytest.approx(50.0) and len(calls) == 2
        copies = [list(item) for item in items]  # equal values, new objects
        assert aggregate_metric("auroc_mnist", copies) == values["auroc_mnist"] and len(calls) == 3
    finally:
        oodd_records.ood_table = saved


@pytest.mark.parametrize("score_rule", sorted(SCORE_RULES))
@pytest.mark.parametrize("failure_policy", FAILURE_POLICIES)
@pytest.mark.parametrize("key_reading", ["repair", "strict"])
def test_a_document_without_a_released_answer_skips_scoring_but_gets_the_scoring_paths_record(score_rule, failure_policy, key_reading):
    # process_results' shortcut for NO_ANSWER must write what scoring the placeholder would write.
    for dataset in BENCH.datasets:
        doc = {"dataset": dataset, "role": BENCH.role(dataset), "image": f"{dataset}/1.png", "label_name": "cat", "doc_key": "k"}
        parsed = _parse(NO_ANSWER, (*BENCH.classes, REJECTION_CLASS), (), key_reading)
        fast = not_in_release_record(doc, score_rule, failure_policy, key_reading)
        full = build_record(doc, parsed, BENCH.classes, score_rule, failure_policy, NO_ANSWER, key_reading)
        assert fast == full and list(fast) == list(full)  # same fields in the same order
        items = per_doc_metrics(fast, BENCH)
        assert items.keys() == per_doc_metrics(dict(full), BENCH).keys()
        assert {item for key, item in items.items() if key != "oodd"} == {ScoreItem(dataset, None, None, failure_policy, True, False, BENCH.name)}
