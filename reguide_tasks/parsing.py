"""Parse an LVLM's free-text answer to the baseline / stage-2 classification prompt.

The prompt asks for::

    Prediction: <class>
    Confidence: {'<class>': <0..100>, ...}

Real answers break this in many ways (refusals, no dict, copied example dicts, truncated dicts,
garbled or duplicated keys, unquoted keys, JSON, percent signs, markdown, special tokens, repetition
loops). :func:`parse_answer` turns any string into a :class:`ParsedAnswer` and never raises.

Conventions:

- Confidences are kept as given (the prompt's 0..100 scale); nothing is rescaled or clipped.
- Keys are matched to the prompt's class list by :func:`match_class`: exact, then normalised (case,
  spacing, punctuation), then a conservative typo match (one edit, keys of 5+ characters, unique).
- A key that appears twice keeps its first value. ``confidences`` is in answer order.
- The prediction is the ``Prediction:`` value matched to the class list; if missing or unmatched,
  the argmax of the confidences (ties: first in class order); None when there is neither.
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
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from os.path import commonprefix

__all__ = ["ParsedAnswer", "match_class", "parse_answer"]

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# A value token: ':' then an optionally quoted number. The second \s* only runs after a quote, so a
# long run of blanks is scanned once per ':' (no nested quantifiers over the same characters).
_VALUE = re.compile(r":\s*(?:['\"]\s*)?(" + _NUMBER + ")")
_PREDICTION_COLON = re.compile(r"[ \t'\"]{0,4}:[ \t'\"`*]*")
_BULLET = re.compile(r"(?:[-*\u2022]|\d{1,3}[.)])\s+")
_NON_WORD = re.compile(r"[\W_]+")
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
_MAX_FUZZY_KEYS = 32  # typo look-ups per answer (bounds garbage-heavy answers)
_MAX_FUZZY_LEN = 80  # longer keys are garbage, not typos
_MIN_FUZZY_LEN = 5  # 'hen' vs 'hyena', 'ant' vs 'ants': never fuzzy-match short keys
_MAX_LISTED = 5  # keys named in a reason
# pairs read per class: a repetition loop adds nothing after its first rounds
_PAIRS_PER_CLASS = 8
_FUZZY_CACHE_SIZE = 50_000


@dataclass(frozen=True)
class ParsedAnswer:
    """One parsed answer; see the module docstring for the conventions."""

    prediction: str | None
    confidences: dict[str, float]
    status: str
    reason: str


def _normalize(name: str) -> str:
    """Lower-case, punctuation and underscores to single spaces, stripped."""
    return _NON_WORD.sub(" ", name.lower()).strip()


def _within_one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one insertion, deletion, substitution or swap."""
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    i = len(commonprefix((a, b)))
    if i == la == lb:
        return True
    if la == lb:
        if a[i + 1 :] == b[i + 1 :]:
            return True
        return i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
    return a[i + 1 :] == b[i:] if la > lb else a[i:] == b[i + 1 :]


class _ClassTable:
    """Look-ups for one class list: raw names, then (built on first need) normalised names,
    names by length and a typo cache. Stage-2 lists differ per image, so the cheap part comes first.
    """

    def __init__(self, classes: tuple[str, ...]) -> None:
        self.unique = tuple(dict.fromkeys(classes))
        self.exact: dict[str, str] = dict(zip(self.unique, self.unique))
        self._normalized: dict[str, str] | None = None
        self.by_length: dict[int, list[tuple[str, str]]] = {}
        self.fuzzy: dict[str, str | None] = {}

    @property
    def normalized(self) -> dict[str, str]:
        if self._normalized is None:
            self._normalized = {}
            for name in self.unique:
                norm = _normalize(name)
                if norm and norm not in self._normalized:  # first spelling in class order wins
                    self._normalized[norm] = name
                    self.by_length.setdefault(len(norm), []).append((norm, name))
        return self._normalized

    def lookup(self, key: str, allow_fuzzy: bool = True) -> str | None:
        hit = self.exact.get(key)
        if hit is not None:
            return hit
        norm = _normalize(key)
        hit = self.normalized.get(norm)
        if hit is not None or not allow_fuzzy:
            return hit
        return self._fuzzy(norm)

    def _fuzzy(self, norm: str) -> str | None:
        if not _MIN_FUZZY_LEN <= len(norm) <= _MAX_FUZZY_LEN:
            return None
        if norm in self.fuzzy:
            return self.fuzzy[norm]
        found: set[str] = set()
        for length in (len(norm) - 1, len(norm), len(norm) + 1):
            for cand, name in self.by_length.get(length, ()):
                if _within_one_edit(norm, cand):
                    found.add(name)
        hit = found.pop() if len(found) == 1 else None  # ambiguous typo: refuse to guess
        if len(self.fuzzy) >= _FUZZY_CACHE_SIZE:
            self.fuzzy.clear()
        self.fuzzy[norm] = hit
        return hit


@lru_cache(maxsize=256)
def _table(classes: tuple[str, ...]) -> _ClassTable:
    return _ClassTable(classes)


def match_class(key: str, classes: Sequence[str]) -> str | None:
    """Map a key (or prediction) from an answer to its canonical class name, or None.

    Exact match first, then case / spacing / punctuation-insensitive ('Granny smith',
    'shih-tzu', "'tennis racket.'"), then a unique one-edit typo for keys of 5+ characters
    ('tingray' -> 'stingray', 'cuba diver' -> 'scuba diver'); short keys are never fuzzy-matched
    ('hen' never becomes 'hyena'), nor are two-edit differences ('basketball player' stays unknown
    rather than becoming 'baseball player').
    """
    if not isinstance(key, str):
        return None
    return _table(tuple(classes)).lookup(key)


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


def _assign(pairs: list[tuple[str, float]], table: _ClassTable) -> tuple[dict[str, float], list[str], list[str]]:
    """Map raw pairs to classes in answer order: (confidences, duplicate classes, unknown keys)."""
    exact = table.exact
    conf: dict[str, float] = {}
    dups: dict[str, None] = {}
    unknown: dict[str, None] = {}
    seen: dict[str, str | None] = {}  # repetition loops repeat the same unknown keys
    fuzzy_left = _MAX_FUZZY_KEYS
    for key, value in pairs:
        name = exact.get(key)
        if name is None:
            if key in seen:
                name = seen[key]
            else:
                name = seen[key] = table.lookup(key, allow_fuzzy=fuzzy_left > 0)
                fuzzy_left -= 1
        if name is None:
            unknown.setdefault(key.strip() or "''", None)
        elif name in conf:
            dups.setdefault(name, None)  # first value wins
        else:
            conf[name] = value
    return conf, list(dups), list(unknown)


def _as_float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _canonical_example(example: Mapping[str, float], table: _ClassTable) -> dict[str, float | None]:
    canon: dict[str, float | None] = {}
    for key, value in example.items():
        name = table.lookup(str(key), allow_fuzzy=False)
        if name is not None and name not in canon:
            canon[name] = _as_float(value)
    return canon


def _is_copy(
    conf: Mapping[str, float],
    examples: Sequence[Mapping[str, float]],
    table: _ClassTable,
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
                canon = _canonical_example(example, table) if canon is None else canon
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


def parse_answer(text: str, classes: Sequence[str], examples: Sequence[Mapping[str, float]] = ()) -> ParsedAnswer:
    """Parse one answer against the prompt's full class list (in prompt order).

    ``examples`` are the example confidence dicts shown in the prompt; an answer whose values all
    equal one of them is ``failed`` with reason ``"copied example"``. The prediction is the
    ``Prediction:`` value matched to ``classes``; if missing or unmatched, the argmax of the parsed
    confidences (ties: first in class order); None when neither exists.

    Never raises for any ``text`` (a non-str is parsed as ``str(text)``, None as empty): every step
    is total on strings, which the fuzz tests check on random, mutated and 100k-character input.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    table = _table(tuple(classes))
    text = _clean(text)
    if not text.strip():
        return ParsedAnswer(None, {}, "failed", "empty answer")
    lower = text.lower()
    raw_prediction = _prediction_text(text, lower)
    prediction = table.lookup(raw_prediction) if raw_prediction else None

    region = _dict_region(text, lower)
    if region is None:
        return _failed(prediction, lower, "no confidence dict")
    start, end, closed = region
    braced = text.startswith("{", start)
    raw = _fast_dict(text[start : end + 1]) if closed else None
    if raw is not None and raw.keys() <= table.exact.keys():
        return _finish(prediction, raw, [], [], [], table, examples)  # the common, clean case

    limit = _PAIRS_PER_CLASS * len(table.unique) + 64
    if raw is not None:
        pairs = list(raw.items())
    else:
        pairs = _scan_pairs(text, start, end, limit)
        if not pairs and closed and text.startswith(":", end + 1):
            pairs = _scan_pairs(text, start, len(text), limit)  # "{goldfish}: 33.4, {hen}: 2.1"
    if not pairs:
        return _failed(
            prediction,
            lower,
            "no confidence values" if braced else "no confidence dict",
        )
    conf, dups, unknown = _assign(pairs[:limit], table)
    notes = []
    if braced and not closed:
        notes.append("truncated dict")
    if len(pairs) > limit:
        notes.append(f"pairs after the first {limit} ignored")
    if not conf:
        return _failed(prediction, lower, _listing("unknown keys", unknown))
    return _finish(prediction, conf, dups, unknown, notes, table, examples)


def _failed(prediction: str | None, lower: str, reason: str) -> ParsedAnswer:
    """A failed answer; a refusal wins over the structural reason."""
    return ParsedAnswer(prediction, {}, "failed", "refusal" if _looks_like_refusal(lower) else reason)


def _finish(
    prediction: str | None,
    conf: dict[str, float],
    dups: list[str],
    unknown: list[str],
    notes: list[str],
    table: _ClassTable,
    examples: Sequence[Mapping[str, float]],
) -> ParsedAnswer:
    """Status, reason and fallback prediction for an answer with at least one confidence."""
    if examples and _is_copy(conf, examples, table):
        return ParsedAnswer(prediction, {}, "failed", "copied example")
    missing = len(table.unique) - len(conf)
    if missing:
        notes.append(f"missing {missing} class{'es' if missing != 1 else ''}")
    if dups:
        notes.append(_listing("duplicate keys", dups))
    if unknown:
        notes.append(_listing("unknown keys", unknown))
    if prediction is None:
        prediction = _argmax(conf, table.unique)
    return ParsedAnswer(prediction, conf, "partial" if missing else "ok", "; ".join(notes))
