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
    """AUROC in percent from per-value counts: P(ID > OoD) + P(ID = OoD) / 2.

    ``id_counts[..., v]`` / ``ood_counts[..., v]``: how many ID / OoD scores take the v-th value, the
    values in ascending order (as ``np.unique`` codes them; values absent on both sides may be
    left in). The last axis holds the values, so a (B, n_values) pair gives B AUROCs at once.
    Integer arithmetic up to one final division, so the result does not depend on extra zero
    columns. A side with no scores gives NaN (with a numpy warning).
    """
    below = np.cumsum(ood_counts, axis=-1) - ood_counts
    wins = (id_counts * (2 * below + ood_counts)).sum(axis=-1) / 2
    return 100.0 * wins / (id_counts.sum(axis=-1) * ood_counts.sum(axis=-1))


def auroc(is_id: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve in percent, ID as the positive class and S as its score.

    Symmetric: identical to the AUROC with OoD positive and -S as the score (OpenOOD's framing).
    50 = random, 100 = perfect, 0 = perfectly inverted. Ties count half. NaN if undefined.
    """
    prepared = _prepare(is_id, scores)
    if prepared is None:
        return float("nan")
    labels, values = prepared
    return float(roc_auc_score(labels, values)) * 100.0


def fpr_at_95_openood(is_id: ArrayLike, scores: ArrayLike, *, tpr: float = 0.95) -> float:
    """FPR@95 by the OpenOOD v1.5 rule, in percent: OoD is the positive class.

    ``roc_curve(is_ood, -S)``; the FPR at the FIRST point where TPR >= ``tpr``. Reads: the share of
    ID images flagged OoD when 95% of OoD images are caught. Lower is better. NaN if undefined.

    OpenOOD calls ``roc_curve`` with the default ``drop_intermediate=True``; this uses every
    threshold, so it can be lower than OpenOOD's value when the first point reaching the TPR lies
    on a straight stretch of the curve that sklearn drops (rare).
    """
    _check_level(tpr)
    prepared = _prepare(is_id, scores)
    if prepared is None:
        return float("nan")
    labels, values = prepared
    return _fpr_at_first_tpr(~labels, -values, tpr)


def fpr_at_95_tpr(is_id: ArrayLike, scores: ArrayLike, *, tpr: float = 0.95) -> float:
    """Classic FPR@95%TPR (MCM and most papers), in percent: ID is the positive class.

    ``roc_curve(is_id, S)``; the FPR at the FIRST point where TPR >= ``tpr``. Reads: the share of
    OoD images accepted as ID when 95% of ID images are accepted. Lower is better. NaN if undefined.

    With heavily tied scores it can differ a lot from :func:`fpr_at_95_openood`. Some
    implementations pick the point with TPR nearest to 0.95 instead of the first one reaching it.
    """
    _check_level(tpr)
    prepared = _prepare(is_id, scores)
    if prepared is None:
        return float("nan")
    labels, values = prepared
    return _fpr_at_first_tpr(labels, values, tpr)


def aupr_in(is_id: ArrayLike, scores: ArrayLike) -> float:
    """AUPR-In in percent: average precision with ID positive and S as the score.

    Its chance level is the ID share of the images. Uses ``average_precision_score`` (step-wise sum,
    ties grouped); OpenOOD integrates the PR curve with the trapezoid rule, which can differ slightly.
    NaN if undefined.
    """
    prepared = _prepare(is_id, scores)
    if prepared is None:
        return float("nan")
    labels, values = prepared
    return float(average_precision_score(labels, values)) * 100.0


def aupr_out(is_id: ArrayLike, scores: ArrayLike) -> float:
    """AUPR-Out in percent: average precision with OoD positive and -S as the score.

    Its chance level is the OoD share of the images. NaN if undefined.
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
    """All metrics for one ID-vs-OoD pair: keys ``auroc``, ``fpr95`` (OpenOOD rule), ``fpr95tpr``
    (classic), ``aupr_in``, ``aupr_out``, in percent. All NaN when either side is empty / all-NaN.
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

    Keys: ``f"{metric}_{d}"`` for each dataset ``d`` in ``ood_scores_by_dataset`` (including ones in
    neither group), and ``f"{metric}_near"`` / ``f"{metric}_far"``: the UNWEIGHTED mean over that
    group's datasets present in the mapping (as OpenOOD). A group with no dataset present is omitted.
    A dataset whose metrics are NaN (empty / all-NaN scores) makes its group mean NaN, so a missing
    result is never hidden. Metrics: ``auroc``, ``fpr95`` (OpenOOD rule), ``fpr95tpr`` (classic),
    ``aupr_in``, ``aupr_out``. Order: metric by metric, datasets in mapping order, then near, far.
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
