"""Property tests for stage-1 parsing and filtering: never raises, valid status, bounded time,
and the filtering invariants (kept is a subset of items, no ID class, no duplicate key, cap)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reguide_tasks.answers.suggestions import (
    REJECTION_CLASS,
    clean_item,
    filter_suggestions,
    parse_suggestions,
    suggestion_key,
)
from reguide_tasks.data.release import RELEASE_DIR

CLASSES_FILE = RELEASE_DIR.parent / "classes" / "imagenet200.txt"
IMAGENET200 = CLASSES_FILE.read_text(encoding="utf-8").splitlines()
STATUSES = {"ok", "partial", "failed"}
REASONS = {"id class", "rejection class", "duplicate", "empty", "not a class name", "over cap"}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Fragments real answers are made of, so that generated text exercises every parsing path.
NAMES = ["jet", "Glider", "hot air balloon", "tennis racket.", "goldfish", "Cocker Spaniels",
         "pufferfish", "none of these classes", "St. Bernard", "3D printer", "gibbon (ape, small)",
         "po' boy", "Cr\u00e8me br\u00fbl\u00e9e", "boxes", "lynx"]
GLUE = [", ", "; ", "\n", "  ", " ", ". ", ": ", "\n- ", "\n* ", "\u2022 ", "**", "`", "'", '"',
        "(", ")", " 1. ", " 2. ", "3) ", "(4) ", "Class suggested: ", "Class  suggested :", "##",
        "Visually similar:", "Visually dissimilar:", "Dissimilar classes:", "Different domains:",
        "\nSimilar\n", "I'm sorry, I can't help with that.", "Here are some:", " and ",
        "<|endoftext|>", " - ", "\t", "..."]
fragments = st.lists(st.sampled_from(NAMES + GLUE) | st.text(max_size=8), max_size=60).map("".join)
answers = fragments | st.text(max_size=400)


def check_parse(text: str, n_near: int = 20, n_far: int = 20) -> None:
    result = parse_suggestions(text, n_near, n_far)
    assert result.status in STATUSES
    wanted = n_near + n_far
    assert (result.status == "failed") == (not result.items)
    assert (result.status == "ok") == (bool(result.items) and len(result.items) == wanted)
    assert Counter(result.near + result.far) == Counter(result.items)
    assert all(item and clean_item(item) == item for item in result.items)
    assert len(result.items) <= max(4 * wanted, 40)
    assert isinstance(result.reason, str)


def check_filter(items: list[str], id_classes: list[str], cap: int) -> None:
    result = filter_suggestions(items, id_classes, cap)
    id_keys = {suggestion_key(c) for c in id_classes} | {suggestion_key(REJECTION_CLASS)}
    keys = [suggestion_key(k) for k in result.kept]
    assert set(result.kept) <= set(items)
    assert not set(keys) & id_keys
    assert len(keys) == len(set(keys)) and all(keys)
    assert len(result.kept) <= cap
    assert len(result.kept) + len(result.dropped) == len(items)
    assert {reason for _, reason in result.dropped} <= REASONS


@FUZZ
@given(text=answers, n_near=st.integers(0, 25), n_far=st.integers(0, 25))
def test_parse_never_raises_and_is_consistent(text: str, n_near: int, n_far: int) -> None:
    check_parse(text, n_near, n_far)


@FUZZ
@given(text=answers, extra_ids=st.lists(st.sampled_from(NAMES), max_size=4), cap=st.integers(0, 45))
def test_filter_invariants_on_parsed_items(text: str, extra_ids: list[str], cap: int) -> None:
    items = parse_suggestions(text).items
    check_filter(items, IMAGENET200 + extra_ids, cap)


@FUZZ
@given(items=st.lists(st.sampled_from(NAMES) | st.text(max_size=12), max_size=60),
       ids=st.lists(st.sampled_from(NAMES) | st.text(max_size=12), max_size=8),
       cap=st.integers(0, 45))
def test_filter_invariants_on_raw_items(items: list[str], ids: list[str], cap: int) -> None:
    # Raw items are cleaned by the filter, so kept is a subset of the cleaned items.
    result = filter_suggestions(items, ids, cap)
    check_filter([clean_item(i) for i in items], ids, cap)
    assert result.kept == filter_suggestions([clean_item(i) for i in items], ids, cap).kept
    # First occurrence wins, answer order is kept.
    cleaned_keys = [suggestion_key(clean_item(i)) for i in items]
    assert [cleaned_keys.index(suggestion_key(k)) for k in result.kept] == sorted(
        cleaned_keys.index(suggestion_key(k)) for k in result.kept
    )


@FUZZ
@given(text=st.text(max_size=200))
def test_clean_item_and_normalize_name_are_idempotent(text: str) -> None:
    once = clean_item(text)
    assert clean_item(once) == once
    key = suggestion_key(text)
    assert key == key.strip() and "  " not in key
    assert suggestion_key(key) == key


def best_of_three(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        result = parse_suggestions(text)
        filter_suggestions(result.items, IMAGENET200)
        best = min(best, time.perf_counter() - start)
    return best


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unit=fragments.filter(lambda s: len(s) > 0))
def test_bounded_time_on_100k_characters(unit: str) -> None:
    text = (unit * (100_000 // len(unit) + 1))[:100_000]
    check_parse(text)
    assert best_of_three(text) < 0.05


@pytest.mark.parametrize(
    "text",
    [
        "Class suggested: " + "lynx, bobcat, caracal, " * 4400,
        " ".join(f"{i}. item {i}" for i in range(1, 12_000)),
        "," * 100_000,
        "(" * 100_000,
        "(a, b) " * 15_000,
        "1. " * 33_000,
        "similar " * 12_500,
        "Visually dissimilar: a, b\n" * 4_000,
        "Class suggested: " * 6_000,
        " " * 100_000,
        "a" * 100_000,
        "I'm sorry, " * 9_000,
        "- jet - glider " * 7_000,
        "similar" + " " * 50 + ":" * 100_000,
    ],
    ids=["loop", "numbered", "commas", "parens", "paren-words", "numbers", "similar", "headers",
         "prefixes", "blanks", "one-word", "sorry", "bullets", "colons"],
)
def test_bounded_time_on_adversarial_100k_characters(text: str) -> None:
    check_parse(text)
    assert best_of_three(text) < 0.05
