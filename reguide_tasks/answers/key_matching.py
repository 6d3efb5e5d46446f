"""The one key-matching policy: how a class name written by a model is found in the prompt's class list.

The same policy reads the ``Prediction:`` value and every confidence key (also the class names of a
stage-2 answer, whose list holds the auxiliary classes):

1. **exact**: the name as the prompt spelled it;
2. **normalised**: case, spacing, punctuation and underscores ignored ('Granny smith', 'shih-tzu',
   "'tennis racket.'");
3. **repair** (left out by the strict reading): a key that is still unknown is given to a class that
   has no value yet when exactly one such class is within one edit of it (an insertion, deletion,
   substitution or swap of neighbours: 'tingray' -> 'stingray', 'cuba diver' -> 'scuba diver').
   Keys shorter than :data:`MIN_EDIT_LEN` characters are repaired only by a dropped leading character
   ('carf' -> 'scarf', 'nail' -> 'snail'): any one edit of a 3-letter word is another word ('hen' /
   'hens' / 'yen'). An ambiguous key stays unknown; so does a key that is the end of a class name
   of the list ('eagle' of 'bald eagle', 'lion' of 'sea lion': a shortened name, not a typo of
   'beagle' or 'lio'; Qwen writes such keys) and a key longer than :data:`MAX_REPAIR_LEN` (garbage).

"Has no value yet" is the caller's: :mod:`reguide_tasks.answers.parsing` first reads every key exactly or
normalised, then repairs the keys left over, in answer order, each against the classes still
without a value (:meth:`ClassIndex.repair` is told which classes are filled);
the prediction is repaired against the whole list. Work stays bounded without a cap on the number of
keys: a key is looked up once per answer (a repetition loop repeats its keys), and the classes within
one edit of a key come from a deletion index (a dict look-up per deleted character, no scan of the
class list), cached per key.
"""

from __future__ import annotations

import re
from collections.abc import Container, Sequence
from functools import lru_cache

__all__ = ["READINGS", "ClassIndex", "class_index", "match_key"]

READINGS = ("repair", "strict")  # repair: exact, normalised, repair; strict: exact and normalised only
MIN_EDIT_LEN = 5  # shorter keys: a dropped leading character only
MIN_REPAIR_LEN = 3  # 'ox' could be half the class list
MAX_REPAIR_LEN = 80
_CACHE_SIZE = 50_000  # repair candidates remembered per class list (memory bound, not a matching bound)

_NON_WORD = re.compile(r"[\W_]+")


def match_key(name: str) -> str:
    """The key of the policy's normalised step: lower-case, punctuation and underscores to single
    spaces, stripped."""
    return _NON_WORD.sub(" ", name.lower()).strip()


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def within_one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one insertion, deletion, substitution or swap."""
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    i = 0
    shortest = min(la, lb)
    while i < shortest and a[i] == b[i]:
        i += 1
    if i == la == lb:
        return True
    if la == lb:
        if a[i + 1 :] == b[i + 1 :]:
            return True
        return i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
    return a[i + 1 :] == b[i:] if la > lb else a[i:] == b[i + 1 :]


class ClassIndex:
    """Look-ups of model-written class names in one class list, by the module's key-matching policy.

    The raw names come first; the normalised names and the repair index are built on first need (a
    stage-2 list differs per image and is mostly read exactly). Use :func:`class_index` for a
    cached index of a list.

    Parameters
    ----------
    classes : sequence of str
        The prompt's class list; duplicates are dropped, the first spelling in class order wins.

    Attributes
    ----------
    unique : tuple of str
        The class names, deduplicated, in list order.
    exact : dict of str to str
        Name -> name, for the exact step.

    See Also
    --------
    class_index : The cached index of a class list.
    reguide_tasks.answers.parsing.match_class : One key against a list, through this index.

    Examples
    --------
    >>> from reguide_tasks.answers.key_matching import ClassIndex
    >>> index = ClassIndex(["goldfish", "stingray", "scuba diver", "bald eagle", "beagle"])
    >>> index.find("Scuba-Diver"), index.find("tingray")  # exact / normalised only
    ('scuba diver', None)
    >>> index.match("tingray")  # (class, repaired?)
    ('stingray', True)
    >>> index.match("tingray", repair=False)
    (None, False)
    >>> index.match("eagle")  # the end of 'bald eagle': a shortened name, not a typo of 'beagle'
    (None, False)
    >>> index.repair("tingray", filled={"stingray"}) is None  # that class already has a value
    True
    """

    def __init__(self, classes: Sequence[str]) -> None:
        self.unique: tuple[str, ...] = tuple(dict.fromkeys(classes))
        self.exact: dict[str, str] = dict(zip(self.unique, self.unique))
        self._normalized: dict[str, str] | None = None
        self._by_deletion: dict[str, list[str]] | None = None  # a name, or a name less one character -> names
        self._norm_of: dict[str, str] = {}
        self._name_ends: set[str] = set()  # 'eagle', 'white shark', 'shark' for 'great white shark'
        self._repairs: dict[str, tuple[str, ...]] = {}

    @property
    def normalized(self) -> dict[str, str]:
        if self._normalized is None:
            self._normalized = {}
            for name in self.unique:
                norm = match_key(name)
                if norm and norm not in self._normalized:  # first spelling in class order wins
                    self._normalized[norm] = name
        return self._normalized

    def find(self, key: str) -> str | None:
        """Exact, then normalised; None when neither (the strict reading)."""
        hit = self.exact.get(key)
        if hit is not None:
            return hit
        return self.normalized.get(match_key(key))

    def repair(self, key: str, filled: Container[str] = ()) -> str | None:
        """The one class not in ``filled`` (the classes that already have a value; default none) that
        ``key`` is a repairable typo of, or None (no such class, or several). Call it for keys that
        :meth:`find` did not match."""
        candidates = self.repair_candidates(match_key(key))
        if filled and candidates:
            candidates = tuple(name for name in candidates if name not in filled)
        return candidates[0] if len(candidates) == 1 else None

    def match(self, key: str, repair: bool = True) -> tuple[str | None, bool]:
        """Match ``key`` against the whole list: exact, normalised, then (if ``repair``) repair.

        Parameters
        ----------
        key : str
            A class name as the model wrote it.
        repair : bool, default=True
            Whether a one-edit typo may be repaired (False: the strict reading).

        Returns
        -------
        name : str or None
            The class, or None when no step matches.
        repaired : bool
            Whether it took a repair.

        Examples
        --------
        >>> from reguide_tasks.answers.key_matching import class_index
        >>> class_index(("goldfish", "scuba diver")).match("cuba diver")
        ('scuba diver', True)
        >>> class_index(("goldfish", "scuba diver")).match("GOLDFISH.")
        ('goldfish', False)
        """
        hit = self.find(key)
        if hit is not None or not repair:
            return hit, False
        hit = self.repair(key)
        return hit, hit is not None

    def repair_candidates(self, norm: str) -> tuple[str, ...]:
        """Every class a normalised key could be a typo of, by the rules of the module docstring."""
        if not MIN_REPAIR_LEN <= len(norm) <= MAX_REPAIR_LEN:
            return ()
        cached = self._repairs.get(norm)
        if cached is not None:
            return cached
        index = self._deletion_index()
        if norm in self._name_ends:
            return ()
        if len(norm) < MIN_EDIT_LEN:  # a dropped leading character: the key is a name less its first one
            found = [name for name in index.get(norm, ()) if self._norm_of[name][1:] == norm]
        else:
            seen: dict[str, None] = {}
            for probe in (norm, *_deletions(norm)):
                for name in index.get(probe, ()):
                    seen.setdefault(name, None)
            found = [name for name in seen if within_one_edit(norm, self._norm_of[name])]
        if len(self._repairs) >= _CACHE_SIZE:
            self._repairs.clear()
        result = self._repairs[norm] = tuple(sorted(found, key=self.unique.index) if len(found) > 1 else found)
        return result

    def _deletion_index(self) -> dict[str, list[str]]:
        """Normalised name and each of its one-character deletions -> names. Two strings within one
        edit share an entry: equal, one is the other less a character, or both less the same
        position's character (substitution) or either of two swapped ones."""
        if self._by_deletion is None:
            index: dict[str, list[str]] = {}
            for norm, name in self.normalized.items():
                self._norm_of[name] = norm
                words = norm.split(" ")
                self._name_ends.update(" ".join(words[i:]) for i in range(1, len(words)))
                for probe in (norm, *_deletions(norm)):
                    names = index.setdefault(probe, [])
                    if name not in names:
                        names.append(name)
            self._by_deletion = index
        return self._by_deletion


@lru_cache(maxsize=256)
def class_index(classes: tuple[str, ...]) -> ClassIndex:
    """The (cached) :class:`ClassIndex` of a class list, in prompt order.

    Parameters
    ----------
    classes : tuple of str
        The class list (a tuple, so that it can be a cache key).

    Returns
    -------
    index : ClassIndex
        The same object for equal tuples (up to 256 lists are cached).

    Examples
    --------
    >>> from reguide_tasks.answers.key_matching import class_index
    >>> class_index(("hen", "snail")) is class_index(("hen", "snail"))
    True
    >>> class_index(("hen", "snail")).match("nail")  # short key: a dropped leading character
    ('snail', True)
    """
    return ClassIndex(classes)
