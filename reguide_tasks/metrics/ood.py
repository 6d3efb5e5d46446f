"""OoD detection metrics (percent, 0-100) on top of scikit-learn.

Conventions
-----------
- ``scores`` (S) are OoD scores where HIGHER means MORE in-distribution (e.g. S_max, the max
  confidence over the ID classes).
- ``is_id`` is a boolean array: True for ID images, False for OoD images.
- Ties are common (LVLMs answer 100 or 0): ROC points are taken exactly as
  :func:`sklearn.metrics.roc_curve` returns them with ``drop_intermediate=False``; no
  interpolation, no random tie-breaking. :func:`auroc_from_counts` gives the same AUROC (the
  Mann-Whitney statistic, ties counted half) from per-value counts, for many resamples at once.

Edge cases
----------
- If either side (ID or OoD) is empty, or all its scores are NaN, the metric is undefined and
  ``float("nan")`` is returned; no exception.
- Otherwise NaN scores are not allowed: a ValueError is raised, since the caller must first apply a
  failure policy (:func:`reguide_tasks.answers.scoring.apply_failure_policy`). Infinite scores are rejected
  too (scikit-learn cannot rank them).

Why one module of this length: it is one short function per metric, plus the table; most of the
lines are the conventions and examples each metric's docstring states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from reguide_tasks.vocab import GROUPS
from reguide_tasks.vocab import OOD_METRICS as METRICS


def _prepare(is_id: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray] | None:
    """Validate a pair; return (is_id, scores) as arrays, or None when the metric is undefined."""
    labels = np.asarray(is_id)
    values = np.asarray(scores, dtype=float)
    if labels.ndim != 1 or values.ndim != 1:
        raise ValueError(f"is_id and scores must be 1-D, got shapes {labels.shape} and {values.shape}")
    if labels.shape != values.shape:
        raise ValueError(f"is_id and scores differ in length: {labels.size} vs {values.size}")
    if labels.dtype != bool:
        # Accept 0/1 integers, but never silently map other labels (e.g. 1/2 or -1/1) to bool.
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise ValueError("is_id must be boolean (or 0/1): True/1 marks an ID image")
        labels = labels.astype(bool)
    nan = np.isnan(values)
    id_nan, ood_nan = nan[labels], nan[~labels]
    for side, side_nan in (("ID", id_nan), ("OoD", ood_nan)):
        # A side that is entirely NaN has no usable scores (NaN result); a partly NaN side is a bug.
        if side_nan.any() and not side_nan.all():
            raise ValueError(
                f"{int(side_nan.sum())} of {side_nan.size} {side} scores are NaN: apply a failure "
                "policy (reguide_tasks.answers.scoring.apply_failure_policy) before computing metrics"
            )
    if id_nan.all() or ood_nan.all():  # also True for an empty side
        return None
    if np.isinf(values).any():
        raise ValueError("scores must be finite (got +/-inf)")
    return labels, values


def _check_level(level: float) -> None:
    if not 0.0 < level <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {level}")


def _fpr_at_first_tpr(positive: np.ndarray, scores: np.ndarray, level: float) -> float:
    """FPR at the first ROC point (in threshold order) whose TPR reaches ``level``."""
    fpr, tpr, _ = roc_curve(positive, scores, drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= level)]) * 100.0


def auroc_from_counts(id_counts: np.ndarray, ood_counts: np.ndarray) -> np.ndarray:
    """AUROC in percent from per-value score counts, for many resamples at once.

    The Mann-Whitney form of the AUROC, ``100 * (P(ID > OoD) + P(ID = OoD) / 2)``, with ID as the
    positive class and higher values more in-distribution, computed from how many ID / OoD scores
    take each distinct value. It equals :func:`auroc` (ties count half) but costs O(number of
    values) per AUROC and is vectorised over leading axes, which is what
    :func:`reguide_tasks.metrics.bootstrap.bootstrap_auroc` needs for thousands of resamples.

    There are deliberately two code paths: :func:`auroc` (exact scikit-learn) for the reported
    results, this one for the bootstrap; ``tests/test_doctests.py`` pins them together on random,
    heavily tied data (agreement within 1e-9).

    Parameters
    ----------
    id_counts : ndarray of shape (..., n_values)
        ``id_counts[..., v]``: how many ID scores take the v-th value. The values are in ascending
        order (as ``np.unique`` codes them); values absent on both sides may be left in.
    ood_counts : ndarray of shape (..., n_values)
        The same for the OoD scores, over the same values.

    Returns
    -------
    auroc : ndarray of shape (...)
        AUROC in percent, one per leading index: a (B, n_values) pair gives B AUROCs at once. A
        0-d array for 1-D input.

    See Also
    --------
    auroc : The same quantity from raw scores, via :func:`sklearn.metrics.roc_auc_score`.

    Notes
    -----
    Integer arithmetic up to one final division, so the result does not depend on extra zero
    columns. A side with no scores gives NaN (with a numpy ``RuntimeWarning``).

    Examples
    --------
    ID scores ``[60, 60, 90]`` and OoD scores ``[10, 60]`` over the values ``[10, 60, 90]``:

    >>> import numpy as np
    >>> from reguide_tasks.metrics.ood import auroc_from_counts
    >>> round(float(auroc_from_counts(np.array([0, 2, 1]), np.array([1, 1, 0]))), 2)
    83.33
    >>> auroc_from_counts(np.array([[0, 2, 1], [3, 0, 0]]), np.array([[1, 1, 0], [1, 1, 0]])).round(2)
    array([83.33, 25.  ])
    """
    below = np.cumsum(ood_counts, axis=-1) - ood_counts
    wins = (id_counts * (2 * below + ood_counts)).sum(axis=-1) / 2
    return 100.0 * wins / (id_counts.sum(axis=-1) * ood_counts.sum(axis=-1))


def auroc(is_id: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve in percent, with ID as the positive class and S as its score.

    ``scores`` (S) are higher for more in-distribution. The AUROC is symmetric: identical to the
    AUROC with OoD positive and -S as the score (OpenOOD's framing). 50 = random, 100 = perfect,
    0 = perfectly inverted.

    Parameters
    ----------
    is_id : array-like of shape (n_samples,)
        True (or 1) for ID images, the positive class; False (or 0) for OoD images.
    scores : array-like of shape (n_samples,)
        OoD scores S, higher = more in-distribution. Finite; NaN only for a whole side.

    Returns
    -------
    auroc : float
        AUROC in percent (0-100); NaN if undefined (either side empty or all NaN).

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``is_id`` is not boolean / 0-1, a side is
        partly NaN (apply a failure policy first) or a score is infinite.

    See Also
    --------
    auroc_from_counts : The same AUROC from per-value counts, for bootstrap resamples.
    fpr_at_95_openood : FPR at 95% TPR, OpenOOD's rule.

    Notes
    -----
    Computed with :func:`sklearn.metrics.roc_auc_score`. Ties count half (an ID and an OoD image
    with the same score are half a correctly ranked pair).

    Examples
    --------
    >>> from reguide_tasks.metrics.ood import auroc
    >>> is_id = [True, True, True, False, False]
    >>> scores = [90, 60, 60, 60, 10]
    >>> round(auroc(is_id, scores), 2)  # 4 of 6 pairs ranked right, 2 ties: (4 + 2/2) / 6
    83.33
    >>> auroc([1, 0], [50, 50])
    50.0
    >>> auroc([True, True], [1, 2])  # no OoD image: undefined
    nan
    """
    prepared = _prepare(is_id, scores)
    if prepared is None:
        return float("nan")
    labels, values = prepared
    return float(roc_auc_score(labels, values)) * 100.0


def fpr_at_95_openood(is_id: ArrayLike, scores: ArrayLike, *, tpr: float = 0.95) -> float:
    """FPR@95 by the OpenOOD v1.5 rule, in percent: OoD is the positive class.

    ``roc_curve(is_ood, -S)``; the FPR at the FIRST point (in threshold order) where TPR >= ``tpr``.
    It reads: the share of ID images flagged OoD when 95% of OoD images are caught. Lower is better.

    Parameters
    ----------
    is_id : array-like of shape (n_samples,)
        True (or 1) for ID images, False (or 0) for OoD images, the positive class of this rule.
    scores : array-like of shape (n_samples,)
        OoD scores S, higher = more in-distribution; ranked as -S.
    tpr : float, default=0.95
        The TPR level (share of OoD images caught), in (0, 1].

    Returns
    -------
    fpr : float
        Share of ID images flagged OoD, in percent (0-100); NaN if either side is empty or all NaN.

    Raises
    ------
    ValueError
        If ``tpr`` is not in (0, 1], or for the inputs listed under :func:`auroc`.

    See Also
    --------
    fpr_at_95_tpr : The classic rule, with ID as the positive class.

    Notes
    -----
    OpenOOD calls ``roc_curve`` with the default ``drop_intermediate=True``; this uses every
    threshold (``drop_intermediate=False``), so it can be lower than OpenOOD's value when the first
    point reaching the TPR lies on a straight stretch of the curve that sklearn drops (rare).
    Tied scores form one ROC point; there is no interpolation or random tie-breaking.

    Examples
    --------
    Catching both OoD images (threshold S <= 60) also flags the two ID images at 60:

    >>> from reguide_tasks.metrics.ood import fpr_at_95_openood
    >>> round(fpr_at_95_openood([True, True, True, False, False], [90, 60, 60, 60, 10]), 2)
    66.67
    >>> fpr_at_95_openood([True, True, False], [90, 60, 10], tpr=0.5)
    0.0
    """
    _check_level(tpr)
    prepared = _prepare(is_id, scores)
    if prepared is None:
        return float("nan")
    labels, values = prepared
    return _fpr_at_first_tpr(~labels, -values, tpr)


def fpr_at_95_tpr(is_id: ArrayLike, scores: ArrayLike, *, tpr: float = 0.95) -> float:
    """Classic FPR@95%TPR (MCM and most papers), in percent: ID is the positive class.

    ``roc_curve(is_id, S)``; the FPR at the FIRST point (in threshold order) where TPR >= ``tpr``.
    It reads: the share of OoD images accepted as ID when 95% of ID images are accepted. Lower is
    better.

    Parameters
    ----------
    is_id : array-like of shape (n_samples,)
        Boolean or 0/1: ID images (True), the positive class of this rule, and OoD images (False).
    scores : array-like of shape (n_samples,)
        S as it is (higher = more in-distribution) ranks the ID images first.
    tpr : float, default=0.95
        Share of ID images to accept, in (0, 1].

    Returns
    -------
    fpr : float
        Share of OoD images accepted as ID, in percent (0-100); NaN when a side has no usable score.

    Raises
    ------
    ValueError
        ``tpr`` outside (0, 1], or inputs that :func:`auroc` rejects.

    See Also
    --------
    fpr_at_95_openood : OpenOOD's rule, with OoD as the positive class.

    Notes
    -----
    With heavily tied scores it can differ a lot from :func:`fpr_at_95_openood`. Some
    implementations pick the point with TPR nearest to 0.95 instead of the first one reaching it.

    Examples
    --------
    Same data as in :func:`fpr_at_95_openood`, a different answer: accepting every ID image
    (threshold S >= 60) accepts one of the two OoD images.

    >>> from reguide_tasks.metrics.ood import fpr_at_95_tpr
    >>> fpr_at_95_tpr([True, True, True, False, False], [90, 60, 60, 60, 10])
    50.0
    """
    _check_level(tpr)
    prepared = _prepare(is_id, scores)
    if prepared is None:
        return float("nan")
    labels, values = prepared
    return _fpr_at_first_tpr(labels, values, tpr)


def fpr_tie_range(is_id: ArrayLike, scores: ArrayLike, *, rule: str = "openood", tpr: float = 0.95) -> tuple[float, float]:
    """How far a block of tied scores at the FPR@95 threshold could move the FPR, in percent.

    The FPR rules above stop at the first ROC point whose TPR reaches ``tpr``; every image whose
    score equals that point's threshold counts on the same side. Returns ``(low, high)``: the FPR of
    the ROC point just before (the tie block not yet taken) and the reported FPR (``high``). A
    tie-breaking order that took only part of the block would land anywhere in between, so a wide
    range (LVLMs answering 100.0 for many images of both sides) means the figure rests on the ties.
    ``rule``: ``"openood"`` (:func:`fpr_at_95_openood`) or ``"classic"`` (:func:`fpr_at_95_tpr`).
    ``(nan, nan)`` where the metric is undefined.

    >>> from reguide_tasks.metrics.ood import fpr_tie_range
    >>> fpr_tie_range([True] * 4 + [False] * 4, [100, 100, 100, 100, 100, 100, 100, 5], rule="classic")
    (0.0, 75.0)
    >>> fpr_tie_range([True, True, False, False], [90, 80, 20, 10], rule="classic")
    (0.0, 0.0)
    """
    if rule not in ("openood", "classic"):
        raise ValueError(f"rule must be 'openood' or 'classic', got {rule!r}")
    _check_level(tpr)
    prepared = _prepare(is_id, scores)
    if prepared is None:
        return (float("nan"), float("nan"))
    labels, values = prepared
    positive, ranked = (~labels, -values) if rule == "openood" else (labels, values)
    fpr, tpr_points, _ = roc_curve(positive, ranked, drop_intermediate=False)
    stop = int(np.argmax(tpr_points >= tpr))
    return (float(fpr[max(stop - 1, 0)]) * 100.0, float(fpr[stop]) * 100.0)


def aupr_in(is_id: ArrayLike, scores: ArrayLike) -> float:
    """AUPR-In in percent: average precision with ID as the positive class and S as the score.

    Higher S = more in-distribution. Its chance level is the ID share of the images.

    Parameters
    ----------
    is_id : array-like of shape (n_samples,)
        Boolean (or 0/1) mask of the ID images, the positive class here.
    scores : array-like of shape (n_samples,)
        S, used as is: higher = more in-distribution = more likely positive.

    Returns
    -------
    ap : float
        Average precision of ID retrieval in percent (0-100); NaN if either side is empty or all NaN.

    Raises
    ------
    ValueError
        Under the same conditions as :func:`auroc`.

    See Also
    --------
    aupr_out : The same with OoD as the positive class.

    Notes
    -----
    Uses :func:`sklearn.metrics.average_precision_score` (step-wise sum, ties grouped); OpenOOD
    integrates the PR curve with the trapezoid rule, which can differ slightly.

    Examples
    --------
    >>> from reguide_tasks.metrics.ood import aupr_in
    >>> round(aupr_in([True, True, True, False, False], [90, 60, 60, 60, 10]), 2)
    83.33
    >>> aupr_in([True, False], [90, 10])
    100.0
    """
    prepared = _prepare(is_id, scores)
    if prepared is None:
        return float("nan")
    labels, values = prepared
    return float(average_precision_score(labels, values)) * 100.0


def aupr_out(is_id: ArrayLike, scores: ArrayLike) -> float:
    """AUPR-Out in percent: average precision with OoD as the positive class and -S as the score.

    Higher S = more in-distribution, so -S ranks the OoD images first. Its chance level is the OoD
    share of the images.

    Parameters
    ----------
    is_id : array-like of shape (n_samples,)
        Boolean (or 0/1) mask of the ID images; its complement, the OoD images, is the positive class.
    scores : array-like of shape (n_samples,)
        S (higher = more in-distribution), negated so that OoD images rank first.

    Returns
    -------
    ap : float
        Average precision of OoD retrieval in percent (0-100); NaN when a side has no usable score.

    See Also
    --------
    aupr_in : The same with ID as the positive class and S as the score.

    Notes
    -----
    Raises ValueError for the same inputs as :func:`auroc` (bad shapes or labels, partly NaN sides,
    infinite scores).

    Examples
    --------
    >>> from reguide_tasks.metrics.ood import aupr_out
    >>> aupr_out([True, True, True, False, False], [90, 60, 60, 60, 10])
    75.0
    >>> aupr_out([False, False], [1, 2])  # no ID image: undefined
    nan
    """
    prepared = _prepare(is_id, scores)
    if prepared is None:
        return float("nan")
    labels, values = prepared
    return float(average_precision_score(~labels, -values)) * 100.0


_PAIR_METRICS = {
    "auroc": auroc,
    "fpr95": fpr_at_95_openood,
    "fpr95tpr": fpr_at_95_tpr,
    "aupr_in": aupr_in,
    "aupr_out": aupr_out,
}


def ood_metrics(id_scores: ArrayLike, ood_scores: ArrayLike) -> dict[str, float]:
    """All metrics for one ID-vs-OoD pair, in percent.

    Higher scores = more in-distribution; ID is the positive class of ``auroc``, ``fpr95tpr`` and
    ``aupr_in``, OoD that of ``fpr95`` and ``aupr_out``.

    Parameters
    ----------
    id_scores : array-like
        Scores of the ID images (flattened).
    ood_scores : array-like
        Scores of the OoD images (flattened).

    Returns
    -------
    metrics : dict of str to float
        Keys ``auroc``, ``fpr95`` (OpenOOD rule, :func:`fpr_at_95_openood`), ``fpr95tpr`` (classic,
        :func:`fpr_at_95_tpr`), ``aupr_in``, ``aupr_out``. All NaN when either side is empty or
        all NaN.

    See Also
    --------
    ood_table : The same for several OoD datasets, with near / far means.

    Examples
    --------
    >>> from reguide_tasks.metrics.ood import ood_metrics
    >>> m = ood_metrics([90, 60, 60], [60, 10])
    >>> {name: round(value, 2) for name, value in m.items()}
    {'auroc': 83.33, 'fpr95': 66.67, 'fpr95tpr': 50.0, 'aupr_in': 83.33, 'aupr_out': 75.0}
    >>> ood_metrics([], [60, 10])["auroc"]
    nan
    """
    id_values = np.asarray(id_scores, dtype=float).ravel()
    ood_values = np.asarray(ood_scores, dtype=float).ravel()
    is_id = np.concatenate([np.ones(id_values.size, bool), np.zeros(ood_values.size, bool)])
    scores = np.concatenate([id_values, ood_values])
    return {name: fn(is_id, scores) for name, fn in _PAIR_METRICS.items()}


def ood_table(
    id_scores: ArrayLike,
    ood_scores_by_dataset: Mapping[str, ArrayLike],
    near: Sequence[str],
    far: Sequence[str],
) -> dict[str, float]:
    """Flat table of every metric for each OoD dataset, plus near / far averages.

    Metrics (percent, higher scores = more in-distribution) as in :func:`ood_metrics`: ``auroc``,
    ``fpr95`` (OpenOOD rule), ``fpr95tpr`` (classic), ``aupr_in``, ``aupr_out``.

    Parameters
    ----------
    id_scores : array-like
        Scores of the ID images, shared by every OoD dataset.
    ood_scores_by_dataset : mapping of str to array-like
        Dataset name -> scores of its OoD images.
    near : sequence of str
        Names of the near-OoD datasets.
    far : sequence of str
        Names of the far-OoD datasets.

    Returns
    -------
    table : dict of str to float
        Keys ``f"{metric}_{d}"`` for each dataset ``d`` in ``ood_scores_by_dataset`` (including
        ones in neither group), and ``f"{metric}_near"`` / ``f"{metric}_far"``: the UNWEIGHTED
        mean over that group's datasets present in the mapping (as OpenOOD). A group with no
        dataset present is omitted. Order: metric by metric, datasets in mapping order, then
        near, far.

    Raises
    ------
    ValueError
        If a dataset is called ``near`` or ``far`` (the group keys), or a dataset is listed as
        both near and far.

    Notes
    -----
    A dataset whose metrics are NaN (empty / all-NaN scores) makes its group mean NaN, so a missing
    result is never hidden.

    Examples
    --------
    >>> from reguide_tasks.metrics.ood import ood_table
    >>> table = ood_table([90, 60, 60], {"a": [60, 10], "b": [10], "c": []}, near=["a"], far=["b", "c"])
    >>> [key for key in table if key.startswith("auroc")]
    ['auroc_a', 'auroc_b', 'auroc_c', 'auroc_near', 'auroc_far']
    >>> round(table["auroc_near"], 2), table["auroc_b"], table["auroc_far"]
    (83.33, 100.0, nan)
    """
    clash = set(GROUPS) & set(ood_scores_by_dataset)
    if clash:
        raise ValueError(f"dataset names {sorted(clash)} clash with the group keys {GROUPS}")
    both = set(near) & set(far)
    if both:
        raise ValueError(f"datasets {sorted(both)} are listed as both near and far")
    per_dataset = {d: ood_metrics(id_scores, s) for d, s in ood_scores_by_dataset.items()}
    groups = {
        name: [d for d in members if d in per_dataset]
        for name, members in zip(GROUPS, (near, far), strict=True)
    }
    table: dict[str, float] = {}
    for metric in METRICS:
        for dataset, values in per_dataset.items():
            table[f"{metric}_{dataset}"] = values[metric]
        for group, present in groups.items():
            if present:
                table[f"{metric}_{group}"] = float(np.mean([per_dataset[d][metric] for d in present]))
    return table
