"""From a parsed LVLM answer to an OoD score, and the policy for answers without one.

Conventions
-----------
- An OoD score S is HIGHER for MORE in-distribution (see :mod:`reguide_tasks.metrics.ood`).
- Scores are computed on the confidences exactly as the model gave them: no per-answer rescaling
  (0-1 vs 0-100), since that would change rankings and ties across answers.
- Class names are matched after light normalization (surrounding whitespace stripped, inner runs of
  whitespace collapsed, case folded); the ID class lists have no collisions under it.
- A confidence that is not a finite number is ignored (treated as absent).
- ``None`` means "no usable score": the answer failed and a failure policy decides its fate.

Why one module of this length: about half of it is the score rules' documentation and examples; the
rules, the failure policies and the prediction checks share the same reading of a parsed answer.
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from reguide_tasks.vocab import REJECTION_CLASS

if TYPE_CHECKING:  # the parser is only needed for type hints
    from reguide_tasks.answers.parsing import ParsedAnswer

FAILURE_POLICIES = ("exclude", "most_ood")

_SPACES = re.compile(r"\s+")

ScoreRule = Callable[[Mapping[str, float], Sequence[str]], float | None]


@lru_cache(maxsize=65536)  # per answer every class name of the prompt is normalized again: cache them
def label_key(name: str) -> str:
    """The key a prediction is compared with a label or an ID class by: stripped, whitespace collapsed,
    case folded (the prediction is already a class name read by :mod:`reguide_tasks.answers.key_matching`)."""
    return _SPACES.sub(" ", name.strip()).casefold()


def _as_finite(value: Any) -> float | None:
    """``value`` as a float if it is a finite real number (bools excluded), else None."""
    # Exact float / int first: the numbers.Real ABC check is slow, and bool is neither exact type.
    if type(value) is not float and type(value) is not int and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _finite(confidences: Mapping[str, Any]) -> dict[str, float]:
    """Normalized name -> confidence, dropping non-numeric / non-finite values.

    If two keys normalize to the same name, the higher confidence is kept.
    """
    values = tuple(confidences.values())
    if _all_finite_floats(values):  # a parsed answer: ~200 of them for ImageNet200
        normalized, unique = _normalized_keys(tuple(confidences))
        if unique:
            return dict(zip(normalized, values))
    out: dict[str, float] = {}
    for name, raw in confidences.items():
        value = _as_finite(raw)
        if value is None:
            continue
        key = label_key(str(name))
        out[key] = max(out.get(key, -math.inf), value)
    return out


_FLOAT_ONLY = frozenset({float})


def _all_finite_floats(values: tuple) -> bool:
    # A finite sum of floats has no inf / NaN in it; only an overflowing sum needs the element check.
    return set(map(type, values)) <= _FLOAT_ONLY and (math.isfinite(sum(values)) or all(map(math.isfinite, values)))


@lru_cache(maxsize=1024)
def _normalized_keys(names: tuple[Any, ...]) -> tuple[tuple[str, ...], bool]:
    """(normalized names, whether they are all distinct); cached: answers repeat the prompt's key list."""
    normalized = tuple(label_key(n if type(n) is str else str(n)) for n in names)
    return normalized, len(set(normalized)) == len(normalized)


@lru_cache(maxsize=64)
def _id_name_sets(id_classes: tuple[str, ...]) -> tuple[frozenset, frozenset]:
    """(the ID class names as given, their normalized forms)."""
    return frozenset(id_classes), frozenset(_normalized_keys(id_classes)[0])


@lru_cache(maxsize=1024)
def _id_values_getter(names: tuple[Any, ...], id_classes: tuple[str, ...]) -> Callable[[tuple], tuple] | None:
    """For an answer's key list: a function picking the values of the keys that are ID classes
    (normalized match) from the answer's value tuple; None when no key is an ID class."""
    exact, normalized = _id_name_sets(id_classes)
    # An exact ID name is an ID key without normalizing it; only the other keys (auxiliary classes,
    # 'none of these classes', odd spellings) are normalized. Same result as normalizing every key.
    positions = [i for i, key in enumerate(names) if key in exact or label_key(key if type(key) is str else str(key)) in normalized]
    if not positions:
        return None
    if positions == list(range(positions[0], positions[-1] + 1)):  # the usual answer: ID classes first, in a run
        run = slice(positions[0], positions[-1] + 1)
        return lambda values: values[run]
    return operator.itemgetter(*positions)  # two or more positions (one is a run): a tuple


def _max_id(conf: dict[str, float], id_classes: Sequence[str]) -> float | None:
    ids, _ = _normalized_keys(tuple(id_classes))
    return max((v for v in map(conf.get, ids) if v is not None), default=None)


def score_max_id(confidences: Mapping[str, float], id_classes: Sequence[str]) -> float | None:
    """S_max (the paper's score): the max confidence over the ID classes present in the answer.

    Higher = more in-distribution. Confidences are used as the model gave them (no rescaling); class
    names are matched after light normalization (whitespace, case); non-finite confidences are
    ignored.

    Parameters
    ----------
    confidences : mapping of str to float
        Class name -> confidence, as parsed from the answer (may include auxiliary classes and
        'none of these classes').
    id_classes : sequence of str
        The ID class names.

    Returns
    -------
    score : float or None
        The largest confidence of an ID class; None if no ID class is present.

    See Also
    --------
    score_msp, score_neg_none, score_id_minus_none : The other score rules.

    Examples
    --------
    >>> from reguide_tasks.answers.scoring import score_max_id
    >>> score_max_id({"cat": 60.0, "dog": 20.0, "fox": 10.0, "none of these classes": 10.0}, ["cat", "dog"])
    60.0
    >>> score_max_id({" Cat": 70, "fox": 90}, ["cat", "dog"])  # 'fox' is not an ID class
    70.0
    >>> score_max_id({"fox": 90.0}, ["cat", "dog"]) is None
    True
    """
    values = tuple(confidences.values())
    if _all_finite_floats(values):  # the max over duplicates' values is the max of their max: same result
        pick = _id_values_getter(tuple(confidences), tuple(id_classes))
        return max(pick(values)) if pick is not None else None
    return _max_id(_finite(confidences), id_classes)


def score_msp(confidences: Mapping[str, float], id_classes: Sequence[str]) -> float | None:
    """Normalized MSP: S_max divided by the sum of ALL confidences present.

    Higher = more in-distribution. The sum runs over every class in the answer (ID, auxiliary and
    'none of these classes').

    Parameters
    ----------
    confidences : mapping of str to float
        Every class's confidence (ID, auxiliary, 'none'); all of them enter the sum.
    id_classes : sequence of str
        The ID class names, whose largest confidence is the numerator.

    Returns
    -------
    score : float or None
        ``S_max / sum``, in [0, 1] for non-negative confidences; None if no ID class is present or
        the sum is <= 0.

    Examples
    --------
    >>> from reguide_tasks.answers.scoring import score_msp
    >>> score_msp({"cat": 60.0, "dog": 20.0, "fox": 10.0, "none of these classes": 10.0}, ["cat", "dog"])
    0.6
    >>> score_msp({"cat": 0.0}, ["cat"]) is None
    True
    """
    conf = _finite(confidences)
    best = _max_id(conf, id_classes)
    total = sum(conf.values())
    if best is None or total <= 0:
        return None
    return best / total


def score_neg_none(confidences: Mapping[str, float], id_classes: Sequence[str]) -> float | None:
    """Minus the confidence of 'none of these classes'.

    Higher = more in-distribution: a confident rejection gives a low score. ``id_classes`` is not
    used; it is there so that every rule has the same signature.

    Parameters
    ----------
    confidences : mapping of str to float
        Class name -> confidence, as parsed from the answer.
    id_classes : sequence of str
        The ID class names (unused).

    Returns
    -------
    score : float or None
        ``-confidence['none of these classes']``; None if that class is absent.

    Examples
    --------
    >>> from reguide_tasks.answers.scoring import score_neg_none
    >>> score_neg_none({"cat": 60.0, "dog": 20.0, "fox": 10.0, "none of these classes": 10.0}, ["cat", "dog"])
    -10.0
    >>> score_neg_none({"cat": 60.0}, ["cat"]) is None
    True
    """
    none = _finite(confidences).get(REJECTION_CLASS)
    return None if none is None else -none


def score_id_minus_none(confidences: Mapping[str, float], id_classes: Sequence[str]) -> float | None:
    """S_max minus the confidence of 'none of these classes'.

    Higher = more in-distribution.

    Parameters
    ----------
    confidences : mapping of str to float
        Parsed confidences; they need an ID class and 'none of these classes'.
    id_classes : sequence of str
        The ID classes S_max is taken over.

    Returns
    -------
    score : float or None
        ``S_max - confidence['none of these classes']``; None if either is absent.

    Examples
    --------
    >>> from reguide_tasks.answers.scoring import score_id_minus_none
    >>> conf = {"cat": 60.0, "dog": 20.0, "fox": 10.0, "none of these classes": 10.0}
    >>> score_id_minus_none(conf, ["cat", "dog"])  # 60 - 10
    50.0
    >>> print(score_id_minus_none({"cat": 60.0}, ["cat"]))  # no 'none of these classes'
    None
    """
    conf = _finite(confidences)
    best = _max_id(conf, id_classes)
    none = conf.get(REJECTION_CLASS)
    if best is None or none is None:
        return None
    return best - none


SCORE_RULES: dict[str, ScoreRule] = {
    "max_id": score_max_id,
    "msp": score_msp,
    "neg_none": score_neg_none,
    "id_minus_none": score_id_minus_none,
}


def ood_score(answer: ParsedAnswer, id_classes: Sequence[str], rule: str = "max_id") -> float | None:
    """OoD score of one parsed answer by the named rule; None means no usable score.

    Higher = more in-distribution, whatever the rule. An answer without a score is a failure, which
    :func:`apply_failure_policy` resolves later.

    Parameters
    ----------
    answer : ParsedAnswer
        A parsed answer (:func:`reguide_tasks.answers.parsing.parse_answer`).
    id_classes : sequence of str
        The ID class names.
    rule : {"max_id", "msp", "neg_none", "id_minus_none"}, default="max_id"
        A key of ``SCORE_RULES``: :func:`score_max_id`, :func:`score_msp`,
        :func:`score_neg_none`, :func:`score_id_minus_none`.

    Returns
    -------
    score : float or None
        The rule's score of ``answer.confidences``; None if the rule gives none, and always None
        for an answer whose ``status`` is ``"failed"``.

    Raises
    ------
    ValueError
        If ``rule`` is not a known rule.

    Examples
    --------
    >>> from reguide_tasks.answers.parsing import ParsedAnswer
    >>> from reguide_tasks.answers.scoring import ood_score
    >>> answer = ParsedAnswer("cat", {"cat": 60.0, "dog": 20.0, "fox": 20.0}, "ok", "")
    >>> ood_score(answer, ["cat", "dog"]), ood_score(answer, ["cat", "dog"], rule="msp")
    (60.0, 0.6)
    >>> ood_score(ParsedAnswer(None, {}, "failed", "refusal"), ["cat", "dog"]) is None
    True
    """
    try:
        score_rule = SCORE_RULES[rule]
    except KeyError:
        raise ValueError(f"unknown score rule {rule!r}; choose one of {sorted(SCORE_RULES)}") from None
    if answer.status == "failed":
        return None
    return score_rule(answer.confidences or {}, id_classes)


def score_uses_repair(answer: ParsedAnswer, id_classes: Sequence[str], rule: str, score: float | None) -> bool:
    """Whether ``score`` (the answer's score by ``rule``) depends on a repaired key: the strict reading
    (the answer without the classes its repaired keys gave values to) scores differently or not at
    all. For S_max: the maximum came from a repaired key and no exactly read key ties it."""
    repaired = getattr(answer, "repaired_keys", None)
    if score is None or not repaired:
        return False
    lost = set(repaired.values())
    kept = {name: value for name, value in (answer.confidences or {}).items() if name not in lost}
    strict = SCORE_RULES[rule](kept, id_classes) if kept else None
    return strict != score


def apply_failure_policy(
    scores: Sequence[float | None], policy: str = "exclude"
) -> tuple[np.ndarray, np.ndarray]:
    """Resolve failed scores (None or NaN) by a failure policy.

    Scores follow the usual direction (higher = more in-distribution), so ``"most_ood"`` puts the
    failures at the bottom of the ranking.

    Parameters
    ----------
    scores : sequence of float or None
        One score per answer; None or NaN marks a failure.
    policy : {"exclude", "most_ood"}, default="exclude"
        - ``"exclude"``: failures are dropped; ``kept_mask`` marks the kept positions of ``scores``.
        - ``"most_ood"``: failures get ``min(real scores) - 1`` (``-1.0`` when none is real),
          strictly below every real score, so they rank as the most OoD; all positions are kept.

    Returns
    -------
    kept_scores : ndarray of float
        The kept scores, failures filled in under ``"most_ood"``.
    kept_mask : ndarray of bool, same length as ``scores``
        True where the score of that position is in ``kept_scores``.

    Raises
    ------
    ValueError
        If a score is infinite, or ``policy`` is unknown (the message names the choices).

    Notes
    -----
    Apply it ONCE to the pooled scores of an evaluation (ID and every OoD set together): applied
    per set, the fill values differ and failed ID / OoD images would no longer tie.

    Examples
    --------
    >>> from reguide_tasks.answers.scoring import apply_failure_policy
    >>> apply_failure_policy([0.9, None, 0.2, float("nan")])
    (array([0.9, 0.2]), array([ True, False,  True, False]))
    >>> apply_failure_policy([0.9, None, 0.2, float("nan")], "most_ood")
    (array([ 0.9, -0.8,  0.2, -0.8]), array([ True,  True,  True,  True]))
    >>> apply_failure_policy([None], "most_ood")[0]
    array([-1.])
    """
    if policy not in FAILURE_POLICIES:
        raise ValueError(f"unknown failure policy {policy!r}; choose one of {list(FAILURE_POLICIES)}")
    values = np.array([math.nan if s is None else s for s in scores], dtype=float)
    if np.isinf(values).any():
        raise ValueError("scores must be finite or None (got +/-inf)")
    failed = np.isnan(values)
    if policy == "exclude":
        return values[~failed], ~failed
    real = values[~failed]
    values[failed] = real.min() - 1.0 if real.size else -1.0
    return values, np.ones(values.size, dtype=bool)


@lru_cache(maxsize=256)
def _canonical_names(id_classes: tuple[str, ...]) -> dict[str, str]:
    """Normalized name -> spelling in ``id_classes`` (cached: 200 regex substitutions per ImageNet200 answer otherwise)."""
    return {label_key(c): c for c in id_classes}


def predicted_class(answer: ParsedAnswer, id_classes: Sequence[str]) -> str | None:
    """The answer's predicted class: ``answer.prediction`` if set, else the argmax confidence.

    Parameters
    ----------
    answer : ParsedAnswer
        A parsed answer (:func:`reguide_tasks.answers.parsing.parse_answer`).
    id_classes : sequence of str
        The ID class names, in their canonical spelling.

    Returns
    -------
    name : str or None
        A name matching an ID class (normalized match) in its canonical spelling from
        ``id_classes``; other names (auxiliary classes, 'none of these classes') as given. None if
        there is nothing to predict from (no prediction and no finite confidence).

    Notes
    -----
    The argmax runs over every class in the answer (ID, auxiliary, 'none'); ties go to the first
    in the answer's order.

    Examples
    --------
    >>> from reguide_tasks.answers.parsing import ParsedAnswer
    >>> from reguide_tasks.answers.scoring import predicted_class
    >>> predicted_class(ParsedAnswer(None, {"CAT": 60.0, "fox": 60.0}, "partial", ""), ["cat", "dog"])
    'cat'
    >>> predicted_class(ParsedAnswer("fox", {}, "failed", ""), ["cat", "dog"])
    'fox'
    >>> predicted_class(ParsedAnswer(None, {}, "failed", ""), ["cat", "dog"]) is None
    True
    """
    canonical = _canonical_names(tuple(id_classes))
    name = answer.prediction
    if not name:
        best: tuple[float, str] | None = None
        for key, raw in (answer.confidences or {}).items():
            value = _as_finite(raw)
            if value is not None and (best is None or value > best[0]):  # strict: first of ties wins
                best = (value, str(key))
        if best is None:
            return None
        name = best[1]
    return canonical.get(label_key(name), name)


def prediction_confidence(answer: ParsedAnswer, id_classes: Sequence[str]) -> float | None:
    """The confidence (0-100) the answer gave its own predicted class, for calibration.

    Parameters
    ----------
    answer : ParsedAnswer
        A parsed answer.
    id_classes : sequence of str
        The ID class names, in their canonical spelling.

    Returns
    -------
    confidence : float or None
        The finite confidence of :func:`predicted_class` in the answer's confidences; None for a
        failed answer, no prediction, or a prediction without a confidence.

    Examples
    --------
    >>> from reguide_tasks.answers.parsing import ParsedAnswer
    >>> prediction_confidence(ParsedAnswer("cat", {"cat": 80.0, "dog": 20.0}, "ok", ""), ("cat", "dog"))
    80.0
    >>> prediction_confidence(ParsedAnswer(None, {}, "failed", "refusal"), ("cat", "dog")) is None
    True
    """
    if answer.status == "failed":
        return None
    name = predicted_class(answer, id_classes)
    if name is None:
        return None
    confidences = answer.confidences or {}
    if name in confidences:  # the parser keys confidences by the class names as spelled: one look-up
        return _as_finite(confidences[name])
    wanted = label_key(name)
    for key, raw in confidences.items():
        if label_key(str(key)) == wanted:
            return _as_finite(raw)
    return None


def is_correct(answer: ParsedAnswer, label_name: str) -> bool:
    """Whether the answer's predicted class is ``label_name`` (normalized match).

    Parameters
    ----------
    answer : ParsedAnswer
        A parsed answer of an ID image.
    label_name : str
        The image's true class.

    Returns
    -------
    correct : bool
        True if :func:`predicted_class` is ``label_name``. Predictions of an auxiliary class or
        'none of these classes' on ID images are wrong; so is an answer with no prediction at all.

    Examples
    --------
    >>> from reguide_tasks.answers.parsing import ParsedAnswer
    >>> from reguide_tasks.answers.scoring import is_correct
    >>> is_correct(ParsedAnswer("cat", {"cat": 60.0}, "ok", ""), "Cat")
    True
    >>> is_correct(ParsedAnswer("none of these classes", {}, "failed", ""), "cat")
    False
    """
    predicted = predicted_class(answer, (label_name,))
    return predicted is not None and label_key(predicted) == label_key(label_name)
