"""Paired significance of AUROC differences: two runs (e.g. two prompts or models) scored on the
same images, compared by DeLong's test or a paired stratified bootstrap, with Holm's correction
for many comparisons. Pure numpy / scipy; AUROCs follow :func:`reguide_tasks.metrics.ood.auroc`
(percent, ID positive, higher score = more in-distribution, ties count half).

Why one module of this length: the two tests, the multiple-comparison correction and the pairing
helper are used together by the report, and most lines are their docstrings.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm, rankdata

from reguide_tasks.metrics.bootstrap import value_counts
from reguide_tasks.metrics.ood import auroc, auroc_from_counts

_Z95 = float(norm.ppf(0.975))


class PairedAUROCTest(NamedTuple):
    """Result of a paired AUROC comparison; AUROCs, ``delta``, ``se`` and CI bounds in percent."""

    auroc_a: float
    auroc_b: float
    delta: float
    se: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    n_id: int
    n_ood: int
    method: str


def _validate(
    is_id: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(is_id)
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    if labels.ndim != 1 or a.ndim != 1 or b.ndim != 1:
        shapes = f"{labels.shape}, {a.shape}, {b.shape}"
        raise ValueError(f"is_id, scores_a and scores_b must be 1-D, got shapes {shapes}")
    if not labels.shape == a.shape == b.shape:
        raise ValueError(f"is_id, scores_a and scores_b differ in length: {labels.size}, {a.size}, {b.size}")
    if labels.dtype != bool:
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise ValueError("is_id must be boolean (or 0/1): True/1 marks an ID image")
        labels = labels.astype(bool)
    for name, values in (("scores_a", a), ("scores_b", b)):
        if np.isnan(values).any():
            raise ValueError(
                f"{int(np.isnan(values).sum())} of {values.size} {name} are NaN: apply a failure policy "
                "(reguide_tasks.answers.scoring.apply_failure_policy) to both runs before comparing them"
            )
        if np.isinf(values).any():
            raise ValueError(f"{name} must be finite (got +/-inf)")
    return labels, a, b


def _undefined(
    method: str, n_id: int, n_ood: int, auroc_a: float = math.nan, auroc_b: float = math.nan
) -> PairedAUROCTest:
    nan = math.nan
    return PairedAUROCTest(auroc_a, auroc_b, auroc_a - auroc_b, nan, nan, nan, nan, nan, n_id, n_ood, method)


def _placements(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Structural components (DeLong's V10, V01), times 2 * n_ood and 2 * n_id: exact integers.

    V10 of an ID image is the share of OoD images it beats (ties half); V01 of an OoD image the
    share of ID images that beat it. Via midranks (Sun & Xu 2014): the midrank of an ID score among
    all scores minus its midrank among the ID scores counts the OoD scores below it, ties half.
    """
    pooled = rankdata(values)
    within_id = rankdata(values[labels])
    within_ood = rankdata(values[~labels])
    n_id, n_ood = within_id.size, within_ood.size
    v10 = 2 * (pooled[labels] - within_id)  # 2 * (# OoD below + # OoD equal / 2)
    v01 = 2 * n_id - 2 * (pooled[~labels] - within_ood)  # 2 * (# ID above + # ID equal / 2)
    return v10 / (2 * n_ood), v01 / (2 * n_id)


def _diff_variance(d: np.ndarray) -> float:
    """Sample variance (ddof=1) of a component difference; exactly 0 when every entry is equal."""
    if np.ptp(d) == 0:
        return 0.0
    return float(np.var(d, ddof=1))


def _normal_result(
    auroc_a: float,
    auroc_b: float,
    se: float,
    n_id: int,
    n_ood: int,
    method: str,
    ci: tuple[float, float] | None = None,
    p_value: float | None = None,
) -> PairedAUROCTest:
    """The result from the point AUROCs and the SE of their difference; normal CI / p unless given."""
    delta = auroc_a - auroc_b
    if math.isnan(se) or se > 0:
        z = delta / se
    elif delta == 0:
        z = 0.0
    else:
        z = math.copysign(math.inf, delta)
    if p_value is None:
        p_value = 1.0 if delta == 0 and not math.isnan(se) else float(2 * norm.sf(abs(z)))
    if ci is None:
        ci = (delta - _Z95 * se, delta + _Z95 * se)
    return PairedAUROCTest(auroc_a, auroc_b, delta, se, z, p_value, ci[0], ci[1], n_id, n_ood, method)


def delong_test(is_id: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike) -> PairedAUROCTest:
    """DeLong's test of the difference of two correlated AUROCs, on the same images.

    ``scores_a[i]`` and ``scores_b[i]`` are two runs' OoD scores S of image ``i`` (higher = more
    in-distribution); the AUROC has ID as the positive class, as :func:`reguide_tasks.metrics.ood.auroc`.

    Parameters
    ----------
    is_id : array-like of shape (n_samples,)
        True (or 1) for ID images, False (or 0) for OoD images.
    scores_a : array-like of shape (n_samples,)
        Scores of run A, finite.
    scores_b : array-like of shape (n_samples,)
        Scores of run B on the same images, in the same order, finite.

    Returns
    -------
    result : PairedAUROCTest
        ``auroc_a``, ``auroc_b`` (percent, from :func:`~reguide_tasks.metrics.ood.auroc`),
        ``delta = auroc_a - auroc_b`` (percentage points), ``se`` of ``delta`` (pp), ``z = delta / se``,
        two-sided normal ``p_value``, 95% normal CI ``ci_low``, ``ci_high`` of ``delta`` (pp),
        ``n_id``, ``n_ood`` and ``method="delong"``.

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``is_id`` is not boolean / 0-1, or a score is NaN
        (apply a failure policy to both runs first) or infinite.

    See Also
    --------
    paired_bootstrap_auroc : The same comparison by a paired, stratified bootstrap.
    holm : Adjust the p-values of many comparisons.

    Notes
    -----
    DeLong, DeLong & Clarke-Pearson (1988), computed from midranks (Sun & Xu, 2014) in
    O(n log n). The structural components of run r are
    ``V10_r[i] = mean_j psi(x_ri, y_rj)`` over the OoD images ``j`` for each ID image ``i`` and
    ``V01_r[j] = mean_i psi(x_ri, y_rj)`` for each OoD image ``j``, with the Mann-Whitney kernel
    ``psi(x, y) = 1, 1/2, 0`` for ``x > y, x == y, x < y``: ties are exact, no tie-breaking. With
    ``S10``, ``S01`` the 2 x 2 sample covariances (ddof=1) of the components,
    ``var(delta) = (S10_aa + S10_bb - 2 S10_ab) / n_id + (S01_aa + S01_bb - 2 S01_ab) / n_ood``
    (times 100**2 for percent).

    Degenerate cases, by choice:

    - A side empty: everything NaN except the counts (and ``delta``, NaN too).
    - Fewer than 2 images on a side: the AUROCs and ``delta`` are given, the covariance is undefined
      and ``se``, ``z``, ``p_value`` and the CI are NaN.
    - Zero variance (e.g. identical score vectors, or both runs perfect): ``se = 0`` and the CI is
      ``[delta, delta]``; if ``delta == 0`` then ``z = 0`` and ``p_value = 1``; otherwise (e.g.
      one run perfect, the other constant) ``z = +/-inf`` and ``p_value = 0``, the formula's
      limit. With so little spread the normal approximation means little: prefer
      :func:`paired_bootstrap_auroc` or a permutation test there.

    Examples
    --------
    >>> from reguide_tasks.metrics.paired import delong_test
    >>> is_id = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    >>> a = [100, 100, 100, 100, 50, 0, 0, 0, 0, 0, 50, 100]
    >>> b = [100, 0, 100, 0, 50, 0, 100, 0, 0, 100, 50, 100]
    >>> r = delong_test(is_id, a, b)
    >>> round(r.auroc_a, 2), round(r.auroc_b, 2), round(r.delta, 2), round(r.se, 2)
    (79.17, 40.28, 38.89, 16.57)
    >>> round(r.z, 3), round(r.p_value, 4), round(r.ci_low, 2), round(r.ci_high, 2), r.method
    (2.346, 0.019, 6.4, 71.37, 'delong')
    >>> delong_test(is_id, a, a)[2:6]  # identical runs: delta, se, z, p_value
    (0.0, 0.0, 0.0, 1.0)
    """
    labels, a, b = _validate(is_id, scores_a, scores_b)
    n_id, n_ood = int(labels.sum()), int((~labels).sum())
    if n_id == 0 or n_ood == 0:
        return _undefined("delong", n_id, n_ood)
    auroc_a, auroc_b = auroc(labels, a), auroc(labels, b)
    if n_id < 2 or n_ood < 2:
        return _undefined("delong", n_id, n_ood, auroc_a, auroc_b)
    v10_a, v01_a = _placements(a, labels)
    v10_b, v01_b = _placements(b, labels)
    variance = _diff_variance(v10_a - v10_b) / n_id + _diff_variance(v01_a - v01_b) / n_ood
    return _normal_result(auroc_a, auroc_b, 100.0 * math.sqrt(variance), n_id, n_ood, "delong")


def delong_mean_test(
    id_a: ArrayLike, id_b: ArrayLike, ood: Mapping[str, tuple[ArrayLike, ArrayLike]]
) -> PairedAUROCTest:
    """DeLong's test for the difference of two runs' mean AUROC over several OoD datasets.

    The near / far figures of OpenOOD are unweighted means of per-dataset AUROCs that share one set
    of ID images. Their difference between two runs scored on the same images is a linear contrast
    of correlated AUROCs, and DeLong's structural components give its variance exactly: per ID image
    the mean over datasets of its V10 differences, per OoD image of dataset ``d`` its V01 difference
    divided by the number of datasets; the datasets' OoD images are independent of one another.

    Parameters
    ----------
    id_a, id_b : array-like of shape (n_id,)
        The two runs' OoD scores of the same ID images, in the same order (higher = more ID).
    ood : mapping of str to (array-like, array-like)
        Per OoD dataset, the two runs' scores of its images, in the same order.

    Returns
    -------
    result : PairedAUROCTest
        ``auroc_a`` / ``auroc_b`` are the runs' mean AUROCs (percent), ``delta`` their difference
        with its standard error, normal 95% CI and two-sided p-value; ``n_ood`` counts the OoD
        images of every dataset; ``method`` is ``"delong (mean)"``. One dataset gives exactly
        :func:`delong_test`. A dataset with an empty side makes the result undefined (NaN), as it
        makes the group mean NaN in the metrics.

    Examples
    --------
    >>> r = delong_mean_test([90, 80, 70], [60, 80, 40], {"x": ([10, 75, 85], [50, 90, 30]), "y": ([0, 0], [0, 0])})
    >>> round(r.auroc_a, 2), round(r.auroc_b, 2), round(r.delta, 2)
    (83.33, 77.78, 5.56)
    >>> one = delong_mean_test([3, 1, 2], [2, 1, 3], {"x": ([0, 2], [1, 0])})
    >>> two = delong_test([1, 1, 1, 0, 0], [3, 1, 2, 0, 2], [2, 1, 3, 1, 0])
    >>> abs(one.se - two.se) < 1e-12 and abs(one.delta - two.delta) < 1e-12
    True
    """
    method = "delong (mean)"
    datasets = list(ood)
    n_id = int(np.asarray(id_a).size)
    n_ood = sum(int(np.asarray(pair[0]).size) for pair in ood.values())
    if not datasets:
        return _undefined(method, n_id, n_ood)
    id_part = np.zeros(n_id)
    variance = 0.0
    aurocs_a, aurocs_b = [], []
    for dataset in datasets:
        ood_a, ood_b = ood[dataset]
        n_d = int(np.asarray(ood_a).size)
        labels = np.r_[np.ones(n_id, bool), np.zeros(n_d, bool)]
        labels, a, b = _validate(labels, np.r_[np.asarray(id_a, float), np.asarray(ood_a, float)], np.r_[np.asarray(id_b, float), np.asarray(ood_b, float)])
        if n_id == 0 or n_d == 0:
            return _undefined(method, n_id, n_ood)
        aurocs_a.append(auroc(labels, a))
        aurocs_b.append(auroc(labels, b))
        if n_id < 2 or n_d < 2:
            return _undefined(method, n_id, n_ood, float(np.mean(aurocs_a)), float(np.mean(aurocs_b)))
        v10_a, v01_a = _placements(a, labels)
        v10_b, v01_b = _placements(b, labels)
        id_part += (v10_a - v10_b) / len(datasets)
        variance += _diff_variance((v01_a - v01_b) / len(datasets)) / n_d
    variance += _diff_variance(id_part) / n_id
    return _normal_result(float(np.mean(aurocs_a)), float(np.mean(aurocs_b)), 100.0 * math.sqrt(variance), n_id, n_ood, method)


def paired_bootstrap_auroc(
    is_id: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike, n_boot: int = 2000, seed: int = 0
) -> PairedAUROCTest:
    """Paired, stratified bootstrap of the difference of two AUROCs on the same images.

    Each replicate resamples the ID images and the OoD images separately, with replacement and at
    their own sizes, and uses the SAME resampled images for both runs, so the correlation of the two
    runs is kept.

    Parameters
    ----------
    is_id : array-like of shape (n_samples,)
        True (or 1) for ID images, False (or 0) for OoD images.
    scores_a : array-like of shape (n_samples,)
        Scores of run A (higher = more in-distribution), finite.
    scores_b : array-like of shape (n_samples,)
        Scores of run B on the same images, in the same order, finite.
    n_boot : int, default=2000
        Number of replicates, >= 1.
    seed : int, default=0
        Seed of the random streams; the result is deterministic for a seed.

    Returns
    -------
    result : PairedAUROCTest
        As :func:`delong_test`, with ``method="paired bootstrap"``: the point values come from the
        full data, ``se`` is the standard deviation (ddof=1) of the replicates' ``delta``,
        ``z = delta / se``, and ``ci_low``, ``ci_high`` are the 2.5 and 97.5 percentiles of the
        replicates' ``delta``.

    Raises
    ------
    ValueError
        If ``n_boot < 1``, or for the inputs listed under :func:`delong_test`.

    See Also
    --------
    delong_test : The normal-theory test, no resampling.

    Notes
    -----
    The two-sided p-value is ``min(1, 2 * min(P(delta* <= 0), P(delta* >= 0)))`` over the
    replicates ``delta*``: twice the share of replicates on the far side of zero from the
    majority (replicates at exactly 0 count on both sides, so many ties with 0 give a large p).
    Its resolution is ``2 / n_boot``; 0 means no replicate reached 0. ``z`` follows
    :func:`delong_test`'s rules for ``se = 0``; the p-value does not use it.

    Each replicate's AUROCs come from per-value counts
    (:func:`~reguide_tasks.metrics.ood.auroc_from_counts`, ties counted half). A side empty gives
    NaNs, as in :func:`delong_test`; a side of one image is fine (it is resampled as it is).

    Examples
    --------
    The data of :func:`delong_test`'s example:

    >>> from reguide_tasks.metrics.paired import paired_bootstrap_auroc
    >>> is_id = [True] * 6 + [False] * 6
    >>> a, b = [100] * 4 + [50, 0, 0, 0, 0, 0, 50, 100], [100, 0, 100, 0, 50, 0, 100, 0, 0, 100, 50, 100]
    >>> r = paired_bootstrap_auroc(is_id, a, b, n_boot=500, seed=1)
    >>> round(r.delta, 2), r.method, r == paired_bootstrap_auroc(is_id, a, b, n_boot=500, seed=1)
    (38.89, 'paired bootstrap', True)
    >>> bool(r.ci_low < r.delta < r.ci_high), bool(r.p_value < 0.1)
    (True, True)
    >>> paired_bootstrap_auroc(is_id, a, a, n_boot=100).p_value
    1.0
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    labels, a, b = _validate(is_id, scores_a, scores_b)
    n_id, n_ood = int(labels.sum()), int((~labels).sum())
    method = "paired bootstrap"
    if n_id == 0 or n_ood == 0:
        return _undefined(method, n_id, n_ood)
    auroc_a, auroc_b = auroc(labels, a), auroc(labels, b)

    codes = []  # per run: (ID codes, OoD codes, number of values)
    for values in (a, b):
        uniques, code = np.unique(values, return_inverse=True)
        codes.append((code[labels], code[~labels], uniques.size))
    id_stream, ood_stream = np.random.SeedSequence(seed).spawn(2)
    id_rng, ood_rng = np.random.default_rng(id_stream), np.random.default_rng(ood_stream)
    deltas = np.empty(n_boot)
    chunk = int(np.clip(4_000_000 // max(n_id, n_ood, codes[0][2], codes[1][2]), 1, 500))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        id_pick = id_rng.integers(0, n_id, (size, n_id))
        ood_pick = ood_rng.integers(0, n_ood, (size, n_ood))
        run_a, run_b = (
            auroc_from_counts(value_counts(id_codes[id_pick], n_values), value_counts(ood_codes[ood_pick], n_values))
            for id_codes, ood_codes, n_values in codes
        )
        deltas[start : start + size] = run_a - run_b

    p_value = min(1.0, 2.0 * min(float(np.mean(deltas <= 0)), float(np.mean(deltas >= 0))))
    se = _diff_variance(deltas) ** 0.5 if n_boot > 1 else math.nan
    low, high = np.percentile(deltas, [2.5, 97.5])
    ci = (float(low), float(high))
    return _normal_result(auroc_a, auroc_b, se, n_id, n_ood, method, ci=ci, p_value=p_value)


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down), in the input's order.

    Parameters
    ----------
    p_values : array-like of shape (m,)
        Unadjusted p-values in [0, 1]; NaN marks a comparison that could not be made.

    Returns
    -------
    adjusted : ndarray of shape (m,)
        Adjusted p-values, capped at 1; NaN where the input is NaN.

    Raises
    ------
    ValueError
        If the input is not 1-D or a p-value is outside [0, 1].

    See Also
    --------
    significant : Which adjusted p-values reject at a level.

    Notes
    -----
    With the k valid (non-NaN) p-values sorted ascending, ``p_(1) <= ... <= p_(k)``, the adjusted
    value of ``p_(i)`` is ``min(1, max_{j <= i} (k - j + 1) * p_(j))``: monotone in the unadjusted
    p-values. NaN p-values are passed through and NOT counted in the number of tests ``k``;
    count them yourself (e.g. as 1.0) if an undefined comparison should still cost power.
    Rejecting where ``adjusted <= alpha`` controls the family-wise error rate at ``alpha``
    (Holm, 1979).

    Examples
    --------
    >>> from reguide_tasks.metrics.paired import holm
    >>> holm([0.01, 0.04, 0.03, 0.005])
    array([0.03, 0.06, 0.06, 0.02])
    >>> holm([0.02, float("nan"), 0.5])
    array([0.04, nan, 0.5 ])
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    valid = ~np.isnan(p)
    if ((p[valid] < 0) | (p[valid] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    adjusted = np.full(p.shape, np.nan)
    k = int(valid.sum())
    if k:
        order = np.argsort(p[valid], kind="stable")
        steps = np.maximum.accumulate((k - np.arange(k)) * p[valid][order])
        values = np.empty(k)
        values[order] = np.minimum(steps, 1.0)
        adjusted[valid] = values
    return adjusted


def significant(p_adjusted: ArrayLike, alpha: float = 0.05) -> np.ndarray:
    """Which (adjusted) p-values reject at level ``alpha``: ``p <= alpha``; NaN never rejects.

    Parameters
    ----------
    p_adjusted : array-like
        P-values, typically from :func:`holm`.
    alpha : float, default=0.05
        Family-wise error level, in (0, 1).

    Returns
    -------
    rejected : ndarray of bool, same shape as ``p_adjusted``

    Examples
    --------
    >>> from reguide_tasks.metrics.paired import holm, significant
    >>> significant(holm([0.01, 0.04, 0.03, 0.005, float("nan")]))
    array([ True, False, False,  True, False])
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = np.asarray(p_adjusted, dtype=float)
    return np.where(np.isnan(p), False, p <= alpha)


@dataclass(frozen=True)
class PairedScores:
    """Two runs' scores on the documents both scored, in one order, ready for the paired tests.

    ``keys``, ``is_id``, ``scores_a`` and ``scores_b`` are aligned; ``only_a`` / ``only_b`` list
    the keys scored by one run only (dropped from the comparison).
    """

    keys: tuple
    is_id: np.ndarray
    scores_a: np.ndarray
    scores_b: np.ndarray
    only_a: tuple
    only_b: tuple

    @property
    def n_only_a(self) -> int:
        return len(self.only_a)

    @property
    def n_only_b(self) -> int:
        return len(self.only_b)


def align_paired(
    is_id: Mapping[Hashable, bool], scores_a: Mapping[Hashable, float], scores_b: Mapping[Hashable, float]
) -> PairedScores:
    """Pair two runs by document key.

    Parameters
    ----------
    is_id : mapping of key to bool
        Document key -> True for an ID image, False for an OoD image. May hold more keys than
        the runs.
    scores_a : mapping of key to float
        Document key -> score of run A (higher = more in-distribution).
    scores_b : mapping of key to float
        Document key -> score of run B.

    Returns
    -------
    paired : PairedScores
        The documents scored by both runs, in the order of ``scores_a``, with their labels and both
        scores as arrays; ``only_a`` / ``only_b`` (and ``n_only_a`` / ``n_only_b``) the keys scored
        by one run only, in the order of that run.

    Raises
    ------
    ValueError
        If a key scored by both runs has no entry in ``is_id``.

    Notes
    -----
    Scores are passed through (NaN included): the tests reject NaN, so apply the failure policy to
    both runs first; dropping a document that failed in one run is a choice to make and report
    there, not here.

    Examples
    --------
    >>> from reguide_tasks.metrics.paired import align_paired
    >>> p = align_paired({"x": True, "y": False, "z": False, "w": True},
    ...                  {"x": 100, "y": 0, "w": 50}, {"z": 50, "y": 100, "x": 0})
    >>> p.keys, p.is_id, p.scores_a, p.scores_b
    (('x', 'y'), array([ True, False]), array([100.,   0.]), array([  0., 100.]))
    >>> p.only_a, p.only_b
    (('w',), ('z',))
    """
    keys = tuple(k for k in scores_a if k in scores_b)
    unlabelled = [k for k in keys if k not in is_id]
    if unlabelled:
        raise ValueError(f"{len(unlabelled)} paired documents have no is_id entry, e.g. {unlabelled[:3]!r}")
    return PairedScores(
        keys=keys,
        is_id=np.array([bool(is_id[k]) for k in keys], dtype=bool),
        scores_a=np.array([scores_a[k] for k in keys], dtype=float),
        scores_b=np.array([scores_b[k] for k in keys], dtype=float),
        only_a=tuple(k for k in scores_a if k not in scores_b),
        only_b=tuple(k for k in scores_b if k not in scores_a),
    )
