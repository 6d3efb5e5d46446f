"""Paired AUROC comparisons (reguide_tasks.metrics.paired): DeLong against a plain structural-components
computation, both tests against a brute-force paired permutation test, Holm, the pairing helper."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from reguide_tasks.metrics.paired import (
    align_paired,
    delong_mean_test,
    delong_test,
    holm,
    paired_bootstrap_auroc,
    significant,
)


def _psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def _plain_delong(is_id, a, b):
    """DeLong (1988) written out: psi over every ID x OoD pair, components, covariance; percent."""
    ids = [i for i, flag in enumerate(is_id) if flag]
    oods = [j for j, flag in enumerate(is_id) if not flag]
    m, n = len(ids), len(oods)
    v10, v01, theta = {}, {}, {}
    for name, s in (("a", a), ("b", b)):
        psi = [[_psi(s[i], s[j]) for j in oods] for i in ids]
        v10[name] = [sum(row) / n for row in psi]
        v01[name] = [sum(psi[r][c] for r in range(m)) / m for c in range(n)]
        theta[name] = sum(v10[name]) / m

    def cov(comp, size, r, s):
        return sum((comp[r][k] - theta[r]) * (comp[s][k] - theta[s]) for k in range(size)) / (size - 1)

    s10 = {(r, s): cov(v10, m, r, s) for r in "ab" for s in "ab"}
    s01 = {(r, s): cov(v01, n, r, s) for r in "ab" for s in "ab"}
    var = (s10["a", "a"] + s10["b", "b"] - 2 * s10["a", "b"]) / m + (s01["a", "a"] + s01["b", "b"] - 2 * s01["a", "b"]) / n
    se = math.sqrt(var)
    if se == 0:  # z and p undefined here; the caller checks only se
        return 100 * theta["a"], 100 * theta["b"], 0.0, math.nan, math.nan
    z = (theta["a"] - theta["b"]) / se
    p = math.erfc(abs(z) / math.sqrt(2))
    return 100 * theta["a"], 100 * theta["b"], 100 * se, z, p


def _correlated(rng, n_id, n_ood, levels):
    """Integer scores on ``levels`` with heavy ties; run b copies run a on about half the images."""
    is_id = np.r_[np.ones(n_id, bool), np.zeros(n_ood, bool)]
    shift = np.where(is_id, 1, 0)
    a = np.clip(rng.randint(0, len(levels) - 1, is_id.size) + shift, 0, len(levels) - 1)
    b = np.where(rng.rand(is_id.size) < 0.5, a, rng.randint(0, len(levels), is_id.size))
    levels = np.asarray(levels)
    return is_id, levels[a], levels[b]


@pytest.mark.parametrize("n_id, n_ood", [(2, 2), (5, 7), (20, 30), (60, 40)])
@pytest.mark.parametrize("levels", [(0, 50, 100), tuple(range(11))])
def test_delong_matches_plain_structural_components(n_id, n_ood, levels):
    rng = np.random.RandomState(n_id * 100 + n_ood + len(levels))
    checked = 0
    for _ in range(5):
        is_id, a, b = _correlated(rng, n_id, n_ood, levels)
        auroc_a, auroc_b, se, z, p = _plain_delong(is_id, a, b)
        result = delong_test(is_id, a, b)
        assert result.auroc_a == pytest.approx(auroc_a, abs=1e-9)
        assert result.auroc_b == pytest.approx(auroc_b, abs=1e-9)
        assert result.auroc_a == pytest.approx(100 * roc_auc_score(is_id, a), abs=1e-9)
        assert result.auroc_b == pytest.approx(100 * roc_auc_score(is_id, b), abs=1e-9)
        assert result.se == pytest.approx(se, abs=1e-6)
        assert (result.n_id, result.n_ood, result.method) == (n_id, n_ood, "delong")
        if se > 1e-9:
            checked += 1
            assert result.z == pytest.approx(z, abs=1e-6)
            assert result.p_value == pytest.approx(p, abs=1e-6)
            assert result.ci_low == pytest.approx(result.delta - 1.959963984540054 * se, abs=1e-6)
            assert result.ci_high == pytest.approx(result.delta + 1.959963984540054 * se, abs=1e-6)
    assert checked >= 3 or n_id == 2


def _permutation_p(is_id, a, b, n_perm=4000, seed=0):
    """Two-sided paired permutation p-value of auroc(a) - auroc(b): swap a/b per image.

    Exact enumeration of all 2**n swaps for n <= 14, else ``n_perm`` random swap patterns (the
    observed pattern included)."""
    n = is_id.size
    if n <= 14:
        swaps = np.array(list(itertools.product((False, True), repeat=n)))
    else:
        swaps = np.random.default_rng(seed).random((n_perm, n)) < 0.5
        swaps[0] = False
    pa, pb = np.where(swaps, b, a), np.where(swaps, a, b)

    def aurocs(s):
        x, y = s[:, is_id][:, :, None], s[:, ~is_id][:, None, :]
        return ((x > y) + 0.5 * (x == y)).mean(axis=(1, 2))

    deltas = aurocs(pa) - aurocs(pb)
    observed = abs(aurocs(a[None])[0] - aurocs(b[None])[0])
    return float(np.mean(np.abs(deltas) >= observed - 1e-12))


def _case(seed, n_id, n_ood, same):
    """a separates ID from OoD on {0, 50, 100}; b is a's twin (same) or mostly uninformative."""
    rng = np.random.RandomState(seed)
    is_id = np.r_[np.ones(n_id, bool), np.zeros(n_ood, bool)]
    good = np.where(is_id, rng.choice([50, 100, 100, 100], is_id.size), rng.choice([0, 0, 0, 50, 100], is_id.size))
    if same:
        other = np.where(is_id, rng.choice([50, 100, 100, 100], is_id.size), rng.choice([0, 0, 0, 50, 100], is_id.size))
        return is_id, good, np.where(rng.rand(is_id.size) < 0.5, good, other)
    return is_id, good, rng.choice([0, 50, 100], is_id.size)


_SMALL_ID = np.r_[np.ones(7, bool), np.zeros(7, bool)]
_SMALL_A = np.array([100, 100, 100, 100, 100, 50, 100, 0, 0, 0, 50, 0, 0, 100])


@pytest.mark.parametrize(
    "case, differ",
    [
        ((_SMALL_ID, _SMALL_A, np.array([0, 50, 0, 100, 0, 0, 50, 100, 100, 50, 100, 100, 50, 0])), True),
        ((_SMALL_ID, _SMALL_A, np.array([100, 50, 100, 100, 0, 50, 100, 0, 50, 0, 50, 0, 0, 100])), False),
        (_case(1, 25, 30, same=False), True),
        (_case(0, 40, 20, same=False), True),
        (_case(0, 7, 7, same=True), False),
        (_case(1, 25, 30, same=True), False),
        (_case(2, 40, 20, same=True), False),
    ],
)
def test_delong_and_bootstrap_agree_with_a_paired_permutation_test(case, differ):
    """The check: a brute-force paired permutation test (swap the two runs' scores per image; exact
    enumeration of all 2**14 swaps for 14 images, 4000 fixed-seed swap patterns otherwise) gives a
    p-value for the AUROC difference. Where it is < 0.01, DeLong and the paired bootstrap must both
    give p < 0.05; where it is > 0.2, both must give p > 0.05. Cases on {0, 50, 100} (heavy ties):
    two hand-made 7 + 7 ones, and random ones where run a separates ID from OoD and run b is noise
    or a's noisy twin; each case first asserts which side of the permutation thresholds it is on."""
    is_id, a, b = case
    perm_p = _permutation_p(is_id, a, b)
    delong_p = delong_test(is_id, a, b).p_value
    boot_p = paired_bootstrap_auroc(is_id, a, b, n_boot=2000, seed=0).p_value
    if differ:
        assert perm_p < 0.01, f"case no longer a clear difference: permutation p = {perm_p}"
        assert delong_p < 0.05 and boot_p < 0.05, (perm_p, delong_p, boot_p)
    else:
        assert perm_p > 0.2, f"case no longer a null case: permutation p = {perm_p}"
        assert delong_p > 0.05 and boot_p > 0.05, (perm_p, delong_p, boot_p)


def test_bootstrap_is_deterministic_for_a_seed_and_agrees_with_delong_roughly():
    rng = np.random.RandomState(7)
    is_id, a, b = _correlated(rng, 300, 200, (0, 50, 100))
    first = paired_bootstrap_auroc(is_id, a, b, n_boot=3000, seed=3)
    assert first == paired_bootstrap_auroc(is_id, a, b, n_boot=3000, seed=3)
    assert first != paired_bootstrap_auroc(is_id, a, b, n_boot=3000, seed=4)
    dl = delong_test(is_id, a, b)
    assert (first.auroc_a, first.auroc_b, first.delta) == (dl.auroc_a, dl.auroc_b, dl.delta)
    assert first.auroc_a == pytest.approx(100 * roc_auc_score(is_id, a), abs=1e-9)
    assert first.se == pytest.approx(dl.se, rel=0.15)  # large samples: bootstrap SD ~ DeLong SE
    assert first.ci_low <= first.delta <= first.ci_high
    assert first.method == "paired bootstrap"


def test_degenerate_inputs():
    identical = delong_test([1, 1, 0, 0], [100, 50, 50, 0], [100, 50, 50, 0])
    assert (identical.delta, identical.se, identical.z, identical.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (identical.ci_low, identical.ci_high) == (0.0, 0.0)
    perfect = delong_test([1, 1, 0, 0], [100, 100, 0, 0], [9, 8, 2, 1])
    assert (perfect.delta, perfect.se, perfect.p_value) == (0.0, 0.0, 1.0)
    constant = delong_test([1, 1, 0, 0], [100, 100, 0, 0], [50, 50, 50, 50])
    assert (constant.delta, constant.se, constant.z, constant.p_value) == (50.0, 0.0, math.inf, 0.0)
    for test in (delong_test, paired_bootstrap_auroc):
        empty = test([True, True], [1, 2], [2, 1])
        assert (empty.n_id, empty.n_ood) == (2, 0)
        assert all(math.isnan(v) for v in empty[:8])
        with pytest.raises(ValueError, match="failure policy"):
            test([1, 0], [1.0, float("nan")], [1.0, 0.0])
        with pytest.raises(ValueError, match="failure policy"):
            test([1, 0], [1.0, 0.0], [float("nan"), 0.0])
        with pytest.raises(ValueError, match="length"):
            test([1, 0, 1], [1.0, 0.0], [1.0, 0.0])
    single = delong_test([1, 0, 0], [1, 1, 0], [1, 0, 0])
    assert single.delta == -25.0 and math.isnan(single.se) and math.isnan(single.p_value)
    assert paired_bootstrap_auroc([1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], n_boot=50).p_value == 1.0


def test_holm_hand_computed():
    # sorted: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1) -> 0.02, 0.03, 0.06, max(0.06, 0.04)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=0, atol=1e-15)
    np.testing.assert_allclose(holm([0.5, 0.4, 0.9]), [1.0, 1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(holm([0.2]), [0.2])
    assert holm([]).shape == (0,)
    nan = float("nan")
    # NaN passed through and not counted: m = 2
    np.testing.assert_allclose(holm([0.02, nan, 0.01, nan]), [0.02, nan, 0.02, nan], equal_nan=True)
    assert np.isnan(holm([nan, nan])).all()
    with pytest.raises(ValueError):
        holm([0.1, 1.5])
    rejected = significant(holm([0.01, 0.04, 0.03, 0.005, nan]))
    assert rejected.tolist() == [True, False, False, True, False]
    assert significant([0.05], alpha=0.05).tolist() == [True]


def test_holm_is_monotone_in_the_raw_p_values():
    p = np.random.RandomState(0).rand(30) ** 3
    adjusted = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(adjusted >= p) and np.all(adjusted <= 1)


def test_align_paired_reports_unpaired_documents():
    paired = align_paired({"x": 1, "y": 0, "z": 0}, {"y": 50.0, "x": 100.0, "q": 3.0}, {"x": 0.0, "y": 0.0, "z": 1.0})
    assert paired.keys == ("y", "x")
    assert paired.is_id.tolist() == [False, True]
    assert paired.scores_a.tolist() == [50.0, 100.0] and paired.scores_b.tolist() == [0.0, 0.0]
    assert (paired.only_a, paired.only_b, paired.n_only_a, paired.n_only_b) == (("q",), ("z",), 1, 1)
    with pytest.raises(ValueError, match="is_id"):
        align_paired({"x": 1}, {"x": 1.0, "y": 2.0}, {"x": 1.0, "y": 2.0})


def test_delong_is_fast_on_4000_images():
    rng = np.random.RandomState(0)
    is_id, a, b = _correlated(rng, 2000, 2000, tuple(range(0, 101, 10)))
    delong_test(is_id, a, b)
    start = time.perf_counter()
    for _ in range(5):
        delong_test(is_id, a, b)
    assert (time.perf_counter() - start) / 5 < 0.1


def _plain_delong_mean(id_a, id_b, ood):
    """The near / far contrast written out: mean over datasets of AUROC_a - AUROC_b; per ID image the
    mean of its V10 differences, per OoD image its V01 difference / D; sample variances per part."""
    datasets = list(ood)
    D, m = len(datasets), len(id_a)
    id_part = [0.0] * m
    var, thetas = 0.0, {"a": 0.0, "b": 0.0}
    for d in datasets:
        oa, ob = ood[d]
        n = len(oa)
        comps = {}
        for name, ids, oods in (("a", id_a, oa), ("b", id_b, ob)):
            psi = [[_psi(x, y) for y in oods] for x in ids]
            comps[name] = ([sum(row) / n for row in psi], [sum(psi[r][c] for r in range(m)) / m for c in range(n)])
            thetas[name] += sum(comps[name][0]) / m / D
        for i in range(m):
            id_part[i] += (comps["a"][0][i] - comps["b"][0][i]) / D
        e = [(comps["a"][1][j] - comps["b"][1][j]) / D for j in range(n)]
        mean_e = sum(e) / n
        var += sum((x - mean_e) ** 2 for x in e) / (n - 1) / n
    mean_c = sum(id_part) / m
    var += sum((x - mean_c) ** 2 for x in id_part) / (m - 1) / m
    return 100 * thetas["a"], 100 * thetas["b"], 100 * math.sqrt(var)


@pytest.mark.parametrize("seed", range(4))
def test_delong_mean_matches_the_contrast_written_out(seed):
    """near / far: the group-mean difference's SE equals the plain structural-components contrast."""
    rng = np.random.RandomState(seed)
    levels = np.array([0, 50, 100])
    id_a = levels[rng.randint(1, 3, 15)]
    id_b = np.where(rng.rand(15) < 0.5, id_a, levels[rng.randint(0, 3, 15)])
    ood = {}
    for d, n in (("x", 9), ("y", 12), ("z", 6)):
        oa = levels[rng.randint(0, 2, n)]
        ood[d] = (oa, np.where(rng.rand(n) < 0.5, oa, levels[rng.randint(0, 3, n)]))
    result = delong_mean_test(id_a, id_b, ood)
    want_a, want_b, want_se = _plain_delong_mean(list(id_a), list(id_b), {d: (list(a), list(b)) for d, (a, b) in ood.items()})
    assert result.auroc_a == pytest.approx(want_a, abs=1e-9) and result.auroc_b == pytest.approx(want_b, abs=1e-9)
    assert result.se == pytest.approx(want_se, abs=1e-6)
    single = delong_mean_test(id_a, id_b, {"x": ood["x"]})
    plain = delong_test(np.r_[np.ones(15, bool), np.zeros(9, bool)], np.r_[id_a, ood["x"][0]], np.r_[id_b, ood["x"][1]])
    assert single.se == pytest.approx(plain.se, abs=1e-9) and single.p_value == pytest.approx(plain.p_value, abs=1e-9)
