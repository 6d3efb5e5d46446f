"""Property tests for reguide_tasks.answers.parsing: any text parses, fast, into a well-formed result."""

from __future__ import annotations

import time
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reguide_tasks.answers.parsing import ParsedAnswer, match_class, parse_answer
from reguide_tasks.data.release import RELEASE_DIR, read_release_file

CLASSES = tuple((RELEASE_DIR.parent / "classes" / "imagenet200.txt").read_text(encoding="utf-8").splitlines()) + (
    "none of these classes",
)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def real_answers() -> tuple[str, ...]:
    """A fixed, varied sample of released ImageNet200 answers (GPT-4o and Qwen, all failure modes)."""
    answers: list[str] = []
    for relpath, step in (
        ("baseline/imagenet200-5%/gpt/ninco.jsonl.gz", 3),
        ("baseline/imagenet200-25%/qwen/ninco.jsonl.gz", 7),
    ):
        data = read_release_file(RELEASE_DIR / "response" / relpath)
        (by_image,) = data.values()
        answers.extend(list(by_image.values())[::step])
    return tuple(answers)


def check(parsed: ParsedAnswer, classes: tuple[str, ...] = CLASSES) -> None:
    assert isinstance(parsed, ParsedAnswer)
    assert parsed.status in {"ok", "partial", "failed"}
    assert set(parsed.confidences) <= set(classes)
    assert all(isinstance(v, float) for v in parsed.confidences.values())
    assert (parsed.status == "ok") == (set(parsed.confidences) == set(classes))
    assert (parsed.status == "failed") == (not parsed.confidences)
    assert parsed.status == "ok" or parsed.reason
    assert parsed.prediction is None or parsed.prediction in classes


@FUZZ
@given(st.text(max_size=2000))
def test_random_text(text: str) -> None:
    check(parse_answer(text, CLASSES))


@FUZZ
@given(st.text(alphabet="{}[]'\":,.%0123456789 \n\tabcdePrediction Confidence", max_size=2000))
def test_random_dict_like_text(text: str) -> None:
    check(parse_answer(text, CLASSES))


@FUZZ
@given(st.binary(max_size=2000))
def test_binaryish_text(data: bytes) -> None:
    check(parse_answer(data.decode("latin-1"), CLASSES))
    check(parse_answer(data.decode("utf-8", errors="surrogateescape"), CLASSES))


@st.composite
def mutated_answers(draw: st.DrawFn) -> str:
    """A real answer, then a few of: truncate, insert noise, duplicate a segment, swap quotes."""
    text = draw(st.sampled_from(real_answers()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "noise", "duplicate", "swap_quotes", "drop_quotes"]))
        cut = draw(st.integers(0, len(text)))
        if op == "truncate":
            text = text[:cut]
        elif op == "noise":
            text = text[:cut] + draw(st.text(max_size=30)) + text[cut:]
        elif op == "duplicate":
            end = draw(st.integers(cut, min(len(text), cut + 500)))
            text = text[:end] + text[cut:end] * draw(st.integers(1, 5)) + text[end:]
        elif op == "swap_quotes":
            text = text.replace("'", "\0").replace('"', "'").replace("\0", '"')
        else:
            text = text.replace("'", "")
    return text


@FUZZ
@given(mutated_answers())
def test_mutated_real_answers(text: str) -> None:
    check(parse_answer(text, CLASSES))


@FUZZ
@given(st.sampled_from(real_answers()))
def test_swapped_quotes_parse_like_the_original(text: str) -> None:
    """JSON-style double quotes carry the same information as Python-style single quotes."""
    if '"' in text:
        return
    original = parse_answer(text, CLASSES)
    swapped = parse_answer(text.replace("'", '"'), CLASSES)
    assert swapped.confidences == original.confidences
    assert swapped.status == original.status


@FUZZ
@given(st.text(max_size=60))
def test_match_class_total(key: str) -> None:
    hit = match_class(key, CLASSES)
    assert hit is None or hit in CLASSES


def _best_of_3(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        check(parse_answer(text, CLASSES))
        best = min(best, time.perf_counter() - start)
    return best


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(real_answers()), st.text(min_size=1, max_size=50), st.integers(0, 3))
def test_huge_inputs_parse_under_50ms(answer: str, noise: str, kind: int) -> None:
    """100k characters: repetition loops of real answers, of noise, of one pair, and noise after a dict."""
    size = 100_000
    if kind == 0:
        text = (answer + " ") * (size // (len(answer) + 1) + 1)
    elif kind == 1:
        text = noise * (size // len(noise) + 1)
    elif kind == 2:
        text = "Confidence: {'goldfish': 1.0, " + f"'{noise}': 99.76, " * (size // (len(noise) + 12) + 1)
    else:
        text = answer + noise * (size // len(noise) + 1)
    text = text[:size]
    assert _best_of_3(text) < 0.05


def test_pathological_inputs_under_50ms() -> None:
    """Inputs aimed at regex backtracking and per-character Python loops."""
    size = 100_000
    for text in [
        ":" + " " * size,
        ": '" * (size // 3),
        "'" * size,
        "{" + "a" * size,
        "{'" + "a" * size,
        "Prediction" * (size // 10),
        "prediction: " + "x" * size,
        "prediction: " * (size // 12),
        "prediction:\n" * (size // 12),
        "confidence" * (size // 10),
        "{" + "a: 1, " * (size // 6),
        "{" + ", ".join(f"'k{i}': {i}" for i in range(size // 10)),
        "{" + "1" * size,
        "<|" * (size // 2),
        "```" * (size // 3),
    ]:
        assert _best_of_3(text[: size + 20]) < 0.05, text[:30]


SPAN_CHARS = "ab Z9-_.,;{}\n\t\r'\"*\u2022\u2019:"
# spans shaped like the scan's: whatever came before, a delimiter, blanks, something name-like
KEY_SPANS = st.one_of(
    st.text(alphabet=SPAN_CHARS, max_size=30),
    st.builds(
        lambda *parts: "".join(parts),
        st.text(alphabet=SPAN_CHARS, max_size=6),
        st.sampled_from([",", "{", "}", ";", "\n", ""]),
        st.text(alphabet=" \t\r", max_size=2),
        st.text(alphabet="abZ9 -_.'*\u2022\t", max_size=16),
    ),
)


@FUZZ
@given(KEY_SPANS)
def test_plain_key_fast_case_agrees_with_the_general_key_reader(span: str) -> None:
    """Wherever the scan's fast case for unquoted keys applies, it reads the key the general reader reads."""
    from reguide_tasks.answers import parsing

    plain = parsing._PLAIN_KEY_SPAN.fullmatch(span)
    if plain:
        assert plain[1] == parsing._key_from_span(span)
