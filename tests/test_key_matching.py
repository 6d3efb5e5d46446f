"""The one key-matching policy (reguide_tasks.answers.key_matching) on synthetic answers built on the pattern
seen in a weak model's ImageNet200 answers: keys that lost their first letter ('carf', 'kunk',
'ushroom', 'cuba diver'), about 35 per answer, the same in every answer. The fixtures are written here;
no third-party answers are shipped."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reguide_tasks.answers.key_matching import ClassIndex, class_index, match_key
from reguide_tasks.answers.parsing import parse_answer
from reguide_tasks.answers.scoring import ood_score
from reguide_tasks.data.release import RELEASE_DIR

ID_CLASSES = tuple((RELEASE_DIR.parent / "classes" / "imagenet200.txt").read_text(encoding="utf-8").splitlines())
OPTIONS = (*ID_CLASSES, "none of these classes")


def confidences(n: int = len(OPTIONS), top: str | None = None) -> dict[str, float]:
    """Distinct small values for every option, 99.88 for ``top``."""
    values = {name: round(0.01 * (i + 1), 2) for i, name in enumerate(OPTIONS[:n])}
    if top:
        values[top] = 99.88
    return values


def answer(values: dict[str, float], spell=lambda name: name, prediction: str = "") -> str:
    body = ", ".join(f"'{spell(name)}': {value}" for name, value in values.items())
    return f"Prediction: {prediction}\nConfidence: {{{body}}}"


def drop_first(name: str) -> str:
    return name[1:]


# ------------------------------------------------------------------------------ an independent oracle


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (insert, delete, substitute, swap neighbours): plain DP."""
    rows = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        for j in range(len(b) + 1):
            if min(i, j) == 0:
                rows[i][j] = max(i, j)
                continue
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[-1][-1]


def oracle_candidates(key: str, classes) -> list[str]:
    """The policy written out by brute force over the class list."""
    norm = match_key(key)
    if not 3 <= len(norm) <= 80:
        return []
    names = {match_key(c): c for c in reversed(classes)}
    ends = {" ".join(n.split(" ")[i:]) for n in names for i in range(1, len(n.split(" ")))}
    if norm in ends:
        return []
    if len(norm) < 5:
        return [c for n, c in names.items() if n[1:] == norm]
    return [c for n, c in names.items() if edit_distance(norm, n) == 1]


# ------------------------------------------------------------------------------ the failure pattern


def test_the_issue_answer_scores_its_top_class():
    """'Prediction: scarf ... 'carf': 99.88': S_max is the scarf confidence, not 0 (certain OoD)."""
    values = confidences(top="scarf")
    garbled = {"scarf", "skunk", "snail", "strawberry", "mushroom", "scuba diver", "red fox", "spider web", "standard poodle"}
    text = answer(values, lambda n: drop_first(n) if n in garbled else n, prediction="scarf")
    parsed = parse_answer(text, OPTIONS)
    assert parsed.status == "ok" and parsed.prediction == "scarf"
    assert parsed.confidences["scarf"] == 99.88
    assert ood_score(parsed, ID_CLASSES) == 99.88
    assert parsed.repaired_keys == {drop_first(n): n for n in OPTIONS if n in garbled}
    assert parsed.unknown_keys == ()
    strict = parse_answer(text, OPTIONS, repair=False)
    assert strict.status == "partial" and "scarf" not in strict.confidences and strict.repaired_keys == {}
    assert set(strict.unknown_keys) == {drop_first(n) for n in garbled}
    assert ood_score(strict, ID_CLASSES) == max(v for n, v in values.items() if n in ID_CLASSES and n not in garbled)  # top class lost


def test_first_letter_dropped_across_the_whole_dict():
    """Every one of the 201 keys lost its first letter: each is repaired exactly when the policy, written
    out by brute force, finds one empty class for it; the rest stay unknown, and nothing is capped."""
    values = confidences()
    parsed = parse_answer(answer(values, drop_first), OPTIONS)
    empty = list(OPTIONS)
    expected: dict[str, str] = {}
    for name in OPTIONS:  # answer order, each key against the classes still empty
        key = drop_first(name)
        found = [c for c in oracle_candidates(key, OPTIONS) if c in empty]
        if len(found) == 1:
            expected[key] = found[0]
            empty.remove(found[0])
    assert parsed.repaired_keys == expected
    assert len(expected) >= 180  # far past the old limit of 32 typo look-ups per answer
    assert all(parsed.confidences[cls] == values[cls] for key, cls in expected.items() if drop_first(cls) == key)
    assert set(parsed.unknown_keys) == {drop_first(n).strip() for n in OPTIONS} - set(expected)
    assert parsed.status == "partial" and list(parsed.confidences) == [c for c in OPTIONS if c in parsed.confidences]


@pytest.mark.parametrize(("key", "name"), [("carf", "scarf"), ("kunk", "skunk"), ("nail", "snail"), ("ushroom", "mushroom"),
                                           ("trawberry", "strawberry"), ("cuba diver", "scuba diver"), ("ed fox", "red fox"),
                                           ("pider web", "spider web"), ("tandard poodle", "standard poodle")])
def test_keys_of_the_issue(key: str, name: str):
    assert class_index(OPTIONS).repair(key) == name


def test_four_letter_keys_need_a_dropped_leading_character():
    classes = ("scarf", "skunk", "snail", "hen", "hyena", "ant", "bat")
    index = ClassIndex(classes)
    assert [index.repair(k) for k in ("carf", "kunk", "nail")] == ["scarf", "skunk", "snail"]
    # other one-edit typos of short keys stay unknown: a 3-letter word one edit away is another word
    assert [index.repair(k) for k in ("hens", "hena", "ants", "cat", "scar", "snai")] == [None] * 6
    assert index.repair("at") is None  # too short to say


def test_forty_garbled_keys_in_one_answer_are_all_read():
    swapped = lambda n: n[:3] + n[4] + n[3] + n[5:]  # 'golfdish'-like swaps
    garbled = [n for n in OPTIONS if len(match_key(n)) >= 9 and swapped(n) != n][:45]
    swap = lambda n: swapped(n) if n in garbled else n
    parsed = parse_answer(answer(confidences(), swap), OPTIONS)
    assert len(garbled) == 45 and parsed.status == "ok"
    assert parsed.repaired_keys == {swap(n): n for n in garbled}


def test_ambiguous_keys_stay_unknown():
    index = ClassIndex(("beaver", "beakers", "scarf", "tcarf", "bald eagle", "beagle", "sea lion", "lio"))
    assert index.repair("beaker") is None  # one edit from two classes
    assert index.repair("carf") is None  # a dropped first letter of two classes
    assert index.repair("eagle") is None  # the end of 'bald eagle', not a typo of 'beagle'
    assert index.repair("lion") is None
    # ... unless one of the two already has a value: then only the other is a candidate
    assert index.repair("beaker", filled={"beakers"}) == "beaver"
    text = "Confidence: {'beakers': 5, 'beaker': 90, 'carf': 1, 'eagle': 80}"
    parsed = parse_answer(text, index.unique)
    assert parsed.confidences == {"beakers": 5.0, "beaver": 90.0}
    assert parsed.repaired_keys == {"beaker": "beaver"} and parsed.unknown_keys == ("carf", "eagle")


def test_an_exact_key_wins_over_an_earlier_typo_of_it():
    parsed = parse_answer("Confidence: {'tingray': 90, 'goldfish': 1, 'stingray': 2}", ("goldfish", "stingray"))
    assert parsed.confidences == {"goldfish": 1.0, "stingray": 2.0}
    assert parsed.repaired_keys == {} and parsed.unknown_keys == ("tingray",)


def test_a_repaired_prediction_is_recorded():
    parsed = parse_answer("Prediction: carf\nConfidence: {'carf': 99.0, 'skunk': 1.0}", ("scarf", "skunk"))
    assert parsed.prediction == "scarf" and parsed.repaired_prediction == "carf"
    strict = parse_answer("Prediction: carf\nConfidence: {'carf': 99.0, 'skunk': 1.0}", ("scarf", "skunk"), repair=False)
    assert strict.prediction == "skunk" and strict.repaired_prediction is None  # argmax of what was read


def test_a_100k_repetition_loop_of_garbled_keys_parses_in_bounded_time():
    """A loop repeating the garbled dict and adding fresh garbage keys: every distinct key is looked up
    once, the pair bound (8 per class) holds, and it takes milliseconds."""
    once = ", ".join(f"'{drop_first(n)}': 1.5" for n in OPTIONS)
    noise = ", ".join(f"'zq{i}xk{i * 7}': 2.0" for i in range(600))
    text = "Prediction: scarf Confidence: {" + once + ", " + noise + (", " + once) * 30
    assert len(text) > 100_000
    best = min(_timed(parse_answer, text, OPTIONS) for _ in range(3))
    parsed = parse_answer(text, OPTIONS)
    assert len(parsed.repaired_keys) >= 180 and "pairs after the first 1672 ignored" in parsed.reason
    assert best < 0.1, best


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


# ------------------------------------------------------------------------------ property


def accepted_spellings(name: str) -> list[str]:
    """Spellings of ``name`` the policy reads as ``name`` against the whole list (so also against the
    classes still empty): exact, normalised variants, and repairs the oracle finds unique."""
    spellings = [name, name.upper(), name.replace(" ", "_"), f" {name}. "]
    typos = [name[1:], name[:-1], name[:2] + name[3:], name[:1] + "x" + name[2:]]
    spellings += [t for t in typos if oracle_candidates(t, OPTIONS) == [name] and match_key(t) not in class_index(OPTIONS).normalized]
    return spellings


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    predicted=st.sampled_from(ID_CLASSES),
    spelling=st.integers(0, 7),
    others=st.lists(st.sampled_from(OPTIONS), max_size=60, unique=True),
    garbage=st.lists(st.text("abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=12), max_size=10),
    position=st.integers(0, 80),
    value=st.floats(0, 100, allow_nan=False).map(lambda v: round(v, 2)),
)
def test_predicted_class_confidence_is_found_in_any_accepted_spelling(predicted, spelling, others, garbage, position, value):
    """Whenever the Prediction: class is matched and the dict holds a key for it in a spelling the
    policy accepts, that class's confidence is found."""
    spellings = accepted_spellings(predicted)
    key = spellings[spelling % len(spellings)]
    garbage = [g for g in garbage if predicted not in oracle_candidates(g, OPTIONS) and match_key(g) != match_key(predicted)]
    items = [(name, 1.0) for name in others if name != predicted] + [(g, 3.0) for g in garbage]
    items.insert(position % (len(items) + 1), (key, value))
    body = ", ".join(f"'{k}': {v}" for k, v in items)
    parsed = parse_answer(f"Prediction: {predicted}\nConfidence: {{{body}}}", OPTIONS)
    assert parsed.prediction == predicted
    assert parsed.confidences.get(predicted) == value, (key, parsed.repaired_keys, parsed.unknown_keys)
