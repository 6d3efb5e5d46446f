"""Score rules, failure policies and predicted class on stand-in parsed answers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from reguide_tasks.answers.scoring import (
    FAILURE_POLICIES,
    SCORE_RULES,
    apply_failure_policy,
    is_correct,
    ood_score,
    predicted_class,
)
from reguide_tasks.metrics.ood import auroc
from reguide_tasks.vocab import REJECTION_CLASS as NONE_CLASS

ID_CLASSES = ("cat", "dog", "great white shark")


def answer(confidences=None, prediction=None, status="ok"):
    """Stand-in for reguide_tasks.answers.parsing.ParsedAnswer (same attributes)."""
    return SimpleNamespace(prediction=prediction, confidences=confidences or {}, status=status, reason="")


STAGE2 = answer({"cat": 60, "dog": 20, "lynx": 10, NONE_CLASS: 10})


def test_registry_names():
    assert set(SCORE_RULES) == {"max_id", "msp", "neg_none", "id_minus_none"}
    assert FAILURE_POLICIES == ("exclude", "most_ood")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("max_id", 60.0), ("msp", 0.6), ("neg_none", -10.0), ("id_minus_none", 50.0)],
)
def test_each_rule_by_hand(rule, expected):
    assert ood_score(STAGE2, ID_CLASSES, rule) == pytest.approx(expected)


def test_max_id_ignores_auxiliary_and_none_classes():
    # An auxiliary class or 'none' above every ID class does not raise S_max.
    got = ood_score(answer({"cat": 20, "lynx": 90, NONE_CLASS: 95}), ID_CLASSES)
    assert got == pytest.approx(20.0)


def test_scores_use_confidences_as_given():
    # No 0-1 vs 0-100 rescaling: a 0-1 answer keeps its own scale.
    assert ood_score(answer({"cat": 0.8, "dog": 0.2}), ID_CLASSES) == pytest.approx(0.8)
    assert ood_score(answer({"cat": 80, "dog": 20}), ID_CLASSES) == pytest.approx(80.0)


def test_class_names_match_after_light_normalization():
    got = ood_score(answer({" Great  White Shark ": 70, "Dog": 30, "None of these classes": 5}), ID_CLASSES)
    assert got == pytest.approx(70.0)
    assert ood_score(answer({"Dog": 30, "None of these classes": 5}), ID_CLASSES, "neg_none") == -5.0


def test_non_finite_confidences_are_ignored():
    assert ood_score(answer({"cat": math.nan, "dog": 30}), ID_CLASSES) == pytest.approx(30.0)
    assert ood_score(answer({"cat": math.inf}), ID_CLASSES) is None
    assert ood_score(answer({"cat": "high", "dog": True}), ID_CLASSES) is None


@pytest.mark.parametrize(
    ("rule", "confidences"),
    [
        ("max_id", {"lynx": 90, NONE_CLASS: 10}),  # no ID class
        ("max_id", {}),
        ("msp", {"lynx": 90}),  # no ID class
        ("msp", {"cat": 0, "dog": 0, NONE_CLASS: 0}),  # sum <= 0
        ("neg_none", {"cat": 90}),  # 'none' absent
        ("id_minus_none", {"cat": 90}),  # 'none' absent
        ("id_minus_none", {NONE_CLASS: 90}),  # no ID class
    ],
)
def test_rules_return_none_without_a_usable_score(rule, confidences):
    assert ood_score(answer(confidences), ID_CLASSES, rule) is None


def test_failed_answer_has_no_score():
    failed = answer({"cat": 90}, status="failed")
    assert all(ood_score(failed, ID_CLASSES, rule) is None for rule in SCORE_RULES)
    assert ood_score(answer({"cat": 90}, status="partial"), ID_CLASSES) == pytest.approx(90.0)


def test_unknown_rule_names_the_choices():
    with pytest.raises(ValueError, match="max_id.*msp|msp.*max_id") as err:
        ood_score(STAGE2, ID_CLASSES, "entropy")
    assert "entropy" in str(err.value) and "id_minus_none" in str(err.value)


# --- failure policies ----------------------------------------------------------------------------


def test_exclude_drops_failures():
    kept, mask = apply_failure_policy([0.5, None, 0.2, math.nan])
    np.testing.assert_array_equal(kept, [0.5, 0.2])
    np.testing.assert_array_equal(mask, [True, False, True, False])


def test_most_ood_fills_strictly_below_every_real_score():
    kept, mask = apply_failure_policy([0.5, None, 0.2, math.nan], "most_ood")
    np.testing.assert_allclose(kept, [0.5, -0.8, 0.2, -0.8])
    assert mask.all()
    kept, _ = apply_failure_policy([-100.0, None, 0.0], "most_ood")
    assert kept[1] == -101.0 and kept[1] < min(kept[[0, 2]])


@pytest.mark.parametrize("policy", FAILURE_POLICIES)
def test_all_failed_and_empty_inputs(policy):
    kept, mask = apply_failure_policy([None, None], policy)
    if policy == "exclude":
        assert kept.size == 0 and not mask.any() and mask.size == 2
    else:
        np.testing.assert_array_equal(kept, [-1.0, -1.0])
        assert mask.all()
    kept, mask = apply_failure_policy([], policy)
    assert kept.size == 0 and mask.size == 0 and kept.dtype == float and mask.dtype == bool


def test_policy_errors():
    with pytest.raises(ValueError, match="exclude.*most_ood") as err:
        apply_failure_policy([1.0], "zero")
    assert "zero" in str(err.value)
    with pytest.raises(ValueError, match="finite"):
        apply_failure_policy([1.0, -math.inf], "most_ood")


def test_policy_then_metric_ranks_failures_as_most_ood():
    # Pooled ID + OoD, as documented: ID [100, fail], OoD [fail, 0] -> fill -1 for both failures.
    # AUROC: ID 100 beats both (2); failed ID ties failed OoD (0.5), loses to OoD 0 -> 2.5 / 4.
    scores, _ = apply_failure_policy([100.0, None, None, 0.0], "most_ood")
    assert auroc([True, True, False, False], scores) == pytest.approx(62.5)
    # 'exclude' keeps the pairing through the mask.
    is_id = np.array([True, True, False, False])
    kept, mask = apply_failure_policy([100.0, None, None, 0.0])
    assert auroc(is_id[mask], kept) == pytest.approx(100.0)


# --- predicted class / accuracy ------------------------------------------------------------------


def test_predicted_class_prefers_explicit_prediction_in_canonical_spelling():
    assert predicted_class(answer({"dog": 90}, prediction="Cat"), ID_CLASSES) == "cat"
    assert predicted_class(answer({}, prediction="lynx"), ID_CLASSES) == "lynx"


def test_predicted_class_falls_back_to_argmax_first_on_ties():
    assert predicted_class(answer({"dog": 50, "cat": 50, "lynx": 10}), ID_CLASSES) == "dog"
    assert predicted_class(answer({NONE_CLASS: 80, "cat": 20}), ID_CLASSES) == NONE_CLASS
    assert (
        predicted_class(answer({"Great White Shark": 70}, prediction=""), ID_CLASSES) == "great white shark"
    )
    assert predicted_class(answer({}), ID_CLASSES) is None


def test_is_correct():
    assert is_correct(answer({"cat": 90}, prediction="cat"), "cat")
    assert is_correct(answer({"CAT": 90, "dog": 10}), "cat")  # argmax fallback, normalized match
    assert not is_correct(answer({"cat": 40, NONE_CLASS: 60}, prediction=NONE_CLASS), "cat")
    assert not is_correct(answer({"lynx": 70, "cat": 30}), "cat")  # auxiliary class on an ID image
    assert not is_correct(answer({}), "cat")
