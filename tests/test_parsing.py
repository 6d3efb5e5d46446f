"""Tests for reguide_tasks.answers.parsing: hand-written failure modes, every released answer, the AUROC check."""

from __future__ import annotations

import ast
import re
import time
from collections import Counter
from functools import cache

import pytest

from reguide_tasks.answers import parsing
from reguide_tasks.answers.parsing import ParsedAnswer, match_class, parse_answer
from reguide_tasks.data.release import RELEASE_DIR, read_release_file

C = ["goldfish", "stingray", "hen", "hyena", "scuba diver", "Granny Smith", "baseball player", "none of these classes"]
FULL = dict(zip(C, [1.0, 2.0, 95.0, 0.5, 0.1, 0.2, 0.3, 3.0]))
FULL_DICT = (
    "{'goldfish': 1.0, 'stingray': 2.0, 'hen': 95.0, 'hyena': 0.5, 'scuba diver': 0.1, "
    "'Granny Smith': 0.2, 'baseball player': 0.3, 'none of these classes': 3.0}"
)


def ok(prediction: str, confidences: dict[str, float] = FULL, reason: str = "") -> ParsedAnswer:
    return ParsedAnswer(prediction, dict(confidences), "ok", reason)


# --------------------------------------------------------------------------------------------
# hand-written cases


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"Prediction: hen\nConfidence: {FULL_DICT}", ok("hen"), id="two-lines"),
        pytest.param(f" Prediction: hen Confidence: {FULL_DICT} ", ok("hen"), id="one-line"),
        pytest.param(
            f"Prediction: hen   Confidence: {FULL_DICT}<|endoftext|>",
            ok("hen"),
            id="endoftext",
        ),
        pytest.param(f"Prediction: hen\nConfidence: {FULL_DICT}</s>", ok("hen"), id="eos-s"),
        pytest.param(
            f"Prediction: hen\nConfidence: {FULL_DICT}<|im_end|>\n",
            ok("hen"),
            id="im-end",
        ),
        pytest.param(
            '{"prediction": "hen", "confidence": {"goldfish": 1, "stingray": 2, "hen": 95, "hyena": 0.5, '
            '"scuba diver": 0.1, "Granny Smith": 0.2, "baseball player": 0.3, "none of these classes": 3}}',
            ok("hen"),
            id="json",
        ),
        pytest.param(
            "Prediction: hen Confidence: {goldfish: 1, stingray: '2', hen: 95%, hyena: .5, scuba diver: 0.10, "
            "Granny Smith: '0.2%', baseball player: 0.30, none of these classes: 3.00}",
            ok("hen"),
            id="unquoted-keys-quoted-numbers-percent",
        ),
        pytest.param(
            f"**Prediction:** hen\n**Confidence:**\n```python\n{FULL_DICT}\n```",
            ok("hen"),
            id="markdown-bold-and-fence",
        ),
        pytest.param(
            "Prediction: stingray Confidence: {'goldfish': 1.0, 'tingray': 90.0, 'HEN': 2, 'hyena': 0, "
            "'cuba diver': 1, 'Granny smith': 3, 'baseball-player': 0, 'None of these classes.': 4}",
            ok(
                "stingray",
                {
                    "goldfish": 1.0,
                    "stingray": 90.0,
                    "hen": 2.0,
                    "hyena": 0.0,
                    "scuba diver": 1.0,
                    "Granny Smith": 3.0,
                    "baseball player": 0.0,
                    "none of these classes": 4.0,
                },
            ),
            id="garbled-keys",
        ),
        pytest.param(
            "I'm sorry, I can't identify people in images. However, it looks like a hen. "
            f"Prediction: hen Confidence: {FULL_DICT}",
            ok("hen"),
            id="apology-then-answer",
        ),
        pytest.param(
            f"I'm unable to identify it, but here is my prediction:  Prediction: hen Confidence: {FULL_DICT}",
            ok("hen"),
            id="prediction-word-before-the-line",
        ),
        pytest.param(
            "Prediction: hen Confidence: {'goldfish': 1.0, 'stingray': 2.0, 'hen': 95.0, 'hyena': 0.5, 'scu",
            ParsedAnswer(
                "hen",
                {"goldfish": 1.0, "stingray": 2.0, "hen": 95.0, "hyena": 0.5},
                "partial",
                "truncated dict; missing 4 classes",
            ),
            id="truncated",
        ),
        pytest.param(
            "Prediction: goldfish Confidence: {'goldfish': 90.0, 'hen': 5.0, 'goldfish': 10.0, 'pear': 1.0, "
            "'hen': 7.0}",
            ParsedAnswer(
                "goldfish",
                {"goldfish": 90.0, "hen": 5.0},
                "partial",
                "missing 6 classes; duplicate keys: goldfish, hen; unknown keys: pear",
            ),
            id="duplicates-first-wins",
        ),
        pytest.param(
            f"Prediction: hen Confidence: {FULL_DICT[:-1]}, 'hen': 1.0}}",
            ok("hen", reason="duplicate keys: hen"),
            id="ok-with-duplicate",
        ),
        pytest.param(
            "I'm sorry, I can't help with that.",
            ParsedAnswer(None, {}, "failed", "refusal"),
            id="refusal",
        ),
        pytest.param(
            "I\u2019m unable to classify this image.",
            ParsedAnswer(None, {}, "failed", "refusal"),
            id="refusal-curly",
        ),
        pytest.param(
            "Prediction: hen Confidence: 99.0",
            ParsedAnswer("hen", {}, "failed", "no confidence dict"),
            id="scalar-confidence",
        ),
        pytest.param(
            "This is a picture of a cat",
            ParsedAnswer(None, {}, "failed", "no confidence dict"),
            id="prose",
        ),
        pytest.param(
            "Prediction: {goldfish, hen, none of these classes}",
            ParsedAnswer(None, {}, "failed", "no confidence values"),
            id="set-of-names",
        ),
        pytest.param(
            "Confidence: {'pear': 3.0, 'apple': 4.0}",
            ParsedAnswer(None, {}, "failed", "unknown keys: pear, apple"),
            id="only-unknown",
        ),
        pytest.param("", ParsedAnswer(None, {}, "failed", "empty answer"), id="empty"),
        pytest.param(
            " <|endoftext|> ",
            ParsedAnswer(None, {}, "failed", "empty answer"),
            id="only-token",
        ),
        pytest.param(
            "Example: Prediction: {goldfish}: 33.43, {hen}: 72.76",
            ParsedAnswer("hen", {"goldfish": 33.43, "hen": 72.76}, "partial", "missing 6 classes"),
            id="braced-keys",
        ),
        pytest.param(
            "Confidence:\n1. goldfish: 5\n2. hen: 90\n- hyena: 1",
            ParsedAnswer(
                "hen",
                {"goldfish": 5.0, "hen": 90.0, "hyena": 1.0},
                "partial",
                "missing 5 classes",
            ),
            id="braceless-list",
        ),
        pytest.param(
            "Prediction: basketball player Confidence: {'goldfish': 50, 'hen': 50, 'hyena': 10}",
            ParsedAnswer(
                "goldfish",
                {"goldfish": 50.0, "hen": 50.0, "hyena": 10.0},
                "partial",
                "missing 5 classes",
            ),
            id="unmatched-prediction-argmax-tie-first",
        ),
        pytest.param(
            "Confidence: {'hyena': 20, 'hen': 20}",
            ParsedAnswer("hen", {"hyena": 20.0, "hen": 20.0}, "partial", "missing 6 classes"),
            id="tie-uses-class-order",
        ),
    ],
)
def test_hand_written(text: str, expected: ParsedAnswer) -> None:
    assert parse_answer(text, C) == expected


def test_copied_example_fails() -> None:
    examples = [dict(FULL), {name: 10.0 + i for i, name in enumerate(C)}]
    copied = parse_answer(f"Prediction: hen\nConfidence: {FULL_DICT}", C, examples)
    assert copied == ParsedAnswer("hen", {}, "failed", "copied example")
    truncated_copy = parse_answer(
        "Confidence: {'goldfish': 10.0, 'stingray': 11.0, 'hen': 12.0, 'hye",
        C,
        examples,
    )
    assert truncated_copy == ParsedAnswer(None, {}, "failed", "copied example")
    one_value_changed = parse_answer(f"Prediction: hen\nConfidence: {FULL_DICT.replace('95.0', '96.0')}", C, examples)
    assert one_value_changed.status == "ok"
    assert parse_answer("Confidence: {'hen': 95.0}", C, examples).status == "partial"  # one value is no copy


def test_repetition_loop_is_fast_and_first_value_wins() -> None:
    text = "Confidence: {'goldfish': 3.0, 'hen': 70.0, " + "'hen': 99.76, 'pear': 1.0, " * 600
    assert len(text) > 11_000
    start = time.perf_counter()
    parsed = parse_answer(text, C)
    assert time.perf_counter() - start < 0.05
    assert parsed == ParsedAnswer(
        "hen",
        {"goldfish": 3.0, "hen": 70.0},
        "partial",
        "truncated dict; pairs after the first 128 ignored; missing 6 classes; duplicate keys: hen; unknown keys: pear",
    )


def test_unknown_keys_are_listed_briefly() -> None:
    text = "Confidence: {" + ", ".join(f"'thing{i}': 1" for i in range(8)) + ", 'hen': 5}"
    parsed = parse_answer(text, C)
    assert parsed.reason == "missing 7 classes; unknown keys: thing0, thing1, thing2, thing3, thing4 (+3 more)"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Granny smith", "Granny Smith"),
        ("  granny_smith ", "Granny Smith"),
        ("tingray", "stingray"),  # one deletion
        ("stingary", "stingray"),  # one swap
        ("cuba diver", "scuba diver"),
        ("scuba-diver", "scuba diver"),
        ("'none of these classes.'", "none of these classes"),
        ("hen", "hen"),
        ("hyena", "hyena"),
        ("hena", None),  # short keys: only a dropped leading character is repaired
        ("hens", None),
        (
            "basketball player",
            None,
        ),  # two edits from 'baseball player': a different thing
        ("goldfinch", None),
        ("", None),
    ],
)
def test_match_class(key: str, expected: str | None) -> None:
    assert match_class(key, C) == expected


def test_match_class_refuses_ambiguous_typo() -> None:
    assert match_class("beaker", ["beaver", "beakers"]) is None  # one edit from both
    assert match_class("beavr", ["beaver", "beakers"]) == "beaver"


def test_curly_apostrophe_inside_key() -> None:
    classes = ["verreaux\u2019s skink", "baby\u2019s breath", "none of these classes"]
    text = "Confidence: {'verreaux\u2019s skink': 3.0, 'baby\u2019s breath': 90.0, 'none of these classes': 1.0}"
    assert parse_answer(text, classes) == ParsedAnswer(
        "baby\u2019s breath",
        {
            "verreaux\u2019s skink": 3.0,
            "baby\u2019s breath": 90.0,
            "none of these classes": 1.0,
        },
        "ok",
        "",
    )


def test_quoted_class_names_from_stage1() -> None:
    classes = ["hen", '"po boy"', "tennis racket.", "none of these classes"]
    text = (
        "Prediction: \"po boy\" Confidence: {'hen': 1.0, '\"po boy\"': 80.0, 'tennis racket': 2.0, "
        "'none of these classes': 5.0}"
    )
    assert parse_answer(text, classes) == ParsedAnswer(
        '"po boy"',
        {
            "hen": 1.0,
            '"po boy"': 80.0,
            "tennis racket.": 2.0,
            "none of these classes": 5.0,
        },
        "ok",
        "",
    )


def test_huge_answer_under_50ms() -> None:
    text = f"Prediction: hen Confidence: {FULL_DICT[:-1]}, " + "'tree': 1.5, 'hen': 2.0, " * 4000
    assert len(text) > 100_000
    best = min(_timed(parse_answer, text, C) for _ in range(3))
    assert best < 0.05


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# every released answer

_CLASS_LIST = re.compile(r"classes: (\[.*?\]) and assign", re.DOTALL)


def prompt_classes(prompt: str) -> list[str]:
    """The option list of a released prompt (ID classes, auxiliary classes, 'none of these classes')."""
    return ast.literal_eval(_CLASS_LIST.search(prompt).group(1))


def prompt_examples(prompt: str) -> list[dict[str, float]]:
    """The numeric example dicts of a baseline prompt (its 'Confidence: {...}' lines)."""
    examples = []
    for line in prompt.splitlines():
        if line.startswith("Confidence: {"):
            example = ast.literal_eval(line[len("Confidence: ") :])
            if all(isinstance(v, (int, float)) for v in example.values()):
                examples.append(example)
    return examples


@cache
def release_answers(
    relpath: str,
) -> tuple[tuple[str, tuple[str, ...], tuple, str], ...]:
    """(image_id, classes, examples, answer) for every answer of one released response file."""
    data = read_release_file(RELEASE_DIR / "response" / relpath)
    pairs = (
        [(image, prompt, answer) for image, by_prompt in data.items() for prompt, answer in by_prompt.items()]
        if "/stage2/" in relpath
        else [(image, prompt, answer) for prompt, by_image in data.items() for image, answer in by_image.items()]
    )
    prompts: dict[str, tuple] = {}
    rows = []
    for image, prompt, answer in pairs:
        if prompt not in prompts:
            prompts[prompt] = (
                tuple(prompt_classes(prompt)),
                tuple(prompt_examples(prompt)),
            )
        rows.append((image, *prompts[prompt], answer))
    return tuple(rows)


@cache
def parsed_release(relpath: str) -> tuple[ParsedAnswer, ...]:
    return tuple(parse_answer(a, c, e) for _, c, e, a in release_answers(relpath))


# (ok, partial, failed), measured and checked by eye: every GPT failure is a refusal (plain, or
# "I'm unable to ..."), the one GPT partial omits 'candle'; Qwen's failures are bare
# "Prediction: x Confidence: 99.0" lines, prose, and {name, name, ...} sets without numbers.
EXPECTED_STATUS = {
    "baseline/cifar10-25%/gpt/cifar10.jsonl.gz": (1864, 0, 386),
    "baseline/imagenet200-25%/qwen/imagenet200.jsonl.gz": (0, 1128, 1072),
    "baseline/imagenet200-25%/qwen/inaturalist.jsonl.gz": (0, 1326, 1174),
    "baseline/imagenet200-25%/qwen/ninco.jsonl.gz": (0, 693, 611),
    "baseline/imagenet200-5%/gpt/imagenet200.jsonl.gz": (378, 1, 21),
    "baseline/imagenet200-5%/gpt/inaturalist.jsonl.gz": (493, 0, 7),
    "baseline/imagenet200-5%/gpt/ninco.jsonl.gz": (211, 0, 38),
    "baseline/imagenet200-5%/gpt/openimage_o.jsonl.gz": (745, 0, 48),
    "baseline/imagenet200-5%/gpt/texture.jsonl.gz": (232, 0, 26),
    "reguide/imagenet200-5%/stage2/gpt/ninco.jsonl.gz": (228, 0, 21),
}
EXPECTED_GPT_REASONS = {
    "baseline/cifar10-25%/gpt/cifar10.jsonl.gz": {"": 1864, "refusal": 386},
    "baseline/imagenet200-5%/gpt/imagenet200.jsonl.gz": {
        "": 378,
        "refusal": 21,
        "missing 1 class": 1,
    },
    "baseline/imagenet200-5%/gpt/inaturalist.jsonl.gz": {"": 493, "refusal": 7},
    "baseline/imagenet200-5%/gpt/ninco.jsonl.gz": {"": 211, "refusal": 38},
    "baseline/imagenet200-5%/gpt/openimage_o.jsonl.gz": {"": 745, "refusal": 48},
    "baseline/imagenet200-5%/gpt/texture.jsonl.gz": {"": 232, "refusal": 26},
    "reguide/imagenet200-5%/stage2/gpt/ninco.jsonl.gz": {"": 228, "refusal": 21},
}


def test_every_released_response_file_is_covered() -> None:
    shipped = {
        str(p.relative_to(RELEASE_DIR / "response"))
        for p in (RELEASE_DIR / "response").glob("**/*.jsonl.gz")
        if "/stage1/" not in str(p)
    }
    assert shipped == set(EXPECTED_STATUS)


@pytest.mark.parametrize("relpath", sorted(EXPECTED_STATUS))
def test_release_status_counts(relpath: str) -> None:
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for (_, classes, _, _), parsed in zip(release_answers(relpath), parsed_release(relpath)):
        counts[parsed.status] += 1
        reasons[parsed.reason] += 1
        _check_invariants(parsed, classes)
    assert (counts["ok"], counts["partial"], counts["failed"]) == EXPECTED_STATUS[relpath]
    if relpath in EXPECTED_GPT_REASONS:
        assert dict(reasons) == EXPECTED_GPT_REASONS[relpath]


def _check_invariants(parsed: ParsedAnswer, classes: tuple[str, ...]) -> None:
    assert parsed.status in {"ok", "partial", "failed"}
    assert set(parsed.confidences) <= set(classes)
    assert (parsed.status == "ok") == (set(parsed.confidences) == set(classes))
    assert (parsed.status == "failed") == (not parsed.confidences)
    assert parsed.prediction is None or parsed.prediction in classes
    assert parsed.status == "ok" or parsed.reason


def test_refusal_preface_keeps_answer() -> None:
    """GPT often apologises and then answers in full: those answers must parse."""
    prefaced = [
        parse_answer(a, c, e)
        for rel in EXPECTED_GPT_REASONS
        for _, c, e, a in release_answers(rel)
        if a.lstrip().startswith(("I'm", "I\u2019m", "Sorry")) and "Confidence: {" in a
    ]
    assert len(prefaced) == 246
    assert all(p.status == "ok" for p in prefaced)


def test_fast_path_matches_general_scan_on_real_answers() -> None:
    """The C-level fast path and the general scan find the same pairs wherever the fast path applies."""
    used = 0
    for relpath in EXPECTED_STATUS:
        for _, _, _, answer in release_answers(relpath):
            text = parsing._clean(answer)
            region = parsing._dict_region(text, text.lower())
            if region is None or not region[2]:
                continue
            start, end, _ = region
            fast = parsing._fast_dict(text[start : end + 1])
            if fast is not None:
                used += 1
                assert list(fast.items()) == parsing._scan_pairs(text, start, end, limit=len(fast))
    assert used == 4190


def test_plain_key_fast_case_matches_the_general_key_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unquoted keys ("{goldfish: 99, great white shark: 1}", Qwen's usual dict) take a regex fast case
    in the scan; with it switched off, every released answer gives the very same pairs."""
    texts = [parsing._clean(answer) for relpath in EXPECTED_STATUS for _, _, _, answer in release_answers(relpath)]
    with_fast = [parsing._scan_pairs(text, 0, len(text), limit=10_000) for text in texts]
    plain_key, never = parsing._PLAIN_KEY_SPAN, re.compile(r"(?!)")
    monkeypatch.setattr(parsing, "_PLAIN_KEY_SPAN", never)
    without = [parsing._scan_pairs(text, 0, len(text), limit=10_000) for text in texts]
    assert with_fast == without
    assert sum(len(pairs) for pairs in with_fast) > 500_000  # the fast case is exercised at scale
    for span, key in [("{goldfish", "goldfish"), (", great white shark", "great white shark"),
                      ("\n, shih-tzu", "shih-tzu"), (", 2. hen", None), (",- hen", None), (", hen ", None)]:
        plain = plain_key.fullmatch(span)
        assert (plain[1] if plain else None) == key
        if key:
            assert parsing._key_from_span(span) == key


def test_no_copied_examples_in_release() -> None:
    """The released prompts' example dicts are never echoed (Qwen echoes other, fixed dicts)."""
    for relpath in EXPECTED_STATUS:
        assert all(parsed.reason != "copied example" for parsed in parsed_release(relpath))


# --------------------------------------------------------------------------------------------
# acceptance: GPT-4o ImageNet200-5% baseline AUROC with S_max

GPT_5 = "baseline/imagenet200-5%/gpt/{}.jsonl.gz"


def s_max_scores(name: str) -> list[float]:
    """S_max = max confidence over the 200 ID classes; answers with no ID confidence are excluded."""
    relpath = GPT_5.format(name)
    scores = []
    for (_, classes, _, _), parsed in zip(release_answers(relpath), parsed_release(relpath)):
        conf = parsed.confidences
        ids = [conf[c] for c in classes[:200] if c in conf]
        if ids:
            scores.append(max(ids))
    return scores


@pytest.mark.parametrize(
    ("ood", "expected"),
    [("inaturalist", 97.7), ("ninco", 94.2), ("openimage_o", 97.2), ("texture", 94.2)],
)
def test_gpt4o_baseline_auroc(ood: str, expected: float) -> None:
    roc_auc_score = pytest.importorskip("sklearn.metrics").roc_auc_score
    s_id, s_ood = s_max_scores("imagenet200"), s_max_scores(ood)
    assert len(s_id) == 379
    auroc = 100 * roc_auc_score([1] * len(s_id) + [0] * len(s_ood), s_id + s_ood)
    assert abs(auroc - expected) <= 0.1, auroc


def test_throughput_on_released_imagenet200_answers() -> None:
    """Real ImageNet200 answers parse fast even on a busy 2-core CI machine.

    The floor is loose on purpose (CI noise: a quiet core does well over 10k/s on the GPT-4o answers);
    it catches a pathological slowdown, not a few percent.
    """
    rows = [(a, c, e) for rel in EXPECTED_STATUS if "imagenet200" in rel for _, c, e, a in release_answers(rel)]
    assert len(rows) == 8453
    elapsed = _timed(lambda: [parse_answer(a, c, e) for a, c, e in rows])
    assert len(rows) / elapsed > 1_000
