"""Calibration of verbalized confidence on ID images: ECE, top-label Brier score, risk-coverage
curve and AURC, reliability bins. Pure numpy; imports neither lmms_eval nor torch.

Conventions
-----------
- ``confidence``: per ID image, the confidence (0-100) the model gave its PREDICTED class, or
  None / NaN when the answer failed (no usable prediction or confidence).
- ``correct``: per ID image, True when the predicted class is the true one; False for a failed
  answer (a failed answer marked correct is rejected).
- Units: ECE, AURC, selective risk and accuracy are in percent (0-100); the Brier score is on its
  usual 0-1 scale; the reliability bins and the risk-coverage curve are fractions in [0, 1].
  Confidences are divided by 100 before any comparison with accuracy.

Failed answers
--------------
One rule for every function here: a failed answer has no confidence, so it is EXCLUDED from the
ECE, the Brier score and the reliability bins (they measure what stated confidences mean), and
counted separately (``n_failed`` of :func:`calibration_summary`, and as wrong in its ``accuracy``).
The risk-coverage curve, the AURC and :func:`selective_risk_at` KEEP failed answers, as errors the
model did not abstain from: they are ranked below every stated confidence (one tie group of their
own, covered last), so full coverage means every image and its risk is 100 - accuracy. When no
answer has a confidence (empty input, or all answers failed) every metric is NaN.

Ties
----
Verbalized confidences are heavily tied (many answers say exactly 100). No function breaks ties by
order or at random: equal-mass bins never split a tie group between bins, and on the risk-coverage
curve a tie group enters together (coverage steps only at distinct confidence values).

Why one module of this length: the metrics share one input check, one rule for failures and one
binning; most of the lines are the conventions and examples each docstring states.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

BINNINGS = ("equal_width", "equal_mass")


class ReliabilityBins(NamedTuple):
    """The non-empty bins of a reliability diagram, in ascending order of confidence.

    All fields are arrays of shape (n_nonempty_bins,); ``lower``, ``upper``, ``confidence`` and
    ``accuracy`` are fractions in [0, 1].
    """

    lower: np.ndarray
    """Lower edge of each bin (see :func:`reliability_bins` for each binning's edges)."""
    upper: np.ndarray
    """Upper edge of each bin."""
    confidence: np.ndarray
    """Mean confidence (divided by 100) of the answers in each bin."""
    accuracy: np.ndarray
    """Share of correct answers in each bin."""
    count: np.ndarray
    """Number of answers in each bin (int)."""


def _prepare(confidence: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair; return (confidence as float with NaN for failures, correct as bool)."""
    values = np.asarray(confidence, dtype=float)  # None becomes NaN
    labels = np.asarray(correct)
    if values.ndim != 1 or labels.shape != values.shape:
        raise ValueError(
            "confidence and correct must be 1-D arrays of equal length (one entry per ID image), "
            f"got shapes {values.shape} and {labels.shape}"
        )
    if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
        raise ValueError("correct must be boolean (or 0/1): True/1 marks a correct prediction")
    labels = labels.astype(bool)
    failed = np.isnan(values)
    outside = ~failed & ((values < 0) | (values > 100))
    if outside.any():
        raise ValueError(
            f"{int(outside.sum())} confidence(s) outside [0, 100] (e.g. {float(values[outside][0])}); "
            "verbalized confidences are percentages, use None or NaN for a failed answer"
        )
    if (failed & labels).any():
        raise ValueError("an answer with no confidence (None/NaN: a failed answer) cannot be marked correct")
    return values, labels


def _check_binning(n_bins: int, binning: str) -> None:
    if binning not in BINNINGS:
        raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")


def _bin_index(values: np.ndarray, n_bins: int, binning: str) -> np.ndarray:
    """Bin of each (valid, 0-100) confidence, as integers; empty bins may be skipped."""
    if binning == "equal_width":
        # Bin k holds (100 k / M, 100 (k + 1) / M]; c * M is exact for integer c, so a value on an
        # edge lands in the bin it closes, without the rounding of p = c / 100.
        return np.maximum(np.ceil(values * n_bins / 100.0).astype(int) - 1, 0)
    # Equal mass: the bin of rank r (0-based, ascending) is floor(M r / N); a tie group takes the bin
    # of its first (lowest) rank, i.e. of the number of confidences strictly below it.
    below = np.searchsorted(np.sort(values), values, side="left")
    return (n_bins * below) // values.size


def reliability_bins(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15, binning: str = "equal_width"
) -> ReliabilityBins:
    """Mean confidence, accuracy and count of each confidence bin, for a reliability diagram.

    Failed answers (confidence None / NaN) are left out: they have no confidence to bin. Only the
    non-empty bins are returned, in ascending order of confidence.

    Parameters
    ----------
    confidence : array-like of shape (n_samples,)
        Confidence of the predicted class, 0-100; None or NaN for a failed answer.
    correct : array-like of shape (n_samples,)
        Boolean (or 0/1): the prediction is right. False for a failed answer.
    n_bins : int, default=15
        Number of bins M, >= 1.
    binning : {"equal_width", "equal_mass"}, default="equal_width"
        ``"equal_width"``: M bins of width 1/M on [0, 1]. ``"equal_mass"``: quantile bins with
        (near) equal counts, tie groups kept whole.

    Returns
    -------
    bins : ReliabilityBins
        Named tuple of arrays ``lower``, ``upper``, ``confidence``, ``accuracy``, ``count``, one
        entry per non-empty bin. Empty arrays when no answer has a confidence.

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``correct`` is not boolean / 0-1, a confidence
        is outside [0, 100], a failed answer is marked correct, ``n_bins`` is not a positive integer
        or ``binning`` is unknown.

    See Also
    --------
    expected_calibration_error : The weighted gap between the two curves of these bins.

    Notes
    -----
    With p = confidence / 100:

    - ``"equal_width"``: bins are right-closed, left-open: bin k (k = 1..M) holds
      (k-1)/M < p <= k/M, and the first bin also holds p = 0 (it is [0, 1/M]). So p = 1.0 is in
      the last bin and a value on an edge belongs to the bin it closes. ``lower`` and ``upper`` are
      (k-1)/M and k/M.
    - ``"equal_mass"``: sort the N confidences; the answer of rank r (0-based) goes to bin
      floor(M r / N), except that a tie group (equal confidences) all goes to the bin of its
      lowest rank: bin(p) = floor(M * #{j : p_j < p} / N). Without ties the counts differ by at
      most one; with ties a bin holds whole tie groups, so counts can be very unequal (a bin of
      all the 100s, say) and fewer than M bins can be non-empty. ``lower`` and ``upper`` are the
      smallest and largest confidence in the bin.

    ``confidence`` is the mean p of a bin and ``accuracy`` its share of correct answers.

    Examples
    --------
    >>> from reguide_tasks.metrics.calibration import reliability_bins
    >>> bins = reliability_bins([90, 80, 80, 60, None], [True, True, False, True, False], n_bins=5)
    >>> bins.upper, bins.confidence, bins.accuracy, bins.count
    (array([0.6, 0.8, 1. ]), array([0.6, 0.8, 0.9]), array([1. , 0.5, 1. ]), array([1, 2, 1]))

    Three equal-mass bins of two answers each would split the four answers at 100; they stay
    together, so there are two bins:

    >>> reliability_bins([20, 50, 100, 100, 100, 100], [0, 1, 1, 1, 1, 0], n_bins=3, binning="equal_mass").count
    array([2, 4])
    """
    _check_binning(n_bins, binning)
    values, labels = _prepare(confidence, correct)
    usable = ~np.isnan(values)
    values, labels = values[usable], labels[usable]
    index = _bin_index(values, int(n_bins), binning)
    present, index = np.unique(index, return_inverse=True)
    count = np.bincount(index, minlength=present.size)
    p = values / 100.0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(index, weights=p, minlength=present.size) / count
        accuracy = np.bincount(index, weights=labels, minlength=present.size) / count
    if binning == "equal_width":
        lower, upper = present / n_bins, (present + 1) / n_bins
    else:
        lower = np.full(present.size, np.inf)
        upper = np.full(present.size, -np.inf)
        np.minimum.at(lower, index, p)
        np.maximum.at(upper, index, p)
    return ReliabilityBins(lower, upper, mean_p, accuracy, count)


def expected_calibration_error(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15, binning: str = "equal_width"
) -> float:
    """Expected calibration error of the predicted class's confidence, in percent.

    Confidences are divided by 100 and binned (:func:`reliability_bins`); the ECE is the
    count-weighted mean gap between each bin's accuracy and its mean confidence. 0 = calibrated;
    failed answers (confidence None / NaN) are excluded, not counted as errors.

    Parameters
    ----------
    confidence, correct : array-like of shape (n_samples,)
        Each answer's stated confidence (0-100; None/NaN when it failed, then left out) and
        whether it is right, as in :func:`reliability_bins`.
    n_bins : int, default=15
        Number of bins M, >= 1.
    binning : {"equal_width", "equal_mass"}, default="equal_width"
        Bins of width 1/M on [0, 1], or quantile bins with tie groups kept whole; see
        :func:`reliability_bins` for the exact rules (right-closed equal-width bins; a tie group is
        never split between equal-mass bins, which can make their counts unequal).

    Returns
    -------
    ece : float
        ECE in percent (0-100); NaN when no answer has a confidence.

    Raises
    ------
    ValueError
        On the inputs, ``n_bins`` or ``binning`` that :func:`reliability_bins` rejects.

    See Also
    --------
    reliability_bins : The bins themselves.
    calibration_summary : ECE with both binnings, Brier score, AURC and counts at once.

    Notes
    -----
    ``ECE = 100 * sum_b (n_b / N) * |acc_b - conf_b|`` over the non-empty bins b, where N is the
    number of answers with a confidence, n_b the number in bin b, acc_b their share of correct
    answers and conf_b their mean confidence / 100 (Guo et al., 2017). With one bin it is
    ``|accuracy - mean confidence|``.

    Examples
    --------
    Bins of width 0.2: 90 alone (gap 0.1), the two 80s (one right: gap 0.3), 60 alone (gap 0.4);
    the failed answer is left out. ``(0.1 + 2 * 0.3 + 0.4) / 4 = 0.275``:

    >>> from reguide_tasks.metrics.calibration import expected_calibration_error
    >>> conf, correct = [90, 80, 80, 60, None], [True, True, False, True, False]
    >>> round(expected_calibration_error(conf, correct, n_bins=5), 6)
    27.5
    >>> expected_calibration_error([100, 100, 50, 50], [1, 1, 1, 0])  # calibrated
    0.0
    >>> expected_calibration_error([None, None], [False, False])
    nan
    """
    bins = reliability_bins(confidence, correct, n_bins=n_bins, binning=binning)
    total = int(bins.count.sum())
    if total == 0:
        return float("nan")
    return 100.0 * float(np.sum(bins.count * np.abs(bins.accuracy - bins.confidence))) / total


def brier_score(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Top-label Brier score: mean squared gap between the predicted class's confidence and correctness.

    Only the predicted class enters (the "top-label" Brier score), not the full per-class vector.
    On the usual 0-1 scale: 0 = confident and right every time, 0.25 = always 50, lower is better.
    Failed answers (confidence None / NaN) are excluded.

    Parameters
    ----------
    confidence, correct : array-like of shape (n_samples,)
        Confidence of each predicted class in percent (None/NaN: a failed answer, not scored)
        and its correctness (boolean or 0/1, False when failed).

    Returns
    -------
    brier : float
        In [0, 1]; NaN when no answer has a confidence.

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``correct`` is not boolean / 0-1, a confidence
        is outside [0, 100] or a failed answer is marked correct.

    Notes
    -----
    ``Brier = (1 / N) * sum_i (p_i - y_i)^2`` over the N answers with a confidence, with
    p_i = confidence_i / 100 and y_i = 1 if correct else 0. A failed answer is not scored as
    p = 0 and y = 0 (which would reward failing: a zero penalty); it is counted in
    ``n_failed`` of :func:`calibration_summary` instead.

    Examples
    --------
    ``(0.1^2 + 0.2^2 + 0.8^2 + 0.4^2) / 4 = 0.2125``:

    >>> from reguide_tasks.metrics.calibration import brier_score
    >>> round(brier_score([90, 80, 80, 60, None], [True, True, False, True, False]), 6)
    0.2125
    >>> brier_score([50, 50], [True, False])
    0.25
    """
    values, labels = _prepare(confidence, correct)
    usable = ~np.isnan(values)
    if not usable.any():
        return float("nan")
    return float(np.mean((values[usable] / 100.0 - labels[usable]) ** 2))


def risk_coverage(confidence: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Risk-coverage curve of selective classification by the stated confidence.

    Answering only when the confidence is at least a threshold t covers a share of the images
    (coverage) and errs on a share of those covered (selective risk). One point per distinct
    confidence, from the highest threshold down; failed answers are errors covered last.

    Parameters
    ----------
    confidence, correct : array-like of shape (n_samples,)
        The selection score (0-100, None/NaN for a failed answer, ranked last) and the boolean
        (or 0/1) correctness of each prediction.

    Returns
    -------
    coverage : ndarray of shape (n_points,)
        Share of all images covered, increasing, ending at 1.0.
    risk : ndarray of shape (n_points,)
        Share of errors among the covered images, in [0, 1].
        Both empty when no answer has a confidence.

    Raises
    ------
    ValueError
        For answers :func:`brier_score` rejects: unequal lengths, labels not boolean, a
        confidence outside [0, 100], a failed answer marked correct.

    See Also
    --------
    aurc : The area under this curve.
    selective_risk_at : The risk at a given coverage.

    Notes
    -----
    Let t_1 > t_2 > ... > t_K be the distinct confidences and N the number of images (failed
    answers included). Point k is ``coverage_k = |C_k| / N`` and ``risk_k = errors(C_k) / |C_k|``
    with C_k = {i : confidence_i >= t_k}: a tie group enters together, so coverage steps only at
    distinct confidences and the order of tied answers never matters. Failed answers get a
    confidence below every stated one (one more tie group, the last point, at coverage 1). There
    is no point at coverage 0, where the risk is undefined.

    Examples
    --------
    >>> from reguide_tasks.metrics.calibration import risk_coverage
    >>> coverage, risk = risk_coverage([90, 80, 80, 60, None], [True, True, False, True, False])
    >>> coverage
    array([0.2, 0.6, 0.8, 1. ])
    >>> risk.round(4)
    array([0.    , 0.3333, 0.25  , 0.4   ])
    """
    values, labels = _prepare(confidence, correct)
    failed = np.isnan(values)
    if failed.all():
        return np.empty(0), np.empty(0)
    ranked = np.where(failed, -np.inf, values)
    distinct, group = np.unique(-ranked, return_inverse=True)  # ascending in -confidence
    covered = np.cumsum(np.bincount(group, minlength=distinct.size))
    errors = np.cumsum(np.bincount(group, weights=~labels, minlength=distinct.size))
    return covered / values.size, errors / covered


def aurc(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Area under the risk-coverage curve (AURC), in percent; lower is better.

    The mean selective risk over coverages, with confidence as the selection score (Geifman &
    El-Yaniv, 2017; Ding et al., 2020). Failed answers are errors covered last; tied confidences
    enter the curve together.

    Parameters
    ----------
    confidence, correct : array-like of shape (n_samples,)
        Answers as for :func:`risk_coverage`.

    Returns
    -------
    aurc : float
        AURC in percent (0-100); NaN when no answer has a confidence (nothing to rank by).

    Raises
    ------
    ValueError
        Like :func:`risk_coverage`.

    See Also
    --------
    risk_coverage : The curve, with the tie and failure rules.

    Notes
    -----
    A right-endpoint step integral of :func:`risk_coverage`:
    ``AURC = 100 * sum_k (coverage_k - coverage_{k-1}) * risk_k`` with coverage_0 = 0, i.e. each
    tie group contributes its share of the images times the risk once it has entered. Without ties
    this is the usual ``(100 / N) * sum_{i=1..N} risk(top i)``. A model whose errors are all
    ranked below its correct answers reaches the lowest AURC possible for its accuracy; one
    constant confidence gives 100 - accuracy.

    Examples
    --------
    ``0.2 * 0 + 0.4 * (1/3) + 0.2 * 0.25 + 0.2 * 0.4 = 0.2633``:

    >>> from reguide_tasks.metrics.calibration import aurc
    >>> round(aurc([90, 80, 80, 60, None], [True, True, False, True, False]), 2)
    26.33
    >>> aurc([70, 70, 70, 70], [1, 1, 1, 0])  # one tie group: the error rate
    25.0
    """
    coverage, risk = risk_coverage(confidence, correct)
    if coverage.size == 0:
        return float("nan")
    return 100.0 * float(np.sum(np.diff(coverage, prepend=0.0) * risk))


def selective_risk_at(confidence: ArrayLike, correct: ArrayLike, coverage_level: float) -> float:
    """Selective risk, in percent, at the first point of the risk-coverage curve reaching a coverage.

    Parameters
    ----------
    confidence, correct : array-like of shape (n_samples,)
        Answers as for :func:`risk_coverage`; failures are errors covered last.
    coverage_level : float
        The coverage to reach, in (0, 1].

    Returns
    -------
    risk : float
        Share of errors among the covered images in percent (0-100); NaN when no answer has a
        confidence.

    Raises
    ------
    ValueError
        If ``coverage_level`` is not in (0, 1], or under the conditions listed for
        :func:`brier_score`.

    Notes
    -----
    The point is the one of the highest threshold whose coverage is >= ``coverage_level``
    (:func:`risk_coverage`: tie groups enter whole, so the actual coverage can exceed the level;
    no interpolation).

    Examples
    --------
    >>> from reguide_tasks.metrics.calibration import selective_risk_at
    >>> conf, correct = [90, 80, 80, 60, None], [True, True, False, True, False]
    >>> selective_risk_at(conf, correct, 0.2), selective_risk_at(conf, correct, 0.7)
    (0.0, 25.0)
    """
    if not 0.0 < coverage_level <= 1.0:
        raise ValueError(f"coverage_level must be in (0, 1], got {coverage_level!r}")
    coverage, risk = risk_coverage(confidence, correct)
    if coverage.size == 0:
        return float("nan")
    # Coverage ends at exactly 1.0 (N / N), so a level in (0, 1] always finds a point.
    return 100.0 * float(risk[np.searchsorted(coverage, coverage_level - 1e-12, side="left")])


def calibration_summary(confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> dict[str, float | int]:
    """ECE (both binnings), Brier score, AURC, counts and accuracy of one set of ID answers.

    Parameters
    ----------
    confidence, correct : array-like of shape (n_samples,)
        All the ID answers: stated confidence, 0-100 or None/NaN when failed, and correctness.
    n_bins : int, default=15
        Number of ECE bins, for both binnings.

    Returns
    -------
    summary : dict
        ``ece_equal_width``, ``ece_equal_mass`` (percent, :func:`expected_calibration_error`),
        ``brier`` (0-1, :func:`brier_score`), ``aurc`` (percent, :func:`aurc`), ``n`` (int: all
        images), ``n_failed`` (int: answers with confidence None / NaN) and ``accuracy`` (percent,
        over all n images, failed answers counted as wrong). The four metrics are NaN when no
        answer has a confidence; ``accuracy`` is NaN only when n = 0.

    Raises
    ------
    ValueError
        When :func:`reliability_bins` would (bad answers, or ``n_bins`` < 1).

    Examples
    --------
    >>> from reguide_tasks.metrics.calibration import calibration_summary
    >>> summary = calibration_summary([90, 80, 80, 60, None], [True, True, False, True, False], n_bins=5)
    >>> {key: round(value, 4) for key, value in summary.items()}
    {'ece_equal_width': 27.5, 'ece_equal_mass': 27.5, 'brier': 0.2125, 'aurc': 26.3333, 'n': 5, 'n_failed': 1, 'accuracy': 60.0}
    >>> calibration_summary([], [])["n"]
    0
    """
    values, labels = _prepare(confidence, correct)
    return {
        "ece_equal_width": expected_calibration_error(values, labels, n_bins=n_bins, binning="equal_width"),
        "ece_equal_mass": expected_calibration_error(values, labels, n_bins=n_bins, binning="equal_mass"),
        "brier": brier_score(values, labels),
        "aurc": aurc(values, labels),
        "n": int(values.size),
        "n_failed": int(np.isnan(values).sum()),
        "accuracy": 100.0 * float(labels.mean()) if values.size else float("nan"),
    }
