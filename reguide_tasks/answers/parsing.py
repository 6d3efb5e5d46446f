"""Parse an LVLM's free-text answer to the baseline / stage-2 classification prompt.

The prompt asks for::

    Prediction: <class>
    Confidence: {'<class>': <0..100>, ...}

Real answers break this in many ways (refusals, no dict, copied example dicts, truncated dicts,
garbled or duplicated keys, unquoted keys, JSON, percent signs, markdown, special tokens, repetition
loops). :func:`parse_answer` turns any string into a :class:`ParsedAnswer` and never raises.

Conventions:

- Confidences are kept as given (the prompt's 0..100 scale); nothing is rescaled or clipped.
- The ``Prediction:`` value and every key are matched to the prompt's class list by the one policy
  of :mod:`reguide_tasks.answers.key_matching`: exact, then normalised, then (unless ``repair=False``, the
  strict reading) repair of a key still unknown to the one class without a value that it is a typo
  of. Keys are first all read exactly / normalised, then the unknown ones repaired in answer order,
  so an exact key always wins over a typo of the same class. Repairs are listed in
  ``repaired_keys`` (key as written -> class), the keys left unknown in ``unknown_keys``.
- A key that appears twice keeps its first value. ``confidences`` is in answer order.
- The prediction is the ``Prediction:`` value matched to the class list (a repair: against every
  class; ``repaired_prediction`` then holds the value as written); if missing or unmatched, the
  argmax of the confidences (ties: first in class order); None when there is neither.
- ``status``: ``"ok"`` every class has a confidence, ``"partial"`` some, ``"failed"`` none.
  A failed answer has no confidences (a copied example's values are dropped).
- ``reason``: ``""`` for a clean ``ok`` answer; otherwise ``"; "``-joined notes, e.g.
  ``"refusal"``, ``"no confidence dict"``, ``"copied example"``, ``"truncated dict; missing 12
  classes"``, ``"duplicate keys: banana"``, ``"unknown keys: pear, apple"``. An ``ok`` answer can
  carry notes (duplicates, unknown keys) while every class still has a value.

Speed: a clean ``{'key': number, ...}`` dict whose keys are all class names is decoded by the C
JSON scanner; everything else goes through one linear scan over ``:``-anchored numbers, so no
regex here can backtrack catastrophically. A repetition loop is read for at most
8 x (number of classes) + 64 pairs.

Why one module of this length: the reading steps (cleaning, the Prediction line, the dict region,
key/value pairs, copies of the example, refusals) share the cleaned text and the class index of one
answer, and one ``parse_answer`` call walks them in order; split apart they would pass that state
through every signature.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reguide_tasks.answers.key_matching import ClassIndex, class_index

__all__ = ["ParsedAnswer", "match_class", "parse_answer"]

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# A value token: ':' then an optionally quoted number. The second \s* only runs after a quote, so a
# long run of blanks is scanned once per ':' (no nested quantifiers over the same characters).
_VALUE = re.compile(r":\s*(?:['\"]\s*)?(" + _NUMBER + ")")
_PREDICTION_COLON = re.compile(r"[ \t'\"]{0,4}:[ \t'\"`*]*")
_BULLET = re.compile(r"(?:[-*\u2022]|\d{1,3}[.)])\s+")
# A plain unquoted key right after its delimiter ("{goldfish", ", great white shark"): for such a
# span _key_from_span returns exactly the name (letters first, so never a bullet; alphanumeric at
# the end, so nothing to strip). Checked first because weak models write whole dicts this way.
_PLAIN_KEY_SPAN = re.compile(r"[ \t\r\n]*[,{][ \t]*([A-Za-z](?:[A-Za-z0-9 \-]*[A-Za-z0-9])?)")
_SPECIAL_TOKEN = re.compile(r"<\|[^<>|\n]{0,40}\|>|</?s>")
_FENCE = re.compile(r"```[A-Za-z]*")
_QUOTE_MAP = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
# closing quote -> its opening quote
_OPENING_QUOTE = {"'": "'", '"': '"', "\u2019": "\u2018", "\u201d": "\u201c"}
_REFUSALS = (
    "i'm sorry",
    "i am sorry",
    "sorry,",
    "i can't",
    "i cannot",
    "i can not",
    "i'm unable",
    "i am unable",
    "unable to",
    "i'm not able",
    "i am not able",
    "i won't",
    "can't help",
    "cannot help",
    "can't assist",
    "cannot assist",
)
_REFUSAL_WINDOW = 400  # refusals open the answer; don't search a 100k loop for them
_PREDICTION_SPAN = 200  # a class name is never longer than this
_PREDICTION_TRIES = 16  # 'prediction' occurrences examined (a loop may repeat it thousands of times)
_MAX_LISTED = 5  # keys named in a reason
# pairs read per class: a repetition loop adds nothing after its first rounds
_PAIRS_PER_CLASS = 8


@dataclass(frozen=True)
class ParsedAnswer:
    """One parsed answer; see the module docstring for the conventions.

    The last three fields say how the keys were read; they are left out of ``==`` so that an answer
    compares by what it says (prediction, confidences, status, reason).
    """

    prediction: str | None
    confidences: dict[str, float]
    status: str
    reason: str
    repaired_keys: dict[str, str] = field(default_factory=dict, compare=False)
    unknown_keys: tuple[str, ...] = field(default=(), compare=False)
    repaired_prediction: str | None = field(default=None, compare=False)


def match_class(key: str, classes: Sequence[str], repair: bool = True) -> str | None:
    """Map a key (or prediction) from an answer to its canonical class name, or None.

    The policy of :mod:`reguide_tasks.answers.key_matching` against the whole list: exact ('hen'), then
    case / spacing / punctuation-insensitive ('Granny smith', 'shih-tzu', "'tennis racket.'"), then
    (``repair``) a unique one-edit typo ('tingray' -> 'stingray', 'cuba diver' -> 'scuba diver') or,
    for keys under 5 characters, a unique dropped leading character ('nail' -> 'snail'). Ambiguous
    typos and two-edit differences stay unknown ('basketball player' never becomes 'baseball player').
    """
    if not isinstance(key, str):
        return None
    return class_index(tuple(classes)).match(key, repair)[0]


def _clean(text: str) -> str:
    """Drop special tokens, code fences and bold markers (each only if present).

    Curly quotes stay: a curly apostrophe inside a straight-quoted key ('verreaux\u2019s skink') is
    part of the name; :func:`_key_from_span` accepts curly quotes around a key.
    """
    if "<" in text:
        text = _SPECIAL_TOKEN.sub(" ", text)
    if "```" in text:
        text = _FENCE.sub(" ", text)
    if "**" in text:
        text = text.replace("**", "")
    return text


def _prediction_text(text: str, lower: str) -> str | None:
    """The raw value after the first 'Prediction:' (also '"prediction": ...'), else None.

    Empty values and values that are themselves a 'Prediction:' are skipped ("here is my
    prediction:  Prediction: cat" reads 'cat').
    """
    start = 0
    for _ in range(_PREDICTION_TRIES):
        at = lower.find("prediction", start)
        if at < 0:
            return None
        colon = _PREDICTION_COLON.match(text, at + len("prediction"))
        start = at + 1
        if not colon or lower.startswith("prediction", colon.end()):
            continue
        pos = colon.end()
        end = min(len(text), pos + _PREDICTION_SPAN)
        for stop in ("\n", "{"):
            cut = text.find(stop, pos, end)
            if cut >= 0:
                end = cut
        cut = lower.find("confidence", pos, end)
        if cut >= 0:
            end = cut
        value = text[pos:end].strip(" \t\r'\"`*.,;:\u2018\u2019\u201c\u201d")
        if value:
            return value
    return None


def _dict_region(text: str, lower: str) -> tuple[int, int, bool] | None:
    """(start, end, closed) of the confidence dict, or None when there is none.

    The dict is the first '{' after the first 'confidence', else the first '{' at all; it ends at
    the next '}' (closed) or at the end of the text (truncated). Without any '{', a brace-less
    list after 'Confidence:' is scanned to the end of the text.
    """
    conf = lower.find("confidence")
    start = text.find("{", conf) if conf >= 0 else -1
    if start < 0:
        start = text.find("{")
    if start < 0:
        if conf < 0:
            return None
        colon = text.find(":", conf)
        return (colon + 1, len(text), False) if colon >= 0 else None
    end = text.find("}", start)
    return (start, end, True) if end >= 0 else (start, len(text), False)


def _key_from_span(span: str) -> str:
    """The key that ends a span of text before ':' (quoted: inside the quotes; else the last item)."""
    span = span.rstrip(" \t\r\n}")
    if span and span[-1] in _OPENING_QUOTE:
        open_at = span.rfind(_OPENING_QUOTE[span[-1]], 0, len(span) - 1)
        if open_at >= 0:
            return span[open_at + 1 : -1]
        span = span[:-1]
    cut = max(
        span.rfind(","),
        span.rfind("{"),
        span.rfind("}"),
        span.rfind("\n"),
        span.rfind(";"),
    )
    key = span[cut + 1 :].strip(" \t\r'\"`\u2018\u2019\u201c\u201d")
    bullet = _BULLET.match(key)  # "- goldfish: 95", "2. hen: 3"
    return key[bullet.end() :] if bullet else key


def _scan_pairs(text: str, start: int, end: int, limit: int) -> list[tuple[str, float]]:
    """The (key, value) pairs in text[start:end], at most ``limit`` + 1 of them.

    One pass over ':'-anchored value tokens; the key of a pair is read from the text between the
    previous value and its ':'.
    """
    pairs: list[tuple[str, float]] = []
    append = pairs.append
    prev = start
    for m in _VALUE.finditer(text, start, end):
        if len(pairs) > limit:
            break
        colon = m.start()
        if colon > prev and text[colon - 1] == "'":  # inline fast case of _key_from_span
            open_at = text.rfind("'", prev, colon - 1)
            if open_at >= 0:
                append((text[open_at + 1 : colon - 1], float(m[1])))
                prev = m.end()
                continue
        plain = _PLAIN_KEY_SPAN.fullmatch(text, prev, colon)
        if plain:  # the other fast case: an unquoted key
            append((plain[1], float(m[1])))
            prev = m.end()
            continue
        append((_key_from_span(text[prev:colon]), float(m[1])))
        prev = m.end()
    return pairs


def _reject_constant(name: str) -> float:
    raise ValueError(name)  # NaN / Infinity: not numbers the general scan would read


_JSON = json.JSONDecoder(parse_int=float, parse_constant=_reject_constant)
# JSON values the general scan would not read
_NOT_NUMBERS = ("[", "true", "false", "null")


def _fast_dict(region: str) -> dict[str, float] | None:
    """A clean ``{'key': number, ...}`` region decoded in C, or None for the general scan.

    Clean: no double quotes or backslashes, every ':' and quote belongs to a key-value pair, no
    key twice, only numbers as values (a key containing 'true' etc. merely takes the general
    scan). For such a region the general scan finds exactly the same pairs (tested on every
    released answer).
    """
    colons = region.count(":")
    if not colons or '"' in region or "\\" in region or region.count("'") != 2 * colons:
        return None
    if any(word in region for word in _NOT_NUMBERS):
        return None
    try:
        raw = _JSON.decode(region.replace("'", '"'))
    except ValueError:
        return None
    return raw if type(raw) is dict and len(raw) == colons else None


def _listing(label: str, keys: list[str]) -> str:
    shown = ", ".join(k[:40] for k in keys[:_MAX_LISTED])
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"{label}: {shown}{more}"


def _assign(
    pairs: list[tuple[str, float]], index: ClassIndex, repair: bool
) -> tuple[dict[str, float], list[str], list[str], dict[str, str]]:
    """Map raw pairs to classes: (confidences in answer order, duplicate classes, unknown keys,
    repaired keys). Keys are read exactly / normalised first; then each distinct key left over is
    repaired (in answer order) against the classes that still have no value."""
    exact = index.exact
    conf: dict[str, float] = {}
    dups: dict[str, None] = {}
    leftover: dict[str, float] = {}  # unknown key -> its first value
    repeated: set[str] = set()  # unknown keys written more than once
    seen: dict[str, str | None] = {}  # repetition loops repeat the same keys: each is read once
    for key, value in pairs:
        name = exact.get(key)
        if name is None:
            name = seen[key] if key in seen else seen.setdefault(key, index.find(key))
        if name is None:
            if key in leftover:
                repeated.add(key)
            else:
                leftover[key] = value
        elif name in conf:
            dups.setdefault(name, None)  # first value wins
        else:
            conf[name] = value
    repaired: dict[str, str] = {}
    if repair and leftover:
        for key in list(leftover):
            name = index.repair(key, conf)  # conf: the classes that already have a value
            if name is None:
                continue
            repaired[key] = name
            conf[name] = leftover.pop(key)  # a repaired key repeated: its first value, like any key
            if key in repeated:
                dups.setdefault(name, None)
        if repaired:  # back into answer order: a class sits where its value was read
            where: dict[str, int] = {}
            for position, (key, _) in enumerate(pairs):
                name = exact.get(key) or seen.get(key) or repaired.get(key)
                if name is not None:
                    where.setdefault(name, position)
            conf = dict(sorted(conf.items(), key=lambda item: where[item[0]]))
    unknown = [key.strip() or "''" for key in leftover]
    return conf, list(dups), list(dict.fromkeys(unknown)), repaired


def _as_float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _canonical_example(example: Mapping[str, float], index: ClassIndex) -> dict[str, float | None]:
    canon: dict[str, float | None] = {}
    for key, value in example.items():
        name = index.find(str(key))
        if name is not None and name not in canon:
            canon[name] = _as_float(value)
    return canon


def _is_copy(
    conf: Mapping[str, float],
    examples: Sequence[Mapping[str, float]],
    index: ClassIndex,
) -> bool:
    """True when every parsed value equals one example's value for that class (3+ classes, or all).

    Checked class by class against the example's raw keys first, so a genuine answer is rejected
    at its first differing value without canonicalising the example.
    """
    for example in examples:
        canon = None
        for name, value in conf.items():
            given = example.get(name)
            if given is None:
                canon = _canonical_example(example, index) if canon is None else canon
                given = canon.get(name)
            if given is None or _as_float(given) != value:
                break
        else:
            if len(conf) >= min(3, len(example)):
                return True
    return False


def _argmax(conf: Mapping[str, float], classes: Sequence[str]) -> str | None:
    best, best_value = None, None
    for name in classes:
        value = conf.get(name)
        if value is not None and (best_value is None or value > best_value):
            best, best_value = name, value
    return best


def _looks_like_refusal(lower: str) -> bool:
    head = lower[:_REFUSAL_WINDOW].translate(_QUOTE_MAP)
    return any(phrase in head for phrase in _REFUSALS)


def parse_answer(
    text: str, classes: Sequence[str], examples: Sequence[Mapping[str, float]] = (), repair: bool = True
) -> ParsedAnswer:
    """Parse one answer against the prompt's full class list (in prompt order).

    Confidences are kept as given (the prompt's 0..100 scale); see the module docstring for every
    convention of the result.

    Parameters
    ----------
    text : str
        The model's answer. A non-str is parsed as ``str(text)``, None as empty.
    classes : sequence of str
        The prompt's class list, in prompt order (for stage 2 it includes the auxiliary classes).
    examples : sequence of mapping of str to float, default=()
        The example confidence dicts shown in the prompt; an answer whose values all equal one of
        them is ``failed`` with reason ``"copied example"``.
    repair : bool, default=True
        Whether unknown keys (and the prediction) may be repaired as one-edit typos.
        ``repair=False`` is the strict reading: keys and prediction matched exactly or normalised
        only.

    Returns
    -------
    answer : ParsedAnswer
        The prediction is the ``Prediction:`` value matched to ``classes``; if missing or
        unmatched, the argmax of the parsed confidences (ties: first in class order); None when
        neither exists. ``status`` is ``"ok"`` / ``"partial"`` / ``"failed"``, ``reason`` the notes.

    See Also
    --------
    match_class : How one key is matched to the class list.
    reguide_tasks.answers.scoring.ood_score : The OoD score of a parsed answer.

    Notes
    -----
    Never raises for any ``text``: every step is total on strings, which the fuzz tests check on
    random, mutated and 100k-character input.

    Examples
    --------
    >>> from reguide_tasks.answers.parsing import parse_answer
    >>> classes = ["goldfish", "stingray", "hen"]
    >>> answer = parse_answer("Prediction: Goldfish\\nConfidence: {'goldfish': 70, 'tingray': 20.5, 'pear': 3}", classes)
    >>> answer.prediction, answer.confidences, answer.status
    ('goldfish', {'goldfish': 70.0, 'stingray': 20.5}, 'partial')
    >>> answer.reason
    'missing 1 class; unknown keys: pear'
    >>> answer.repaired_keys, answer.unknown_keys
    ({'tingray': 'stingray'}, ('pear',))

    The strict reading leaves the typo unknown:

    >>> parse_answer("Confidence: {'goldfish': 70, 'tingray': 20.5}", classes, repair=False).confidences
    {'goldfish': 70.0}
    >>> parse_answer("Sorry, I can't help with that.", classes)
    ParsedAnswer(prediction=None, confidences={}, status='failed', reason='refusal', repaired_keys={},
                 unknown_keys=(), repaired_prediction=None)
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    index = class_index(tuple(classes))
    text = _clean(text)
    if not text.strip():
        return ParsedAnswer(None, {}, "failed", "empty answer")
    lower = text.lower()
    raw_prediction = _prediction_text(text, lower)
    prediction, prediction_repaired = index.match(raw_prediction, repair) if raw_prediction else (None, False)
    read = _Reading(prediction, raw_prediction if prediction_repaired else None)

    region = _dict_region(text, lower)
    if region is None:
        return _failed(read, lower, "no confidence dict")
    start, end, closed = region
    braced = text.startswith("{", start)
    raw = _fast_dict(text[start : end + 1]) if closed else None
    if raw is not None and raw.keys() <= index.exact.keys():
        return _finish(read, raw, [], [], index, examples)  # the common, clean case

    limit = _PAIRS_PER_CLASS * len(index.unique) + 64
    if raw is not None:
        pairs = list(raw.items())
    else:
        pairs = _scan_pairs(text, start, end, limit)
        if not pairs and closed and text.startswith(":", end + 1):
            pairs = _scan_pairs(text, start, len(text), limit)  # "{goldfish}: 33.4, {hen}: 2.1"
    if not pairs:
        return _failed(read, lower, "no confidence values" if braced else "no confidence dict")
    conf, dups, read.unknown, read.repaired = _assign(pairs[:limit], index, repair)
    notes = []
    if braced and not closed:
        notes.append("truncated dict")
    if len(pairs) > limit:
        notes.append(f"pairs after the first {limit} ignored")
    if not conf:
        return _failed(read, lower, _listing("unknown keys", read.unknown))
    return _finish(read, conf, dups, notes, index, examples)


class _Reading:
    """How an answer's names were read, carried into its ParsedAnswer."""

    __slots__ = ("prediction", "raw_prediction", "repaired", "unknown")

    def __init__(self, prediction: str | None, raw_prediction: str | None) -> None:
        self.prediction = prediction
        self.raw_prediction = raw_prediction  # the value as written, when it took a repair
        self.unknown: list[str] = []
        self.repaired: dict[str, str] = {}

    def answer(self, prediction: str | None, conf: dict[str, float], status: str, reason: str) -> ParsedAnswer:
        return ParsedAnswer(prediction, conf, status, reason, self.repaired, tuple(self.unknown), self.raw_prediction)


def _failed(read: _Reading, lower: str, reason: str) -> ParsedAnswer:
    """A failed answer; a refusal wins over the structural reason."""
    return read.answer(read.prediction, {}, "failed", "refusal" if _looks_like_refusal(lower) else reason)


def _finish(
    read: _Reading,
    conf: dict[str, float],
    dups: list[str],
    notes: list[str],
    index: ClassIndex,
    examples: Sequence[Mapping[str, float]],
) -> ParsedAnswer:
    """Status, reason and fallback prediction for an answer with at least one confidence."""
    if examples and _is_copy(conf, examples, index):
        return read.answer(read.prediction, {}, "failed", "copied example")
    missing = len(index.unique) - len(conf)
    if missing:
        notes.append(f"missing {missing} class{'es' if missing != 1 else ''}")
    if dups:
        notes.append(_listing("duplicate keys", dups))
    if read.unknown:
        notes.append(_listing("unknown keys", read.unknown))
    prediction = read.prediction if read.prediction is not None else _argmax(conf, index.unique)
    return read.answer(prediction, conf, "partial" if missing else "ok", "; ".join(notes))
