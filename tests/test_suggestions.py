"""ReGuide stage-1 suggestions: hand cases per answer format, filtering, and the released data.

Acceptance: parse + filter every released GPT-4o stage-1 answer for NINCO (ImageNet200-5%) and
compare the kept names with the auxiliary classes the authors put in the stage-2 prompt of the same
image. Measured (pinned below): mean per-image Jaccard 0.9875 on normalized names, 0.8867 on raw
strings (the authors lowercased names and kept trailing periods and quote marks, we keep the
model's case and strip periods). Main causes of disagreement, in images with Jaccard < 1
(36 of 249):

- 15: we drop a name whose key without spaces is an ID class ('pufferfish' ~ 'puffer fish',
  'clownfish', 'lawnmower', 'gas mask' ~ 'gasmask'); the authors kept them.
- 11: numbered answers ('1. Tapir 2. Anteater ...'): the authors' split left '' and cut names
  ('Malayan Tapir' -> 'malayan') and kept ID classes ('basketball') there.
- 4: runs without commas ('firefly  silverware', '... lacewing  Visually dissimilar: laptop'):
  the authors kept them as one name; we split at the run of blanks / the header. The worst image
  (Jaccard 0) is a list separated only by blanks: the authors got 2 'names', we get 40.
- a few: parenthetical remarks on ID classes ('jellyfish (without specific type)') we drop, and
  ID classes written with a trailing period ('cowboy hat.') the authors kept.
"""

from __future__ import annotations

import ast
import statistics
import time
from collections import Counter
from functools import cache

import pytest

from reguide_tasks.answers.suggestions import (
    MAX_CHARS,
    REJECTION_CLASS,
    FilterResult,
    Suggestions,
    clean_item,
    filter_suggestions,
    parse_suggestions,
    suggestion_key,
)
from reguide_tasks.data.release import (
    RELEASE_DIR,
    normalize_image_path,
    read_release_file,
)

CLASSES_DIR = RELEASE_DIR.parent / "classes"
STAGE1_DIR = RELEASE_DIR / "response/reguide/imagenet200-5%/stage1/gpt"
STAGE2_NINCO = RELEASE_DIR / "response/reguide/imagenet200-5%/stage2/gpt/ninco.jsonl.gz"
IMAGENET200 = (CLASSES_DIR / "imagenet200.txt").read_text(encoding="utf-8").splitlines()


@cache
def stage1_answers(name: str) -> dict[str, str]:
    (answers,) = read_release_file(STAGE1_DIR / f"{name}.jsonl.gz").values()
    return answers


@cache
def parsed_answers(name: str) -> dict[str, Suggestions]:
    return {key: parse_suggestions(answer) for key, answer in stage1_answers(name).items()}


def stage2_aux_classes(prompt: str) -> list[str]:
    """The auxiliary classes in a released stage-2 prompt: its class list minus the 200 ID classes
    and the rejection class (the list is a Python literal on the 'classes: [...]' line)."""
    line = next(line for line in prompt.splitlines() if "classes: [" in line)
    classes = ast.literal_eval(line[line.index("["): line.rindex("]") + 1])
    assert classes[:200] == IMAGENET200 and classes[-1] == REJECTION_CLASS
    return classes[200:-1]


def jaccard(a: set[str], b: set[str]) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


# ---------------------------------------------------------------------------------------------
# suggestion_key / clean_item
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("cocker spaniels", "cocker spaniel"),
        ("boxes", "box"),
        ("ponies", "pony"),
        ("collies", "collie"),
        ("Granny-Smith", "granny smith"),
        ("  Lawn_Mower ", "lawn mower"),
        ("tennis racket.", "tennis racket"),
        ("bishop's cap", "bishops cap"),
        ("po\u2019 boy", "po boy"),
        ("Wolves", "wolf"),
        ("benches", "bench"),
        ("glasses", "glass"),
        ("flies", "fly"),
        ("NONE of these classes", REJECTION_CLASS),
        ("Cr\u00e8me br\u00fbl\u00e9e", "cr\u00e8me br\u00fbl\u00e9e"),
    ],
)
def test_normalize_name_equivalences(a: str, b: str) -> None:
    assert suggestion_key(a) == suggestion_key(b)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("glass", "glass"),
        ("bus", "bus"),
        ("Mantis", "mantis"),
        ("cactus", "cactus"),
        ("ponies", "pony"),
        ("Golden  Retriever!!", "golden retriever"),
        ("hot-air_balloon", "hot air balloon"),
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize_name_keys(name: str, key: str) -> None:
    assert suggestion_key(name) == key


def test_normalize_name_keeps_distinct_names_apart() -> None:
    assert suggestion_key("glass") != suggestion_key("glas")
    assert suggestion_key("bus") != suggestion_key("bu")
    assert suggestion_key("sea lion") != suggestion_key("sea")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  1. jet  ", "jet"),
        ("2) Glider.", "Glider"),
        ("(3) drone", "drone"),
        ("- kite", "kite"),
        ("\u2022 kite", "kite"),
        ("**Hot air balloon**", "Hot air balloon"),
        ("'jet'", "jet"),
        ('"po\' boy"', "po' boy"),
        ("tennis racket.", "tennis racket"),
        ("St. Bernard", "St. Bernard"),
        ("3D printer", "3D printer"),
        ("stingray (ray)", "stingray (ray)"),
        ("  ", ""),
    ],
)
def test_clean_item(raw: str, clean: str) -> None:
    assert clean_item(raw) == clean
    assert clean_item(clean) == clean


# ---------------------------------------------------------------------------------------------
# parse_suggestions: one case per format models use
# ---------------------------------------------------------------------------------------------

FOUR = ["jet", "glider", "banana", "sofa"]


@pytest.mark.parametrize(
    "text",
    [
        "Class suggested: jet, glider, banana, sofa",
        "Class suggested: jet, glider, banana, sofa.",
        "Class suggested:   jet,  glider, banana , sofa ",
        "Class  suggested :jet, glider, banana, sofa",
        "class suggested: jet; glider; banana; sofa",
        "Classes suggested: jet, glider, banana, and sofa.",
        "jet, glider, banana, sofa",
        "Class suggested: Class suggested: jet, glider, banana, sofa",
        "**Class suggested:** **jet**, **glider**, `banana`, 'sofa'",
        "Class suggested: jet, glider, banana, sofa<|endoftext|>",
        "Class suggested:\n1. jet\n2. glider\n3. banana\n4. sofa",
        "Class suggested:\n1) jet\n2) glider\n3) banana\n4) sofa",
        "Class suggested:  1. jet 2. glider 3. banana 4. sofa",
        "Class suggested:\n- jet\n- glider\n- banana\n- sofa",
        "Class suggested:\n* jet\n* glider\n* banana\n* sofa",
        "\u2022 jet\n\u2022 glider\n\u2022 banana\n\u2022 sofa",
        "Class suggested:    jet    glider    banana    sofa",
        "- jet - glider - banana - sofa",
        "jet\nglider\nbanana\nsofa",
        "## Class suggested:\n1. **jet**\n2. **glider**\n3. **banana**\n4. **sofa**",
        "I'm sorry, I can't identify people. Here are class suggestions: jet, glider, banana, sofa",
        "I don't know who this is.  Class suggested: jet, glider, banana, sofa",
        "Sure! Here are the classes:\njet, glider, banana, sofa\nLet me know if you need more!",
        "Class suggested: 1. jet - a plane 2. glider: no engine 3. banana 4. sofa",
        "Example) When the given image is 'airplane'.\nClass suggested: jet, glider, banana, sofa",
    ],
)
def test_formats_without_headers_split_by_position(text: str) -> None:
    result = parse_suggestions(text, n_near=2, n_far=2)
    assert result.items == FOUR, result
    assert (result.near, result.far) == (FOUR[:2], FOUR[2:])
    assert result.status == "ok"


@pytest.mark.parametrize(
    "text",
    [
        "Visually similar: jet, glider\nVisually dissimilar: banana, sofa",
        "**Visually similar:**\n1. jet\n2. glider\n\n**Visually dissimilar:**\n3. banana\n4. sofa",
        "Visually similar:\n1. jet\n2. glider\nVisually dissimilar:\n1. banana\n2. sofa",
        "Class suggested:  jet  glider  Visually dissimilar:  banana  sofa",
        "Similar classes\n- jet\n- glider\nDifferent domains\n- banana\n- sofa",
        "### Similar\njet\nglider\n### Dissimilar\nbanana\nsofa",
        "Class suggested: jet, glider  Disimilar class names: banana, sofa",
        "jet, glider. Not visually similar: banana, sofa",
        "1. jet 2. glider  Visually dissimilar or different domain: 3. banana 4. sofa",
        "Class suggested: jet, glider  Dissimilar class suggested: banana, sofa",
        "Class suggested: jet, glider  Class dissimilar:  banana  sofa",
        "Unrelated: banana, sofa",  # only a far section: nothing near
    ],
)
def test_headers_carry_the_split(text: str) -> None:
    result = parse_suggestions(text, n_near=2, n_far=2)
    if text.startswith("Unrelated"):
        assert (result.items, result.near, result.far) == (FOUR[2:], [], FOUR[2:])
        return
    assert result.items == FOUR, result
    assert (result.near, result.far) == (FOUR[:2], FOUR[2:])
    assert result.status == "ok" and "split by headers" in result.reason


def test_header_split_wins_over_position() -> None:
    text = "Visually similar: jet\nVisually dissimilar: glider, banana, sofa"
    result = parse_suggestions(text, 2, 2)
    assert (result.near, result.far) == (["jet"], ["glider", "banana", "sofa"])
    assert result.status == "ok"


def test_lone_similar_header_falls_back_to_position() -> None:
    result = parse_suggestions("Visually similar:\n1. jet\n2. glider\n3. banana\n4. sofa", 2, 2)
    assert (result.near, result.far) == (FOUR[:2], FOUR[2:])


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, I can't help with that.",
        "I\u2019m sorry, I can\u2019t help with identifying people or pets.",
        "I'm unable to identify the content of the image. Could you provide a different image?",
        (
            "I'm sorry, I can\u2019t provide information about this image. However, I can help "
            "with other questions or information you might need!"
        ),
        (
            "I cannot provide class names for the image provided, as it includes a zebra, which "
            "is on the list of restricted categories."
        ),
    ],
)
def test_refusals_fail(text: str) -> None:
    result = parse_suggestions(text)
    assert (result.status, result.items) == ("failed", [])
    assert result.reason.startswith("refusal")


@pytest.mark.parametrize("text", ["", "   \n ", "<|endoftext|>", ",,, ;;", "Class suggested:"])
def test_empty_answers_fail(text: str) -> None:
    result = parse_suggestions(text)
    assert (result.status, result.items, result.near, result.far) == ("failed", [], [], [])


def test_fewer_and_more_names_are_partial() -> None:
    fewer = parse_suggestions("Class suggested: " + ", ".join(f"n{i}" for i in range(39)))
    assert fewer.status == "partial" and len(fewer.near) == 20 and len(fewer.far) == 19
    assert fewer.reason.startswith("39 names, asked for 40")
    more = parse_suggestions("Class suggested: " + ", ".join(f"n{i}" for i in range(43)))
    assert more.status == "partial" and len(more.near) == 20 and len(more.far) == 23


def test_forty_names_are_ok_and_split_twenty_twenty() -> None:
    names = [f"name {i}" for i in range(40)]
    result = parse_suggestions("Class suggested: " + ", ".join(names) + ".")
    assert result == Suggestions(names[:20], names[20:], names, "ok", "")


def test_cut_off_numbered_answer_drops_the_dangling_number() -> None:
    result = parse_suggestions("Class suggested:  1. Laptop 2. Bicycle 3. Wristwatch 4", 2, 2)
    assert result.items == ["Laptop", "Bicycle", "Wristwatch"]


def test_numbers_inside_names_are_not_list_numbers() -> None:
    result = parse_suggestions("Class suggested: 3D printer, formula 1. car, apollo 11", 2, 1)
    assert result.items == ["3D printer", "formula 1. car", "apollo 11"]


def test_commas_inside_short_parentheses_do_not_split() -> None:
    text = "Class suggested: gibbon (due to appearances, it does not identify), lynx"
    result = parse_suggestions(text)
    assert result.items == ["gibbon (due to appearances, it does not identify)", "lynx"]


def test_copied_prompt_example_is_dropped_when_the_model_adds_its_own_list() -> None:
    text = (
        "Class suggested: jet, fighter get, helicopter, glider\n"
        "Class suggested: lynx, bobcat, sofa, banana"
    )
    result = parse_suggestions(text, 2, 2)
    assert result.items == ["lynx", "bobcat", "sofa", "banana"]
    assert "copied example dropped" in result.reason


def test_repetition_loop_is_bounded_and_fast() -> None:
    loop = "Class suggested: " + "lynx, bobcat, caracal, " * 500  # ~11.5k characters
    start = time.perf_counter()
    result = parse_suggestions(loop)
    elapsed = time.perf_counter() - start
    assert result.status == "partial" and len(result.items) == 160  # 4 * 40 names at most
    assert result.reason.startswith("160 names") and "stopped at 160 names" in result.reason
    assert elapsed < 0.5  # a quadratic scan of this text takes seconds; generous for a loaded machine
    assert filter_suggestions(result.items, IMAGENET200).kept == ["lynx", "bobcat", "caracal"]


def test_long_text_is_read_up_to_max_chars() -> None:
    text = "Class suggested: " + "x" * (2 * MAX_CHARS)
    result = parse_suggestions(text)
    assert result.status == "failed" and f"read the first {MAX_CHARS}" in result.reason


def test_custom_counts() -> None:
    result = parse_suggestions("a, b, c, d, e", n_near=3, n_far=2)
    assert (result.near, result.far, result.status) == (["a", "b", "c"], ["d", "e"], "ok")
    assert parse_suggestions("a, b, c", n_near=1, n_far=1).status == "partial"


def test_non_string_input_fails_without_raising() -> None:
    assert parse_suggestions(None).status == "failed"  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# filter_suggestions
# ---------------------------------------------------------------------------------------------

TOY_ID = ["cocker spaniels", "goldfish", "puffer fish", "Granny Smith", "lorikeet"]


def test_filter_drops_id_rejection_duplicates_and_empties_in_order() -> None:
    items = [
        "Cocker Spaniel", "beagle", "Goldfish.", "None of these classes", "", "Beagles",
        "pufferfish", "granny-smith", "lorikeet (not this one)", "sea lion", "...",
    ]
    result = filter_suggestions(items, TOY_ID)
    assert result == FilterResult(
        kept=["beagle", "sea lion"],
        dropped=[
            ("Cocker Spaniel", "id class"),
            ("Goldfish.", "id class"),
            ("None of these classes", "rejection class"),
            ("", "empty"),
            ("Beagles", "duplicate"),
            ("pufferfish", "id class"),
            ("granny-smith", "id class"),
            ("lorikeet (not this one)", "id class"),
            ("...", "empty"),
        ],
    )


def test_filter_keeps_display_text_and_first_occurrence() -> None:
    result = filter_suggestions(["  Snow Lynx. ", "snow lynx", "SNOW-LYNX"], [])
    assert result.kept == ["Snow Lynx"]
    assert [reason for _, reason in result.dropped] == ["duplicate", "duplicate"]


def test_filter_caps_the_count() -> None:
    names = [f"name {i}" for i in range(45)]
    result = filter_suggestions(names, [])
    assert result.kept == names[:40]
    assert result.dropped == [(n, "over cap") for n in names[40:]]
    assert filter_suggestions(names, [], cap=3).kept == names[:3]
    assert filter_suggestions(names, [], cap=0).kept == []


def test_filter_on_a_real_answer() -> None:
    answer = stage1_answers("ninco")[
        "./data/images_largescale/ninco/Caracal_caracal_caracal/"
        "Caracal_caracal_caracal_023_038-43501856.jpeg"
    ]
    parsed = parse_suggestions(answer)
    result = filter_suggestions(parsed.items, IMAGENET200)
    assert (parsed.status, len(parsed.items)) == ("partial", 39)
    assert result.dropped == [("meerkat", "id class"), ("basketball", "id class")]
    assert len(result.kept) == 37 and result.kept[-1] == "tennis racket"


# ---------------------------------------------------------------------------------------------
# The released GPT-4o stage-1 answers (ImageNet200-5%)
# ---------------------------------------------------------------------------------------------

# status counts for every shipped stage-1 file: ok / partial / failed
STATUS_COUNTS = {
    "imagenet200": {"ok": 189, "partial": 175, "failed": 36},
    "inaturalist": {"ok": 309, "partial": 191, "failed": 0},
    "ninco": {"ok": 140, "partial": 109, "failed": 0},
    "openimage_o": {"ok": 463, "partial": 329, "failed": 1},
    "ssb_hard": {"ok": 1183, "partial": 725, "failed": 62},
    "texture": {"ok": 166, "partial": 92, "failed": 0},
}


def test_every_shipped_stage1_file_is_counted() -> None:
    shipped = {p.name.removesuffix(".jsonl.gz") for p in STAGE1_DIR.glob("*.jsonl.gz")}
    assert shipped == set(STATUS_COUNTS)


@pytest.mark.parametrize("name", sorted(STATUS_COUNTS))
def test_released_stage1_status_counts(name: str) -> None:
    counts = {"ok": 0, "partial": 0, "failed": 0}
    answers = stage1_answers(name)
    for image_id, result in parsed_answers(name).items():
        answer = answers[image_id]
        counts[result.status] += 1
        # Every answer GPT-4o gave here has 36..43 names or is a refusal.
        if result.status == "failed":
            assert result.reason.startswith("refusal") and len(answer) < 300, answer
        else:
            assert 36 <= len(result.items) <= 43, (answer, result)
            assert all(item and item == clean_item(item) for item in result.items)
    assert counts == STATUS_COUNTS[name]


def test_acceptance_jaccard_against_released_stage2_auxiliary_classes() -> None:
    answers = {normalize_image_path(k): v for k, v in parsed_answers("ninco").items()}
    stage2 = read_release_file(STAGE2_NINCO)
    assert len(stage2) == len(answers) == 249
    normalized, raw = [], []
    for image_id, prompts in stage2.items():
        (prompt,) = prompts
        theirs = stage2_aux_classes(prompt)
        kept = filter_suggestions(answers[normalize_image_path(image_id)].items, IMAGENET200).kept
        # The authors' list holds '' where their split of a numbered answer left one: no name.
        theirs_keys = {suggestion_key(n) for n in theirs} - {""}
        normalized.append(jaccard({suggestion_key(n) for n in kept}, theirs_keys))
        raw.append(jaccard(set(kept), set(theirs)))
    assert statistics.mean(normalized) >= 0.9
    assert statistics.mean(normalized) == pytest.approx(0.98751, abs=0.002)
    assert statistics.mean(raw) == pytest.approx(0.88670, abs=0.002)
    assert sum(j == 1.0 for j in normalized) == 213
    assert sum(j < 0.9 for j in normalized) == 3


def test_worst_acceptance_image_is_a_blank_separated_list() -> None:
    """Jaccard 0: the authors split on ', ' only and got two 'names'; we get all 40."""
    suffix = "ninco/tursiops_aduncus/tursiops_aduncus_051_30494972.jpeg"
    (answer,) = [v for k, v in stage1_answers("ninco").items() if k.endswith(suffix)]
    (prompts,) = [v for k, v in read_release_file(STAGE2_NINCO).items() if k.endswith(suffix)]
    theirs = stage2_aux_classes(next(iter(prompts)))
    assert len(theirs) == 2 and theirs[1].startswith("visually dissimilar:")
    result = parse_suggestions(answer)
    assert (result.status, len(result.near), len(result.far)) == ("ok", 20, 20)
    assert result.near[0] == "porpoise" and result.far[-1] == "tennis racket"


def test_compact_id_match_is_the_main_deliberate_difference() -> None:
    """'pufferfish' names the ID class 'puffer fish': we drop it, the authors kept it."""
    id_keys = {suggestion_key(c) for c in IMAGENET200}
    counts: Counter[str] = Counter()
    for parsed in parsed_answers("ninco").values():
        for item, reason in filter_suggestions(parsed.items, IMAGENET200).dropped:
            key = suggestion_key(item)
            if reason == "id class" and key not in id_keys:
                counts[key] += 1
    assert counts["pufferfish"] == 8 and counts["clownfish"] == 6 and counts["lawnmower"] == 3



def test_a_sentence_is_not_a_class_name():
    from reguide_tasks.answers.suggestions import filter_suggestions, parse_suggestions

    garbage = "cat sat on the mat while the dog looked at a picture of something else entirely"
    items = parse_suggestions(garbage).items
    result = filter_suggestions([*items, "west highland white terrier lookalike"], ["cat"])
    assert result.kept == ["west highland white terrier lookalike"]
    assert all(reason in ("not a class name", "id class") for _, reason in result.dropped)
