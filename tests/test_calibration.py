"""Calibration of verbalized confidence (reguide_tasks.metrics.calibration): hand-computed values,
the tie and failure rules, AURC against a plain loop over thresholds, and the input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reguide_tasks.metrics.calibration import (
    aurc,
    brier_score,
    calibration_summary,
    expected_calibration_error,
    reliability_bins,
    risk_coverage,
    selective_risk_at,
)

CONF = [90, 80, 80, 60, None]
CORRECT = [True, True, False, True, False]


def _brute_force_aurc(confidence, correct):
    """AURC in percent, written plainly: one threshold per distinct confidence, highest first; a
    failed answer (None) counts as an error below every stated confidence."""
    scores = [-1.0 if c is None else float(c) for c in confidence]
    n = len(scores)
    area, previous_coverage = 0.0, 0.0
    for threshold in sorted(set(scores), reverse=True):
        covered = [i for i in range(n) if scores[i] >= threshold]
        errors = sum(1 for i in covered if not correct[i])
        coverage = len(covered) / n
        area += (coverage - previous_coverage) * errors / len(covered)
        previous_coverage = coverage
    return 100.0 * area


def _random_answers(seed, n, n_values=6, p_failed=0.1):
    rng = np.random.RandomState(seed)
    confidence = [None if rng.rand() < p_failed else int(v) for v in rng.choice(np.linspace(0, 100, n_values), n)]
    correct = [c is not None and bool(rng.rand() < (c / 100.0)) for c in confidence]
    return confidence, correct


# --- ECE and reliability bins -------------------------------------------------------------------


def test_ece_hand_computed_equal_width_and_equal_mass():
    conf, correct = [10, 20, 30, 40], [False, True, False, True]
    # Width 0.25: {10, 20} conf 0.15 acc 0.5, {30, 40} conf 0.35 acc 0.5 -> (0.35 + 0.15) / 2.
    assert expected_calibration_error(conf, correct, n_bins=4) == pytest.approx(25.0, abs=1e-12)
    # Four equal-mass bins of one: (0.1 + 0.8 + 0.3 + 0.6) / 4.
    assert expected_calibration_error(conf, correct, n_bins=4, binning="equal_mass") == pytest.approx(45.0, abs=1e-12)


def test_ece_excludes_failed_answers():
    assert expected_calibration_error(CONF, CORRECT, n_bins=5) == pytest.approx(27.5, abs=1e-12)
    assert expected_calibration_error(CONF[:4], CORRECT[:4], n_bins=5) == pytest.approx(27.5, abs=1e-12)
    assert expected_calibration_error([np.nan, 90], [False, True], n_bins=5) == pytest.approx(10.0, abs=1e-12)


def test_equal_width_bins_are_right_closed_with_zero_and_one_inside():
    bins = reliability_bins([0, 10, 70, 70.0001, 100], [1, 1, 1, 1, 1], n_bins=10)
    np.testing.assert_allclose(bins.lower, [0.0, 0.6, 0.7, 0.9])
    np.testing.assert_allclose(bins.upper, [0.1, 0.7, 0.8, 1.0])
    np.testing.assert_array_equal(bins.count, [2, 1, 1, 1])  # 0 and 10 in [0, 0.1]; 70 closes (0.6, 0.7]
    np.testing.assert_allclose(bins.confidence, [0.05, 0.7, 0.700001, 1.0])


@pytest.mark.parametrize("m", [10, 20, 25, 50])
def test_a_confidence_on_an_edge_stays_in_the_bin_it_closes(m):
    # 70 / 100 * 10 is 7.000000000000001 in floats: a naive ceil(p * M) would move 70 up a bin.
    values = np.arange(1, m + 1) * 100 // m
    bins = reliability_bins(values, np.ones(m, bool), n_bins=m)
    np.testing.assert_array_equal(bins.count, np.ones(m, int))
    np.testing.assert_allclose(bins.upper, values / 100)


@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
def test_perfect_calibration_gives_zero_ece(binning):
    conf = [80] * 10 + [40] * 5 + [100] * 5
    correct = [True] * 8 + [False] * 2 + [True] * 2 + [False] * 3 + [True] * 5
    assert expected_calibration_error(conf, correct, binning=binning) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
def test_constant_confidence(binning):
    conf, correct = [70] * 10, [True] * 6 + [False] * 4
    assert expected_calibration_error(conf, correct, binning=binning) == pytest.approx(10.0, abs=1e-12)
    assert brier_score(conf, correct) == pytest.approx(0.6 * 0.09 + 0.4 * 0.49, abs=1e-12)
    assert aurc(conf, correct) == pytest.approx(40.0, abs=1e-12)  # one tie group: the error rate
    bins = reliability_bins(conf, correct, binning=binning)
    np.testing.assert_array_equal(bins.count, [10])


def test_equal_mass_never_splits_a_tie_group():
    rng = np.random.RandomState(3)
    conf = np.r_[np.full(70, 100.0), rng.choice(np.arange(0, 100, 5), 30)]
    correct = rng.rand(100) < 0.7
    bins = reliability_bins(conf, correct, n_bins=15, binning="equal_mass")
    assert bins.count.sum() == 100
    assert np.all(bins.upper[:-1] < bins.lower[1:])  # disjoint ranges: no value in two bins
    assert bins.upper[-1] == 1.0 and bins.count[-1] >= 70
    for value in np.unique(conf):  # each tie group lies inside one bin
        holds = (bins.lower <= value / 100) & (value / 100 <= bins.upper)
        assert holds.sum() == 1
    assert bins.count.size < 15  # fewer, unequal bins


def test_equal_mass_without_ties_has_near_equal_counts():
    conf = np.linspace(0, 100, 47)
    bins = reliability_bins(conf, np.ones(47, bool), n_bins=15, binning="equal_mass")
    assert bins.count.size == 15 and bins.count.sum() == 47
    assert bins.count.max() - bins.count.min() <= 1


def test_equal_mass_with_more_bins_than_answers():
    bins = reliability_bins([30, 60, 90], [1, 0, 1], n_bins=15, binning="equal_mass")
    np.testing.assert_array_equal(bins.count, [1, 1, 1])
    assert expected_calibration_error([30, 60, 90], [1, 0, 1], binning="equal_mass") == pytest.approx(
        100 * (0.7 + 0.6 + 0.1) / 3, abs=1e-12
    )


# --- Brier score ------------------------------------------------------------------------------


def test_brier_hand_computed_and_failures_excluded():
    assert brier_score(CONF, CORRECT) == pytest.approx((0.01 + 0.04 + 0.64 + 0.16) / 4, abs=1e-12)
    assert brier_score([100, 0], [True, False]) == 0.0
    assert brier_score([0, 100], [True, False]) == 1.0


# --- Risk-coverage and AURC -------------------------------------------------------------------


def test_risk_coverage_hand_computed():
    coverage, risk = risk_coverage(CONF, CORRECT)
    np.testing.assert_allclose(coverage, [0.2, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(risk, [0.0, 1 / 3, 0.25, 0.4])
    assert aurc(CONF, CORRECT) == pytest.approx(100 * (0.4 / 3 + 0.05 + 0.08), abs=1e-12)


def test_risk_coverage_steps_only_at_distinct_confidences():
    conf, correct = _random_answers(5, 200, n_values=4, p_failed=0.2)
    coverage, risk = risk_coverage(conf, correct)
    stated = {c for c in conf if c is not None}
    assert coverage.size == len(stated) + (None in conf)
    assert coverage[-1] == 1.0 and np.all(np.diff(coverage) > 0)
    assert risk[-1] == pytest.approx(1 - np.mean(correct), abs=1e-12)  # failed answers covered last, as errors


@pytest.mark.parametrize("seed", range(8))
def test_aurc_matches_a_plain_loop_over_thresholds(seed):
    conf, correct = _random_answers(seed, 20 + 37 * seed, n_values=2 + seed)
    assert aurc(conf, correct) == pytest.approx(_brute_force_aurc(conf, correct), abs=1e-9)


def test_aurc_without_ties_is_the_mean_risk_over_the_top_i():
    rng = np.random.RandomState(11)
    conf = rng.permutation(np.linspace(0, 100, 50))
    correct = rng.rand(50) < conf / 100
    order = np.argsort(-conf)
    expected = 100 * np.mean([np.mean(~correct[order[: i + 1]]) for i in range(50)])
    assert aurc(conf, correct) == pytest.approx(expected, abs=1e-9)


def test_aurc_rewards_ranking_errors_last():
    good = aurc([90, 80, 20, 10], [True, True, False, False])
    bad = aurc([10, 20, 80, 90], [True, True, False, False])
    assert good == pytest.approx(100 * (0 + 0 + 0.25 / 3 + 0.25 * 0.5), abs=1e-12)
    assert bad > good


def test_selective_risk_at():
    assert selective_risk_at(CONF, CORRECT, 0.2) == 0.0
    assert selective_risk_at(CONF, CORRECT, 0.3) == pytest.approx(100 / 3)  # the 80s enter together
    assert selective_risk_at(CONF, CORRECT, 0.6) == pytest.approx(100 / 3)
    assert selective_risk_at(CONF, CORRECT, 1.0) == pytest.approx(40.0)
    assert math.isnan(selective_risk_at([None], [False], 0.5))
    for level in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="coverage_level"):
            selective_risk_at(CONF, CORRECT, level)


# --- Summary, failures, edge cases ------------------------------------------------------------


def test_summary_counts_failures():
    summary = calibration_summary(CONF, CORRECT, n_bins=5)
    assert list(summary) == ["ece_equal_width", "ece_equal_mass", "brier", "aurc", "n", "n_failed", "accuracy"]
    assert summary["n"] == 5 and summary["n_failed"] == 1
    assert summary["accuracy"] == pytest.approx(60.0)  # 3 of 5, the failure counted as wrong
    assert summary["ece_equal_width"] == pytest.approx(27.5)
    assert summary["brier"] == pytest.approx(0.2125)
    assert summary["aurc"] == pytest.approx(_brute_force_aurc(CONF, CORRECT))
    nan_conf = calibration_summary([90, np.nan, float("nan")], [True, False, False])
    assert nan_conf["n_failed"] == 2 and nan_conf["accuracy"] == pytest.approx(100 / 3)


def test_all_failed_gives_nan_metrics():
    summary = calibration_summary([None, None, np.nan], [False, False, False])
    assert summary["n"] == 3 and summary["n_failed"] == 3 and summary["accuracy"] == 0.0
    for key in ("ece_equal_width", "ece_equal_mass", "brier", "aurc"):
        assert math.isnan(summary[key]), key
    coverage, risk = risk_coverage([None], [False])
    assert coverage.size == 0 and risk.size == 0


def test_empty_input_gives_nan_and_zero_counts():
    summary = calibration_summary([], [])
    assert summary["n"] == 0 and summary["n_failed"] == 0
    for key in ("ece_equal_width", "ece_equal_mass", "brier", "aurc", "accuracy"):
        assert math.isnan(summary[key]), key
    bins = reliability_bins([], [], binning="equal_mass")
    assert bins.count.size == 0


@pytest.mark.parametrize("bad", [-1, 100.5, float("inf"), -float("inf")])
def test_confidence_outside_0_100_is_rejected(bad):
    for function in (brier_score, aurc, expected_calibration_error, calibration_summary):
        with pytest.raises(ValueError, match=r"outside \[0, 100\]"):
            function([50, bad], [True, False])


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="equal length"):
        calibration_summary([50, 60], [True])
    with pytest.raises(ValueError, match="equal length"):
        brier_score([[50]], [[True]])
    with pytest.raises(ValueError, match="boolean"):
        brier_score([50, 60], [1, 2])
    with pytest.raises(ValueError, match="failed answer"):
        aurc([None, 60], [True, False])
    with pytest.raises(ValueError, match="binning"):
        expected_calibration_error([50], [True], binning="quantile")
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([50], [True], n_bins=0)


def test_deterministic_and_independent_of_order():
    conf, correct = _random_answers(7, 300, n_values=5)
    first = calibration_summary(conf, correct)
    assert calibration_summary(conf, correct) == first
    order = np.random.RandomState(1).permutation(len(conf))
    shuffled = calibration_summary([conf[i] for i in order], [correct[i] for i in order])
    for key, value in first.items():
        assert shuffled[key] == pytest.approx(value, abs=1e-9), key
