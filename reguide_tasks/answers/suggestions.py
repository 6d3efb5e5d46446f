"""ReGuide stage 1: parse the model's suggested class names, filter them into auxiliary OoD classes.

Stage 1 asks for 40 class names, 20 visually similar to the image (``near``) then 20 visually
dissimilar ones (``far``), as ``Class suggested: a, b, c, ...``. Real answers break the format:
numbered (``1. jet``, ``1) jet``, also inline ``1. jet 2. glider``) or bulleted lists, one name per
line (or per run of 2+ blanks, which is what a flattened newline looks like in the released files),
``Visually similar:`` / ``Dissimilar classes:`` / ``Different domains:`` headers, markdown, trailing
periods, a missing / padded / repeated ``Class suggested:`` prefix, a preamble ("I'm sorry, I can't
identify people, but here are ..."), semicolons, repetition loops, refusals.

:func:`parse_suggestions` never raises on a ``str``. Its work is bounded: only the first
``MAX_CHARS`` characters are read and at most ``4 * (n_near + n_far)`` names (40 to 1000) are
kept; every regex here is linear (bounded or unambiguous quantifiers only).

:func:`filter_suggestions` drops names that are ID classes, the rejection class, duplicates and
empties (all compared through :func:`suggestion_key`), then caps the count.

Why one module of this length: most of it is the bounded, linear grammar of a stage-1 answer (headers,
numbering, separators, prose); the pieces only make sense together, and filtering shares its
comparison key (:func:`suggestion_key`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice

from reguide_tasks.vocab import REJECTION_CLASS

__all__ = [
    "MAX_CHARS",
    "REJECTION_CLASS",
    "FilterResult",
    "Suggestions",
    "clean_item",
    "filter_suggestions",
    "parse_suggestions",
    "suggestion_key",
]

MAX_CHARS = 10_000  # a 40-name answer is < 2k characters; longer text is a repetition loop
_MAX_ITEM_CHARS = 100  # longer "names" are prose
_MAX_ITEM_WORDS = 10
_MAX_PIECE_CHARS = 600  # a longer run without separators is a paragraph
_MAX_MARKS = 256  # prefixes / headers looked at (a loop can repeat them thousands of times)

# ---------------------------------------------------------------------------------------------
# suggestion_key
# ---------------------------------------------------------------------------------------------

_APOSTROPHES = str.maketrans("", "", "'\u2018\u2019\u02bc`")
_NON_WORD = re.compile(r"[\W_]+")
_IRREGULAR_PLURALS = {
    "mice": "mouse", "geese": "goose", "teeth": "tooth", "feet": "foot", "children": "child",
    "men": "man", "women": "woman", "people": "person", "oxen": "ox", "cacti": "cactus",
    "fungi": "fungus", "octopi": "octopus", "buses": "bus", "gases": "gas", "lenses": "lens",
    "wolves": "wolf", "knives": "knife", "leaves": "leaf", "loaves": "loaf", "shelves": "shelf",
    "calves": "calf", "halves": "half", "scarves": "scarf", "hooves": "hoof", "thieves": "thief",
    "wives": "wife", "lives": "life", "elves": "elf", "tomatoes": "tomato", "potatoes": "potato",
    "mangoes": "mango", "heroes": "hero", "volcanoes": "volcano", "mosquitoes": "mosquito",
    "echoes": "echo", "torpedoes": "torpedo", "dominoes": "domino", "buffaloes": "buffalo",
    "tornadoes": "tornado",
}


def _fold_plural(word: str) -> str:
    """Fold one casefolded word to a singular key ('ponies' -> 'pony', 'boxes' -> 'box').

    Words ending in 'ss', 'us', 'is' are left alone ('glass', 'bus', 'mantis'), as are words under
    4 letters. A singular '-ie' and a plural '-ies' both fold to '-y' ('collie', 'collies' ->
    'colly'), so both kinds of '-ies' plural meet their singular. The fold is idempotent.
    """
    word = _IRREGULAR_PLURALS.get(word, word)
    if len(word) < 4 or not word.isalpha():
        return word
    if word.endswith("ie"):
        return word[:-2] + "y"
    if not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) >= 5:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]
    return word[:-1]


@lru_cache(maxsize=1 << 16)  # a model suggests the same names again and again, ID classes every document
def suggestion_key(name: str) -> str:
    """The comparison key of a class name.

    NFKC + casefold; apostrophes are deleted ("bishop's cap" ~ "bishops cap"); every other run of
    punctuation, hyphens, underscores or blanks becomes one space; each word is folded to a simple
    singular (:func:`_fold_plural`: 'cocker spaniels' ~ 'cocker spaniel', 'boxes' ~ 'box',
    'ponies' ~ 'pony'; 'glass' and 'bus' stay). Not a display form: 'collie' keys as 'colly'.
    """
    # NFKC both sides of casefold: '\U0001d54a' only folds after NFKC, and casefold can
    # decompose ('\u0390'), which the second NFKC recomposes. This keeps the key idempotent.
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", str(name)).casefold())
    text = text.translate(_APOSTROPHES)
    return " ".join(_fold_plural(word) for word in _NON_WORD.sub(" ", text).split())


def _compact(key: str) -> str:
    return key.replace(" ", "")


# ---------------------------------------------------------------------------------------------
# Cleaning one item
# ---------------------------------------------------------------------------------------------

_EDGE_JUNK = (
    " \t\r\n\f\v\u00a0\"'`*_#>|-\u2010\u2013\u2014\u2022\u00b7\u25aa\u25cf\u25e6\u2023\u27a4\u25ba"
    "\u201c\u201d\u2018\u2019\u00ab\u00bb+~=:,;"
)
_TRAILING_JUNK = _EDGE_JUNK + ".!?"
# Leading junk: edge characters and list numbers ('1.', '1)', '(1)') followed by a blank or the end.
# The alternatives start with disjoint characters, so the star cannot backtrack.
_LEADING_JUNK = re.compile("(?:[" + re.escape(_EDGE_JUNK) + r"]|\(?\d{1,3}[.)](?=\s|$))*")
_MARKDOWN = str.maketrans("", "", "*`")


def clean_item(item: str) -> str:
    """Display form of one name: no bullets, list numbers, quotes, markdown, edge punctuation
    (trailing '.' included) or extra blanks; case and inner punctuation kept. Idempotent."""
    text = " ".join(str(item).translate(_MARKDOWN).split())
    while True:
        text = text[_LEADING_JUNK.match(text).end():].rstrip(_TRAILING_JUNK)
        # Loops again only when the right strip leaves a bare list number ("1)!" -> "1)").
        if not _LEADING_JUNK.match(text).end():
            return text


# ---------------------------------------------------------------------------------------------
# parse_suggestions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestions:
    """Parsed stage-1 answer.

    ``items``: every name in answer order, cleaned (:func:`clean_item`), duplicates kept.
    ``near`` / ``far``: split by a dissimilar-type header when the answer has one (names before it
    are near), else by position (first ``n_near`` names, the rest). ``near + far`` holds every item.
    ``status``: ``"ok"`` exactly ``n_near + n_far`` names, ``"partial"`` some but not that many,
    ``"failed"`` none. ``reason``: ``"; "``-joined notes ("" for a clean answer).
    """

    near: list[str]
    far: list[str]
    items: list[str]
    status: str
    reason: str


_SPECIAL_TOKEN = re.compile(r"<\|[^<>|\n]{0,40}\|>|</?s>")
_PRE_CLEAN = str.maketrans({
    "*": None, "`": None, "#": None, "\r": "\n", "\u2022": "\n", "\u25aa": "\n", "\u25cf": "\n",
    "\u25e6": "\n", "\u2023": "\n", "\u27a4": "\n", "\u25ba": "\n", "\uff0c": ",", "\u3001": ",",
    "\uff1b": ";", "\uff1a": ":", "\u00a0": " ",
})
# 'Class suggested:' and its variants; the 'suggestions' forms need the colon (they are common in
# prose: "I can't provide class suggestions for this image.").
_MARKER = re.compile(
    r"(?i)\b(?:class(?:es)?[ \t]{0,3}(?:names?[ \t]{0,3})?suggested"
    r"|suggested[ \t]{1,3}class(?:es)?(?:[ \t]{1,3}names?)?)\b[ \t]{0,3}:?"
    r"|\bclass(?:es)?[ \t]{0,3}(?:names?[ \t]{0,3})?suggestions?[ \t]{0,3}:"
)
_FAR_WORDS = (
    r"(?:dis{1,2}|(?:not|non)[ \t-]?(?:visually[ \t]{1,3})?|un)s?im{1,2}il{1,2}i?ar"
    r"|different[ \t]{1,3}domains?|unrelated"
)
_NEAR_WORDS = r"sim{1,2}il{1,2}i?ar"
_KEYWORD_BEFORE = re.compile(rf"(?i)\b(?:{_FAR_WORDS}|{_NEAR_WORDS})[ \t]{{1,3}}$")
_HEADER_HINTS = ("imil", "differen", "unrelated")  # no header without one of these (casefolded)
_HEADER_PREFIX = r"(?:(?:class(?:es)?|names?)[ \t]{1,3})?(?:visually[ \t]{1,3})?"
# A section header ending in ':' ("Visually dissimilar or different domain:", "Similar classes:"),
# or alone on its line ("**Visually Similar**").
_HEADER_COLON = re.compile(
    rf"(?i)\b{_HEADER_PREFIX}(?:(?P<far>{_FAR_WORDS})|(?P<near>{_NEAR_WORDS}))\b"
    r"[^:\n,;.]{0,40}:"
)
_HEADER_LINE = re.compile(
    rf"(?im)^[ \t>-]{{0,8}}{_HEADER_PREFIX}(?:(?P<far>{_FAR_WORDS})|(?P<near>{_NEAR_WORDS}))"
    r"(?:[ \t]{1,3}(?:class(?:es)?|class[ \t]names|names|items|objects|categories|concepts))?"
    r"[ \t]{0,8}(?:\(\d{1,3}\))?[ \t]{0,8}$"
)
# A list number: digits then '.' or ')', after a blank / start / '(' and before a blank / end.
_NUMBER_MARK = re.compile(r"(?<![^\s(\[])\(?(\d{1,3})[.)](?=\s|$)")
_SHORT_PARENS = re.compile(r"\([^()\n]{0,80}\)")
_MASKED = str.maketrans({",": "\ue000", ";": "\ue001"})
_UNMASKED = str.maketrans({"\ue000": ",", "\ue001": ";"})
_SEPARATORS = re.compile(r"[,;\n|]|[ \t]{2,}")
_LINE_SEPARATORS = re.compile(r"\n|[ \t]{2,}")
_INLINE_BULLET = re.compile(r"(?:^|(?<=\s))[-\u2013\u2014+][ \t]+")
_TRAILING_NUMBER = re.compile(r"[ \t](\d{1,3})$")
_DESCRIPTION_DASH = re.compile(r"\s[-\u2013\u2014]\s")
_CONJUNCTION = re.compile(r"(?i)(?:and|or|&) (?=\S)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LEAD_IN = re.compile(
    r"(?i)\b(?:here|are|is|suggest\w{0,5}|class(?:es)?|names?|similar|dissimilar|items?|list"
    r"|following|some|based|image|categor(?:y|ies)|examples?|options?|answers?|response)\b"
)
_PROSE = re.compile(
    r"(?i)(?<![\w'\u2019])(?:i|i['\u2019]m|im|i['\u2019]ve|i['\u2019]ll|i['\u2019]d|me|my|you"
    r"|your|we|sorry|unable|cannot|can['\u2019]?t|can not|couldn['\u2019]?t|apologi[sz]e"
    r"|please|here|let me|feel free)(?![\w'\u2019])"
)
# Sentence openers left over when a refusal is cut at its commas and periods.
_DISCOURSE_WORDS = frozenset({
    "however", "therefore", "also", "additionally", "unfortunately", "instead", "sure",
    "certainly", "alternatively", "otherwise", "nevertheless", "meanwhile", "hence", "thus",
    "so", "but", "then", "ok", "okay", "thanks", "thank you", "of course", "absolutely",
})
# The start of the prompt's example answer, which some models copy back before their own list.
_EXAMPLE_KEY = "jet fighter get helicopter"


@dataclass
class _Section:
    kind: str  # "near", "far" or "" (before any header)
    text: str


def _item_limit(n_near: int, n_far: int) -> int:
    return min(max(4 * (n_near + n_far), 40), 1000)


def _strip_preamble(body: str) -> tuple[str, list[str], bool]:
    """Return the list text after the first 'Class suggested:' marker (later markers become line
    breaks, a copied prompt example is dropped), notes, and whether a marker was found; the whole
    body when there is none."""
    markers = [
        m.span()
        for m in islice(_MARKER.finditer(body), _MAX_MARKS)
        # "Dissimilar class suggested:" is a header, not the prefix.
        if not _KEYWORD_BEFORE.search(body, max(0, m.start() - 40), m.start())
    ]
    if not markers:
        return body, [], False
    notes = []
    if markers[0][0] > 0 and body[: markers[0][0]].strip():
        notes.append("preamble dropped")
    bounds = [end for _, end in markers]
    stops = [start for start, _ in markers[1:]] + [len(body)]
    segments = [body[a:b] for a, b in zip(bounds, stops)]
    if sum(1 for s in segments if s.strip(_EDGE_JUNK)) > 1:
        notes.append("repeated prefix")
    kept = [s for s in segments if not suggestion_key(s[:80]).startswith(_EXAMPLE_KEY)]
    if kept and len(kept) < len(segments):
        notes.append("copied example dropped")
        segments = kept
    text = "\n".join(segments)
    if not text.strip() and markers[0][0] > 0:
        return body[: markers[0][0]], notes + ["nothing after the prefix"], True
    return text, notes, True


def _find_headers(text: str) -> list[tuple[int, int, str]]:
    """Header spans (start, end, 'near'|'far') in text order, without overlaps."""
    folded = text.casefold()
    if not any(hint in folded for hint in _HEADER_HINTS):
        return []
    found = [
        (m.start(), m.end(), "far" if m.group("far") else "near")
        for regex in (_HEADER_COLON, _HEADER_LINE)
        for m in islice(regex.finditer(text), _MAX_MARKS)
    ]
    found.sort()
    headers: list[tuple[int, int, str]] = []
    for start, end, kind in found:
        if headers and start < headers[-1][1]:
            continue
        headers.append((start, end, kind))
    return headers


def _sections(text: str) -> tuple[list[_Section], bool, bool]:
    """Cut text at headers. Returns the sections, whether a far header carries the split, and
    whether there was any header."""
    headers = _find_headers(text)
    if not any(kind == "far" for _, _, kind in headers):
        # Without a dissimilar header the split is positional; a lone 'similar' header is dropped.
        pieces, last = [], 0
        for start, end, _ in headers:
            pieces.append(text[last:start])
            last = end
        pieces.append(text[last:])
        return [_Section("", "\n".join(pieces))], False, bool(headers)
    sections = [_Section("", text[: headers[0][0]])]
    for i, (_, end, kind) in enumerate(headers):
        stop = headers[i + 1][0] if i + 1 < len(headers) else len(text)
        sections.append(_Section(kind, text[end:stop]))
    return sections, True, True


def _number_marks(text: str, first: int, most: int) -> list[tuple[int, int, int]]:
    """List-number marks (start, end, number) that form a sequence starting at 1 or ``first``;
    a restart at 1 and one skipped number are allowed. Other numbers are name text. Looks at
    ``2 * most`` candidates at most."""
    marks: list[tuple[int, int, int]] = []
    for m in islice(_NUMBER_MARK.finditer(text), 2 * most):
        number = int(m.group(1))
        if marks:
            ok = number in (marks[-1][2] + 1, marks[-1][2] + 2, 1)
        else:
            ok = number in (1, first)
        if ok:
            marks.append((m.start(), m.end(), number))
    if len(marks) == 1 and text[: marks[0][0]].strip():
        return []  # one lone number mid-text is part of a name ("formula 1.")
    return marks


def _split_pieces(text: str, first_number: int, most: int) -> tuple[list[str], int, bool]:
    """Split one section into raw pieces: ``2 * most`` list-number candidates and ``4 * most``
    separators at most (the rest stays in the last piece). Returns pieces, the next list number,
    and whether the section is a numbered list."""
    if "(" in text:
        text = _SHORT_PARENS.sub(lambda m: m.group(0).translate(_MASKED), text)
    marks = _number_marks(text, first_number, most)
    if marks:
        chunks = [text[: marks[0][0]]]
        for i, (_, end, _) in enumerate(marks):
            stop = marks[i + 1][0] if i + 1 < len(marks) else len(text)
            chunks.append(text[end:stop])
        next_number = marks[-1][2] + 1
        tail = _TRAILING_NUMBER.search(chunks[-1].rstrip())
        if tail is not None and int(tail.group(1)) == next_number:
            chunks[-1] = chunks[-1].rstrip()[: tail.start()]  # cut-off answer: "37. Wristwatch 38"
        # One number per name: only line breaks (not commas) split a numbered chunk further.
        pieces = [p for chunk in chunks[1:] for p in _LINE_SEPARATORS.split(chunk)]
        return _SEPARATORS.split(chunks[0], 4 * most) + pieces, next_number, True
    pieces = []
    for piece in _SEPARATORS.split(text, 4 * most):
        if piece.count(" - ") + piece.lstrip().startswith("- ") >= 2:
            pieces.extend(_INLINE_BULLET.split(piece))  # a flattened '- a - b - c' list
        else:
            pieces.append(piece)
    return pieces, first_number, False


def _names_from_piece(piece: str) -> tuple[list[str], bool]:
    """Names in one raw piece (usually one), and whether prose was dropped from it."""
    if len(piece) > _MAX_PIECE_CHARS:
        return [], True  # a paragraph, not a name
    piece = piece.translate(_UNMASKED)
    if ":" in piece:
        head, _, tail = piece.rpartition(":")
        # "Here are the names: lynx" -> 'lynx'; "Lynx: a wild cat" -> 'Lynx'.
        piece = tail if (_LEAD_IN.search(head) or _PROSE.search(head)) else head
    dash = _DESCRIPTION_DASH.search(piece)
    if dash is not None and piece[: dash.start()].strip(_EDGE_JUNK):
        piece = piece[: dash.start()]  # "Lynx - a wild cat" -> 'Lynx'
    prose = False
    if _PROSE.search(piece):
        prose = True
        sentences = [s for s in _SENTENCE_END.split(piece) if not _PROSE.search(s)]
    else:
        sentences = [piece]
    names = []
    for sentence in sentences:
        name = clean_item(sentence)
        if len(name) > _MAX_ITEM_CHARS or len(name.split()) > _MAX_ITEM_WORDS:
            name = clean_item(_SHORT_PARENS.sub(" ", name))  # drop a long parenthetical remark
            if len(name) > _MAX_ITEM_CHARS or len(name.split()) > _MAX_ITEM_WORDS:
                prose = True
                continue
        conjunction = _CONJUNCTION.match(name)
        if conjunction is not None:
            name = clean_item(name[conjunction.end():])  # "..., and tennis racket"
        if name.casefold() in _DISCOURSE_WORDS:
            prose = True
        elif name:
            names.append(name)
    return names, prose


def parse_suggestions(text: str, n_near: int = 20, n_far: int = 20) -> Suggestions:
    """Parse a stage-1 answer into near / far / all suggested class names.

    Near names are the ones the model gave as visually similar to the image, far names the
    dissimilar ones; see :class:`Suggestions` for how they are split.

    Parameters
    ----------
    text : str
        The model's stage-1 answer. Only the first :data:`MAX_CHARS` characters are read.
    n_near : int, default=20
        How many near names the prompt asked for.
    n_far : int, default=20
        How many far names the prompt asked for.

    Returns
    -------
    suggestions : Suggestions
        ``near``, ``far``, ``items`` (cleaned names, duplicates kept), ``status`` (``"ok"``:
        exactly ``n_near + n_far`` names, ``"partial"``, ``"failed"``: none) and ``reason``.
        At most ``4 * (n_near + n_far)`` names (40..1000) are kept.

    See Also
    --------
    filter_suggestions : Turn the parsed names into auxiliary OoD classes.

    Notes
    -----
    Never raises on a ``str``; a non-``str`` gives ``status="failed"``.

    Examples
    --------
    >>> from reguide_tasks.answers.suggestions import parse_suggestions
    >>> s = parse_suggestions("Class suggested: jet, glider, kite, apple, bread, sock", n_near=3, n_far=3)
    >>> s.near, s.far, s.status
    (['jet', 'glider', 'kite'], ['apple', 'bread', 'sock'], 'ok')

    A dissimilar-type header splits the names, whatever their count:

    >>> s = parse_suggestions("Visually similar: 1. jet 2. glider\\nDissimilar classes: 1. apple", n_near=2, n_far=2)
    >>> s.near, s.far, s.status
    (['jet', 'glider'], ['apple'], 'partial')
    >>> s.reason
    '3 names, asked for 4; numbered list; split by headers'
    >>> parse_suggestions("").reason
    'empty answer'
    """
    n_near, n_far = max(0, int(n_near)), max(0, int(n_far))
    if not isinstance(text, str):
        return Suggestions([], [], [], "failed", "not a string")
    notes: list[str] = []
    if len(text) > MAX_CHARS:
        notes.append(f"read the first {MAX_CHARS} characters")
    body = _SPECIAL_TOKEN.sub("\n", text[:MAX_CHARS]).translate(_PRE_CLEAN).replace("__", "")
    if not body.strip():
        return Suggestions([], [], [], "failed", "empty answer")
    body, preamble_notes, has_marker = _strip_preamble(body)
    notes += preamble_notes
    sections, by_header, has_headers = _sections(body)
    limit = _item_limit(n_near, n_far)
    near: list[str] = []
    far: list[str] = []
    items: list[str] = []
    next_number, numbered, prose = 1, False, False
    budget = 4 * limit  # raw pieces looked at; empty ones count too (',,,,' loops)
    for section in sections:
        if len(items) >= limit or budget <= 0:
            break
        pieces, next_number, was_numbered = _split_pieces(section.text, next_number, limit + 8)
        numbered |= was_numbered
        for piece in pieces[:budget]:
            if not piece or piece.isspace():
                continue
            names, dropped = _names_from_piece(piece)
            prose |= dropped
            items_left = limit - len(items)
            for name in names[:items_left]:
                items.append(name)
                (far if section.kind == "far" else near).append(name)
            if len(items) >= limit:
                break
        budget -= len(pieces)
    if len(items) >= limit or budget <= 0:
        notes.append(f"stopped at {len(items)} names")
    if numbered:
        notes.append("numbered list")
    if by_header:
        notes.append("split by headers")
    else:
        near, far = items[:n_near], items[n_near:]
    wanted = n_near + n_far
    if prose and not (has_marker or has_headers or numbered) and 2 * len(items) < wanted:
        # A few phrases cut out of a sentence ("I cannot ..., as it includes a zebra, ...").
        return Suggestions([], [], [], "failed", "; ".join(["refusal or prose only"] + notes))
    return _finish(near, far, items, wanted, notes, prose)


def _finish(
    near: list[str], far: list[str], items: list[str], wanted: int, notes: list[str], prose: bool
) -> Suggestions:
    if not items:
        reason = "refusal or prose only" if prose else "no names found"
        return Suggestions([], [], [], "failed", "; ".join([reason] + notes))
    if prose:
        notes.append("prose dropped")
    if len(items) == wanted:
        status = "ok"
    else:
        status = "partial"
        notes.insert(0, f"{len(items)} names, asked for {wanted}")
    return Suggestions(near, far, items, status, "; ".join(notes))


# ---------------------------------------------------------------------------------------------
# filter_suggestions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterResult:
    """``kept``: cleaned names in answer order, first occurrence of each key. ``dropped``:
    ``(item as given, reason)`` with reason in {"id class", "rejection class", "duplicate",
    "empty", "not a class name", "over cap"}."""

    kept: list[str]
    dropped: list[tuple[str, str]]


def _id_keys(name: str) -> set[str]:
    """Keys under which a name counts as an ID class: its key, its key without spaces
    ('clownfish' ~ 'clown fish'), and both without a parenthetical ('lorikeet (not this one)')."""
    keys = {suggestion_key(name)}
    bare = suggestion_key(_SHORT_PARENS.sub(" ", name))
    if bare:
        keys.add(bare)
    keys |= {_compact(k) for k in keys}
    keys.discard("")
    return keys


@lru_cache(maxsize=16)
def _id_class_keys(id_classes: tuple[str, ...]) -> frozenset[str]:
    """Every ID class's key and its key without spaces (once per class list, not per document)."""
    keys = set()
    for name in id_classes:
        key = suggestion_key(name)
        if key:
            keys |= {key, _compact(key)}
    return frozenset(keys)


# The longest real class names are a handful of words ('west highland white terrier'); a longer
# "suggestion" is an answer that was not a list at all, and would become a sentence-long class.
MAX_NAME_WORDS = 8


def filter_suggestions(
    items: Sequence[str], id_classes: Sequence[str], cap: int = 40
) -> FilterResult:
    """Turn parsed names into auxiliary OoD classes.

    Parameters
    ----------
    items : sequence of str
        Suggested names, e.g. ``Suggestions.items`` of :func:`parse_suggestions`.
    id_classes : sequence of str
        The ID class names; a suggestion that is one of them is dropped.
    cap : int, default=40
        The most names kept.

    Returns
    -------
    result : FilterResult
        ``kept``: cleaned names in answer order, the first occurrence of each key; ``dropped``:
        ``(item as given, reason)`` pairs.

    Notes
    -----
    Each item is cleaned (:func:`clean_item`, a no-op on parsed items) and dropped, in this order
    of checks, as: "empty" (no key), "rejection class" ('none of these classes'), "id class" (any
    of its keys, see :func:`_id_keys`, equals an ID class key or that key without spaces),
    "duplicate" (same :func:`suggestion_key` key as a kept item), "not a class name" (more than
    :data:`MAX_NAME_WORDS` words: prose or garbage that had no list structure), "over cap" (``cap``
    kept already).

    Examples
    --------
    >>> from reguide_tasks.answers.suggestions import filter_suggestions
    >>> result = filter_suggestions(
    ...     ["Jets", "airliner", "jet", "None of these classes", "air liner", "kite", "owl"], ["airliner"], cap=2
    ... )
    >>> result.kept
    ['Jets', 'kite']
    >>> result.dropped
    [('airliner', 'id class'), ('jet', 'duplicate'), ('None of these classes', 'rejection class'),
     ('air liner', 'id class'), ('owl', 'over cap')]
    """
    id_keys = _id_class_keys(tuple(id_classes))
    rejection = suggestion_key(REJECTION_CLASS)
    cap = max(0, int(cap))
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in items:
        text = clean_item(item) if isinstance(item, str) else ""
        key = suggestion_key(text)
        if not key:
            reason = "empty"
        elif key == rejection:
            reason = "rejection class"
        elif _id_keys(text) & id_keys:
            reason = "id class"
        elif key in seen:
            reason = "duplicate"
        elif len(key.split()) > MAX_NAME_WORDS:
            reason = "not a class name"
        elif len(kept) >= cap:
            reason = "over cap"
        else:
            seen.add(key)
            kept.append(text)
            continue
        dropped.append((item, reason))
    return FilterResult(kept, dropped)
