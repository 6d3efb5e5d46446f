"""Bootstrap confidence intervals of the AUROC (percentile, stratified), for one ID set against
several OoD sets and the means of groups of them. Pure numpy; the AUROC is
:func:`reguide_tasks.metrics.ood.auroc_from_counts`, the metrics' own, applied to many resamples at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from reguide_tasks.metrics.ood import auroc_from_counts


def bootstrap_auroc(
    id_scores: ArrayLike,
    ood_scores: Mapping[str, ArrayLike],
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals of the AUROC of ID vs each OoD set and of group means.

    Same convention as :func:`reguide_tasks.metrics.ood.auroc`: ID is the positive class, higher
    scores are more in-distribution, AUROCs and interval bounds are in percent (0-100).

    Stratified: each replicate resamples the ID scores and each OoD set independently, with
    replacement, keeping their sizes; one ID resample is shared by all OoD sets of a replicate, so a
    group's CI is that of the mean of its datasets present in ``ood_scores``.

    Parameters
    ----------
    id_scores : array-like
        Scores of the ID images (flattened), shared by every OoD set.
    ood_scores : mapping of str to array-like
        Dataset name -> scores of its OoD images.
    groups : mapping of str to sequence of str, default=None
        Group name -> datasets (e.g. ``{"near": [...], "far": [...]}``); each group with at least
        one dataset present in ``ood_scores`` gets the CI of the mean AUROC of those datasets.
    n_boot : int, default=1000
        Number of bootstrap replicates, >= 1.
    seed : int, default=0
        Seed of the random streams.
    level : float, default=0.95
        Confidence level, in (0, 1): the bounds are the ``(1 - level) / 2`` and
        ``(1 + level) / 2`` percentiles of the replicates.

    Returns
    -------
    cis : dict of str to (float, float)
        ``(low, high)`` in percent for each dataset of ``ood_scores`` (in its order), then each
        group present. ``(nan, nan)`` when a side is empty (for a group: when one of its
        datasets has an empty side).

    Raises
    ------
    ValueError
        If ``n_boot < 1``, ``level`` is not in (0, 1), or a score is not finite (apply the failure
        policy, :func:`reguide_tasks.answers.scoring.apply_failure_policy`, first).

    See Also
    --------
    reguide_tasks.metrics.ood.auroc_from_counts : The AUROC of each replicate.

    Notes
    -----
    A replicate's AUROC comes from per-value counts
    (:func:`~reguide_tasks.metrics.ood.auroc_from_counts`, ties counted half), so it costs O(n)
    and many replicates are computed at once. Deterministic for a seed; a dataset's CI does not
    depend on which other datasets are given (each has its own random stream).

    Examples
    --------
    Perfectly separated scores stay separated in every resample:

    >>> from reguide_tasks.metrics.bootstrap import bootstrap_auroc
    >>> bootstrap_auroc([90, 80, 70], {"a": [10, 20], "b": []}, groups={"near": ["a"]}, n_boot=50)
    {'a': (100.0, 100.0), 'b': (nan, nan), 'near': (100.0, 100.0)}
    >>> cis = bootstrap_auroc([90, 60, 60, 80], {"a": [60, 10, 20]}, n_boot=200, seed=1)
    >>> cis == bootstrap_auroc([90, 60, 60, 80], {"a": [60, 10, 20]}, n_boot=200, seed=1)
    True
    >>> low, high = cis["a"]
    >>> 0 <= low <= high <= 100
    True
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    id_values = np.asarray(id_scores, dtype=float).ravel()
    ood_values = {d: np.asarray(s, dtype=float).ravel() for d, s in ood_scores.items()}
    pooled = np.concatenate([id_values, *ood_values.values()])
    if not np.isfinite(pooled).all():
        raise ValueError("scores must be finite: apply the failure policy before bootstrapping")
    uniques, codes = np.unique(pooled, return_inverse=True)
    n_values = max(uniques.size, 1)
    bounds = np.cumsum([id_values.size] + [v.size for v in ood_values.values()])
    id_codes = codes[: bounds[0]]
    ood_codes = {d: codes[lo:hi] for d, lo, hi in zip(ood_values, bounds[:-1], bounds[1:])}

    streams = np.random.SeedSequence(seed).spawn(1 + len(ood_values))
    id_rng = np.random.default_rng(streams[0])
    ood_rngs = {d: np.random.default_rng(s) for d, s in zip(ood_values, streams[1:])}
    replicates = {d: np.full(n_boot, np.nan) for d in ood_values}
    largest = max([id_codes.size, n_values, *(c.size for c in ood_codes.values())])
    chunk = int(np.clip(4_000_000 // largest, 1, 200))  # bounds memory at a few tens of MB
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        if id_codes.size == 0:
            break
        id_counts = value_counts(id_codes[id_rng.integers(0, id_codes.size, (size, id_codes.size))], n_values)
        for dataset, own in ood_codes.items():
            if own.size == 0:
                continue
            ood_counts = value_counts(own[ood_rngs[dataset].integers(0, own.size, (size, own.size))], n_values)
            replicates[dataset][start : start + size] = auroc_from_counts(id_counts, ood_counts)

    tail = (1 - level) / 2 * 100
    cis = {d: _percentiles(r, tail) for d, r in replicates.items()}
    for name, members in (groups or {}).items():
        present = [d for d in members if d in replicates]
        if present:
            cis[name] = _percentiles(np.mean([replicates[d] for d in present], axis=0), tail)
    return cis


def value_counts(codes: np.ndarray, n_values: int) -> np.ndarray:
    """(B, n) value codes -> (B, n_values) counts, one bincount over row-offset codes."""
    rows = codes.shape[0]
    offsets = (np.arange(rows) * n_values)[:, None]
    return np.bincount((codes + offsets).ravel(), minlength=rows * n_values).reshape(rows, n_values)


def _percentiles(values: np.ndarray, tail: float) -> tuple[float, float]:
    if np.isnan(values).any():
        return (math.nan, math.nan)
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return (float(lo), float(hi))
