"""Pin the metric conventions: positive class, FPR@95 rules, AUPR-In vs AUPR-Out, ties, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score, roc_curve

from reguide_tasks.metrics.ood import (
    METRICS,
    aupr_in,
    aupr_out,
    auroc,
    fpr_at_95_openood,
    fpr_at_95_tpr,
    ood_metrics,
    ood_table,
)

PAIR_FUNCTIONS = (auroc, fpr_at_95_openood, fpr_at_95_tpr, aupr_in, aupr_out)


def pair(id_scores, ood_scores):
    """(is_id, scores) for an ID list and an OoD list."""
    is_id = np.array([True] * len(id_scores) + [False] * len(ood_scores))
    return is_id, np.array(list(id_scores) + list(ood_scores), dtype=float)


# --- hand-computed cases -------------------------------------------------------------------------


def test_small_case_with_a_tie_by_hand():
    # ID [3, 2, 1] vs OoD [2, 0]. AUROC: (2 + 1.5 + 1) / 6 pairs (the 2-2 tie counts half).
    # Classic (ID positive): thresholds 3, 2, 1 -> TPR 1/3, 2/3, 1 with FPR 0, 1/2, 1/2 -> 50.
    # OpenOOD (OoD positive, -S): thresholds 0, -1, -2 -> TPR 1/2, 1/2, 1 with FPR 0, 1/3, 2/3 -> 66.7.
    # AUPR-In: P@R = 1@1/3, 2/3@2/3, 3/4@1 -> (1 + 2/3 + 3/4) / 3 = 29/36.
    # AUPR-Out: P@R = 1@1/2, 1/2@1 -> 3/4.
    got = ood_metrics([3, 2, 1], [2, 0])
    assert got == pytest.approx(
        {"auroc": 75.0, "fpr95tpr": 50.0, "fpr95": 200 / 3, "aupr_in": 2900 / 36, "aupr_out": 75.0}
    )


def test_fpr_conventions_differ_on_lvlm_like_ties():
    # LVLM-like: 19 ID at 100, 1 ID at 90; OoD half at 100, half at 0.
    # Classic: at threshold 100, 95% of ID accepted and half of OoD too -> 50.
    # OpenOOD: catching 95% of OoD needs the threshold at 100, which flags every ID image -> 100.
    id_scores, ood_scores = [100.0] * 19 + [90.0], [100.0] * 10 + [0.0] * 10
    got = ood_metrics(id_scores, ood_scores)
    assert got["fpr95tpr"] == pytest.approx(50.0)
    assert got["fpr95"] == pytest.approx(100.0)
    # Per ID at 100: 10 ties (half) + 10 wins = 15; the ID at 90: 10 wins -> (19 * 15 + 10) / 400.
    assert got["auroc"] == pytest.approx(73.75)


def test_fpr_uses_every_roc_point_not_sklearns_dropped_curve():
    # TPR reaches exactly 0.95 at threshold 5, a collinear point that drop_intermediate=True removes.
    id_scores = [10.0] * 18 + [5.0, 4.0]
    ood_scores = [5.0, 4.0] + [0.0] * 18
    is_id, scores = pair(id_scores, ood_scores)
    fpr, tpr, _ = roc_curve(is_id, scores)  # default drop_intermediate=True
    assert fpr[np.argmax(tpr >= 0.95)] == pytest.approx(0.10)  # what a dropped curve would give
    assert fpr_at_95_tpr(is_id, scores) == pytest.approx(5.0)
    # Mirror image for the OpenOOD rule: swap roles and negate.
    assert fpr_at_95_openood(~is_id, -scores) == pytest.approx(5.0)


def test_first_point_reaching_the_level_not_the_nearest():
    # 10 ID: TPR goes 0.9 (FPR 0) -> 1.0 (FPR 0.5); 0.9 is nearer 0.95 but does not reach it.
    is_id, scores = pair([10.0] * 9 + [1.0], [5.0] * 5 + [0.0] * 5)
    assert fpr_at_95_tpr(is_id, scores) == pytest.approx(50.0)
    assert fpr_at_95_tpr(is_id, scores, tpr=0.9) == pytest.approx(0.0)


def test_aupr_in_and_out_differ_on_imbalanced_case():
    # 1 ID at 5 vs OoD [6, 4, 3, 2].
    # AUPR-In: the single ID is found after one OoD -> precision 1/2 at recall 1 -> 50.
    # AUPR-Out: OoD 2, 3, 4 first (precision 1), then the ID, then OoD 6 at 4/5 -> 0.75 + 0.25 * 0.8.
    got = ood_metrics([5.0], [6.0, 4.0, 3.0, 2.0])
    assert got["aupr_in"] == pytest.approx(50.0)
    assert got["aupr_out"] == pytest.approx(95.0)
    assert got["auroc"] == pytest.approx(75.0)
    assert got["fpr95tpr"] == pytest.approx(25.0)
    assert got["fpr95"] == pytest.approx(100.0)


def test_all_tied_scores_give_chance_levels():
    # Imbalanced, every score equal: AUPR equals the prevalence of its positive class.
    got = ood_metrics([50.0], [50.0] * 9)
    assert got == pytest.approx(
        {"auroc": 50.0, "fpr95": 100.0, "fpr95tpr": 100.0, "aupr_in": 10.0, "aupr_out": 90.0}
    )


# --- separation regimes --------------------------------------------------------------------------


def test_perfect_separation():
    got = ood_metrics([90.0, 80.0, 100.0], [10.0, 0.0, 20.0, 5.0])
    assert got == pytest.approx(
        {"auroc": 100.0, "fpr95": 0.0, "fpr95tpr": 0.0, "aupr_in": 100.0, "aupr_out": 100.0}
    )


def test_inverted_separation():
    got = ood_metrics([0.0, 10.0], [90.0, 100.0, 80.0])
    assert got["auroc"] == pytest.approx(0.0)
    assert got["fpr95"] == pytest.approx(100.0)
    assert got["fpr95tpr"] == pytest.approx(100.0)
    # Positives ranked last: precision k / (3 + k) at recall k / 2 for ID; k / (2 + k) at k / 3 for OoD.
    assert got["aupr_in"] == pytest.approx(100 * (1 / 4 + 2 / 5) / 2)
    assert got["aupr_out"] == pytest.approx(100 * (1 / 3 + 2 / 4 + 3 / 5) / 3)


def test_random_scores_are_near_chance():
    rng = np.random.default_rng(0)
    got = ood_metrics(rng.random(2000), rng.random(2000))
    assert got["auroc"] == pytest.approx(50.0, abs=3.0)
    assert got["fpr95tpr"] == pytest.approx(95.0, abs=3.0)
    assert got["fpr95"] == pytest.approx(95.0, abs=3.0)
    assert got["aupr_in"] == pytest.approx(50.0, abs=3.0)


# --- symmetry properties (heavily tied integer scores) --------------------------------------------

_labelled = st.lists(st.tuples(st.booleans(), st.integers(0, 4)), min_size=2, max_size=30).filter(
    lambda rows: len({b for b, _ in rows}) == 2
)


@settings(max_examples=60, deadline=None)
@given(_labelled)
def test_swapping_roles_and_negating_is_consistent(rows):
    is_id = np.array([b for b, _ in rows])
    scores = np.array([s for _, s in rows], dtype=float)
    # AUROC is symmetric: OoD positive with -S (OpenOOD's framing) gives the same number.
    assert auroc(is_id, scores) == pytest.approx(100 * roc_auc_score(~is_id, -scores))
    assert auroc(~is_id, -scores) == pytest.approx(auroc(is_id, scores))
    # Reversing the score direction mirrors AUROC around 50.
    assert auroc(is_id, -scores) == pytest.approx(100 - auroc(is_id, scores))
    # The OpenOOD rule is the classic rule with roles swapped; AUPR-Out is AUPR-In with roles swapped.
    assert fpr_at_95_openood(is_id, scores) == pytest.approx(fpr_at_95_tpr(~is_id, -scores))
    assert aupr_out(is_id, scores) == pytest.approx(aupr_in(~is_id, -scores))


@settings(max_examples=60, deadline=None)
@given(_labelled)
def test_metrics_are_invariant_to_monotone_rescaling(rows):
    # Rescaling 0-100 answers to 0-1 must not change any metric (ranking is what matters).
    is_id = np.array([b for b, _ in rows])
    scores = np.array([s for _, s in rows], dtype=float)
    for fn in PAIR_FUNCTIONS:
        assert fn(is_id, scores / 100) == pytest.approx(fn(is_id, scores))
        assert 0.0 <= fn(is_id, scores) <= 100.0


# --- edge cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("id_scores", "ood_scores"),
    [([], [1.0, 2.0]), ([1.0, 2.0], []), ([], []), ([math.nan] * 3, [1.0]), ([1.0], [math.nan] * 2)],
)
def test_undefined_pairs_give_nan_without_error(id_scores, ood_scores):
    got = ood_metrics(id_scores, ood_scores)
    assert set(got) == set(METRICS)
    assert all(math.isnan(v) for v in got.values())
    is_id, scores = pair(id_scores, ood_scores)
    for fn in PAIR_FUNCTIONS:
        assert math.isnan(fn(is_id, scores))


def test_partial_nan_is_rejected_with_a_pointer_to_the_failure_policy():
    is_id, scores = pair([1.0, math.nan], [0.0])
    for fn in PAIR_FUNCTIONS:
        with pytest.raises(ValueError, match="failure policy"):
            fn(is_id, scores)


def test_input_validation():
    with pytest.raises(ValueError, match="finite"):
        auroc(*pair([math.inf], [0.0]))
    with pytest.raises(ValueError, match="length"):
        auroc([True, False], [1.0])
    with pytest.raises(ValueError, match="boolean"):
        auroc([1, 2], [1.0, 0.0])  # 1/2 labels are never guessed
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_95_tpr(*pair([1.0], [0.0]), tpr=0.0)
    # 0/1 integers are accepted as booleans.
    assert auroc([1, 0, 0], [3.0, 1.0, 2.0]) == pytest.approx(100.0)


# --- table ---------------------------------------------------------------------------------------


def test_ood_table_keys_and_unweighted_group_means():
    id_scores = [100.0, 90.0, 80.0, 70.0]
    by_dataset = {
        "cifar100": [95.0],  # 1 image: AUROC 25
        "tin": [0.0] * 50,  # 50 images: AUROC 100
        "mnist": [85.0, 75.0],  # AUROC (2 + 3) / 8 = 62.5
        "extra": [0.0],  # in neither group: reported alone
    }
    table = ood_table(id_scores, by_dataset, near=["cifar100", "tin"], far=["mnist", "svhn"])
    expected = {f"{m}_{d}" for m in METRICS for d in [*by_dataset, "near", "far"]}
    assert set(table) == expected
    assert table["auroc_cifar100"] == pytest.approx(25.0)
    assert table["auroc_tin"] == pytest.approx(100.0)
    # Unweighted over datasets (62.5), not pooled over images (which would be near 98.5).
    assert table["auroc_near"] == pytest.approx(62.5)
    assert table["auroc_far"] == pytest.approx(62.5)  # only mnist present; svhn missing
    for metric in METRICS:
        per_near = [ood_metrics(id_scores, by_dataset[d])[metric] for d in ("cifar100", "tin")]
        assert table[f"{metric}_near"] == pytest.approx(np.mean(per_near))
    # Metric by metric, datasets in mapping order, then near, far.
    assert list(table)[:6] == [
        "auroc_cifar100",
        "auroc_tin",
        "auroc_mnist",
        "auroc_extra",
        "auroc_near",
        "auroc_far",
    ]


def test_ood_table_omits_absent_groups_and_propagates_nan():
    table = ood_table(
        [1.0, 2.0], {"ninco": [0.0], "ssb_hard": []}, near=["ssb_hard", "ninco"], far=["inaturalist"]
    )
    assert "auroc_far" not in table and "fpr95_far" not in table
    assert table["auroc_ninco"] == pytest.approx(100.0)
    assert math.isnan(table["auroc_ssb_hard"])
    assert math.isnan(table["auroc_near"])  # a missing result is never averaged away


def test_ood_table_rejects_ambiguous_names():
    with pytest.raises(ValueError, match="clash"):
        ood_table([1.0], {"near": [0.0]}, near=["near"], far=[])
    with pytest.raises(ValueError, match="both near and far"):
        ood_table([1.0], {"a": [0.0]}, near=["a"], far=["a"])
