"""Prompt templates: byte identity with the released prompts, counts, overrides, validation."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reguide_tasks.data.release import RELEASE_DIR, read_release_file
from reguide_tasks.paths import TASKS_DIR, TEMPLATES_DIR
from reguide_tasks.prompts import render as prompts
from reguide_tasks.prompts.render import (
    REJECTION_CLASS,
    RELEASE_IMAGE_PREFIX,
    example_confidences,
    load_examples,
    load_template,
    render_baseline,
    render_stage1,
    render_stage2,
)

CLASSES_DIR = RELEASE_DIR.parent / "classes"
RESPONSES = RELEASE_DIR / "response"
BASELINE_FILES = sorted(RESPONSES.glob("baseline/*/*/*.jsonl.gz"))
STAGE1_FILES = sorted(RESPONSES.glob("reguide/imagenet200-5%/stage1/gpt/*.jsonl.gz"))
STAGE2_FILE = RESPONSES / "reguide/imagenet200-5%/stage2/gpt/ninco.jsonl.gz"
TOY = ["ant", "bee", "cat"]


def id_classes(benchmark: str) -> list[str]:
    return (CLASSES_DIR / f"{benchmark}.txt").read_text(encoding="utf-8").splitlines()


def only_prompt(path: Path) -> str:
    """The single prompt of a baseline / stage-1 file (``{prompt: {image: answer}}``)."""
    released = read_release_file(path)
    assert len(released) == 1
    return next(iter(released))


def first_difference(a: str, b: str) -> str:
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"first difference at {at}: {a[at - 30:at + 30]!r} != {b[at - 30:at + 30]!r}"


def toy_examples() -> list[dict]:
    return [
        {"prediction": "bee", "confidences": {"ant": 1.5, "bee": 88.8, "cat": 3.0, REJECTION_CLASS: 10.25}},
        {"prediction": REJECTION_CLASS, "confidences": {"ant": 0.0, "bee": 2.0, "cat": 7.77, REJECTION_CLASS: 99.1}},
    ]


def printed_class_list(prompt: str) -> list[str]:
    """Read the class list back out of the first line of a baseline / stage-2 prompt."""
    first = prompt.split("\n", 1)[0]
    return ast.literal_eval(first[first.index("[") : first.rindex("]") + 1])


# --- byte identity with the release -------------------------------------------------------------


def test_paths_point_at_the_repo_templates() -> None:
    assert TEMPLATES_DIR == TASKS_DIR / "templates" and prompts.TEMPLATES_DIR == TEMPLATES_DIR
    assert {p.stem for p in TEMPLATES_DIR.glob("*.yaml")} >= {
        "baseline", "stage1", "stage2", "examples_cifar10", "examples_imagenet200"
    }


@pytest.mark.parametrize("path", BASELINE_FILES, ids=lambda p: "/".join(p.parts[-3:]))
def test_baseline_is_byte_identical(path: Path) -> None:
    benchmark = "cifar10" if "cifar10" in path.parent.parent.name else "imagenet200"
    released = only_prompt(path)
    assert released.startswith(RELEASE_IMAGE_PREFIX)
    rendered = render_baseline(id_classes(benchmark), load_examples(benchmark))
    assert RELEASE_IMAGE_PREFIX + rendered == released, first_difference(RELEASE_IMAGE_PREFIX + rendered, released)


def test_baseline_files_cover_both_benchmarks() -> None:
    names = {p.parent.parent.name for p in BASELINE_FILES}
    assert names == {"cifar10-25%", "imagenet200-25%", "imagenet200-5%"}
    assert len(BASELINE_FILES) == 9


@pytest.mark.parametrize("path", STAGE1_FILES, ids=lambda p: p.name)
def test_stage1_is_byte_identical(path: Path) -> None:
    released = only_prompt(path)
    assert not released.startswith(RELEASE_IMAGE_PREFIX)  # the stage-1 release has no image token
    rendered = render_stage1(id_classes("imagenet200"))
    assert rendered == released, first_difference(rendered, released)


def test_stage1_files_share_one_prompt() -> None:
    assert len(STAGE1_FILES) == 6
    assert len({only_prompt(path) for path in STAGE1_FILES}) == 1


def test_stage2_every_released_item_is_byte_identical() -> None:
    released = read_release_file(STAGE2_FILE)
    assert len(released) == 249
    ids = id_classes("imagenet200")
    aux_sizes = []
    for image_id, answers in released.items():
        assert len(answers) == 1, image_id
        prompt = next(iter(answers))
        assert prompt.startswith(RELEASE_IMAGE_PREFIX)
        classes = printed_class_list(prompt[len(RELEASE_IMAGE_PREFIX):])
        assert classes[:200] == ids and classes[-1] == REJECTION_CLASS, image_id
        aux = classes[200:-1]  # by position: some auxiliary names repeat an ID class
        aux_sizes.append(len(aux))
        rendered = RELEASE_IMAGE_PREFIX + render_stage2(ids, aux)
        assert rendered == prompt, f"{image_id}: {first_difference(rendered, prompt)}"
    assert min(aux_sizes) == 2 and max(aux_sizes) == 40


# --- example data -------------------------------------------------------------------------------


@pytest.mark.parametrize("benchmark", ["cifar10", "imagenet200"])
def test_examples_match_classes_and_predictions(benchmark: str) -> None:
    examples = load_examples(benchmark)
    assert len(examples) == 2
    assert examples[1]["prediction"] == REJECTION_CLASS
    assert examples[0]["prediction"] in id_classes(benchmark)
    for example in examples:
        confidences = example["confidences"]
        assert list(confidences) == id_classes(benchmark) + [REJECTION_CLASS]
        assert all(type(value) is float for value in confidences.values())
        assert max(confidences, key=confidences.get) == example["prediction"]
    assert example_confidences(benchmark) == [example["confidences"] for example in examples]


def test_example_numbers_print_as_released() -> None:
    first, second = example_confidences("cifar10")
    assert repr(first["cat"]) == "88.8" and repr(second["automobile"]) == "53.0"
    released = only_prompt(RESPONSES / "baseline/cifar10-25%/gpt/cifar10.jsonl.gz")
    assert f"Confidence: {first!r}\n" in released and f"Confidence: {second!r}\n" in released


def _extraction_script():
    path = Path(__file__).resolve().parents[1] / "utils" / "extract_prompt_examples.py"
    spec = importlib.util.spec_from_file_location("extract_prompt_examples", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("benchmark", ["cifar10", "imagenet200"])
def test_extraction_script_reproduces_data_files(benchmark: str) -> None:
    script = _extraction_script()
    examples = script.parse_examples(script.release_prompt(benchmark))
    assert examples == load_examples(benchmark)
    stored = (TEMPLATES_DIR / f"examples_{benchmark}.yaml").read_text(encoding="utf-8")
    assert script.examples_yaml(benchmark, examples) == stored


def test_extraction_rejects_unpaired_lines() -> None:
    script = _extraction_script()
    with pytest.raises(ValueError):
        script.parse_examples("Prediction: cat\nno confidence here\n")
    with pytest.raises(ValueError):
        script.parse_examples("Confidence: {'cat': 1.0}\n")


# --- counts and wording on a made-up class list -------------------------------------------------


def test_baseline_counts_for_three_classes() -> None:
    text = render_baseline(TOY, toy_examples())
    lines = text.split("\n")
    assert lines[0] == (
        "Your task is to classify the given image into one of these 4 classes: "
        "['ant', 'bee', 'cat', 'none of these classes'] and assign confidence values for your "
        "prediction to each class."
    )
    assert text.count("given other 3 classes") == 2
    assert "in at least one of the 4 classes given." in text
    assert "than the 4 given classes." in text
    assert "predicted into the given 3 classes except 'none of theses classes'." in text
    assert "Example 1) when a given image is predicted into the given 3 classes except 'none of these classes'\n" in text
    assert "Prediction: bee\nConfidence: {'ant': 1.5, 'bee': 88.8, 'cat': 3.0, 'none of these classes': 10.25}\n" in text
    assert sum(line.startswith("- ") for line in lines) == 7
    assert text.count("-" * 50 + "\n") == 4
    assert "$" not in text and "<image>" not in text
    assert text.endswith("Do not deviate from the above format.\n")


def test_stage1_counts_for_three_classes() -> None:
    text = render_stage1(TOY, n_near=2, n_far=3)
    assert text.startswith(
        "Your task is to provide 5 class names based on the given image. The first 2 names are "
        "visually similar to the image. The last 3 names are visually dissimilar or belong to "
        "different domains.\nYou should not provide over 5 class names.\n"
    )
    assert "{bicycle chain, bicycle wheel, bicycle handlebar} or {whale, humpback whale, blue whale}." in text
    assert "as your suggestions: ant, bee, cat.\n" in text
    assert "\nClass suggested: jet, fighter get, laptop, bicycle, skateboard\n" in text
    assert text.endswith("-" * 43 + "\nStrictly follow this format for your response.\n")


def test_stage1_example_is_capped_by_stored_lists() -> None:
    text = render_stage1(TOY, n_near=25, n_far=1)
    suggested = next(line for line in text.split("\n") if line.startswith("Class suggested: "))
    assert len(suggested.split(", ")) == 21 and suggested.endswith(", supersonic get, laptop")
    assert "provide 26 class names" in text


def test_stage2_counts_for_three_classes() -> None:
    text = render_stage2(TOY, ["dog", "eel"])
    assert printed_class_list(text) == TOY + ["dog", "eel", REJECTION_CLASS]
    assert "one of these 6 classes:" in text and text.count("given other 5 classes") == 2
    assert "\nExample)\n" + "-" * 50 + "\nPrediction: your prediction\n" in text
    assert (
        "Confidence: {'ant': 'your confidence', 'bee': 'your confidence', 'cat': 'your confidence', "
        "'dog': 'your confidence', 'eel': 'your confidence', 'none of these classes': 'your confidence'}\n"
    ) in text
    assert text.endswith("Do not deviate from the above format.\n")


def test_stage2_keeps_duplicate_aux_in_list_not_in_dict() -> None:
    text = render_stage2(TOY, ["bee", "dog"])
    assert printed_class_list(text) == ["ant", "bee", "cat", "bee", "dog", REJECTION_CLASS]
    assert "one of these 6 classes:" in text and "given other 5 classes" in text
    confidence_line = next(line for line in text.split("\n") if line.startswith("Confidence: "))
    assert list(ast.literal_eval(confidence_line[len("Confidence: "):])) == ["ant", "bee", "cat", "dog", REJECTION_CLASS]


def test_stage2_without_aux_matches_baseline_head() -> None:
    stage2 = render_stage2(TOY, [])
    baseline = render_baseline(TOY, toy_examples())
    head = stage2.split("\nHere is an example")[0]
    assert baseline.startswith(head + "\nHere are two examples")


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True),
    aux=st.lists(st.text(max_size=12), max_size=6),
)
def test_stage2_prints_any_names_verbatim(ids: list[str], aux: list[str]) -> None:
    if REJECTION_CLASS in ids or REJECTION_CLASS in aux:
        return
    text = render_stage2(ids, aux)
    classes = ids + aux + [REJECTION_CLASS]
    assert printed_class_list(text) == classes  # names with $, {}, quotes, newlines survive
    assert f"one of these {len(classes)} classes: " in text
    assert f"given other {len(classes) - 1} classes" in text


# --- templates, overrides, validation -----------------------------------------------------------


def test_pre_and_post_prompt_overrides_wrap_the_default_text() -> None:
    default = render_stage2(TOY, ["dog"])
    wrapped = render_stage2(TOY, ["dog"], {"pre_prompt": "SYSTEM ${x}\n", "post_prompt": "Answer now."})
    assert wrapped == "SYSTEM ${x}\n" + default + "Answer now."  # verbatim, no substitution
    assert render_stage1(TOY, template={"post_prompt": "!"}) == render_stage1(TOY) + "!"
    assert render_baseline(TOY, toy_examples(), {"pre_prompt": "> "}) == "> " + render_baseline(TOY, toy_examples())


def test_wording_overrides_reach_the_text() -> None:
    text = render_stage2(TOY, [], {"rejection_class": "unknown", "example_confidence": 0})
    assert printed_class_list(text) == TOY + ["unknown"]
    assert "into 'unknown': if you cannot" in text and REJECTION_CLASS not in text
    assert "'unknown': 0}" in text
    outro = render_stage1(TOY, template={"outro": "Only names, comma separated.\n"})
    assert outro.endswith("-" * 43 + "\nOnly names, comma separated.\n")


def test_load_template_returns_fresh_copies_with_deliberate_newlines() -> None:
    first = load_template("baseline")
    first["guidelines"].append("mutated")
    assert "mutated" not in load_template("baseline")["guidelines"]
    for name in ("baseline", "stage1", "stage2"):
        template = load_template(name)
        assert template["outro"].endswith(".\n") and not template["outro"].endswith("\n\n")
        assert template["pre_prompt"] == template["post_prompt"] == ""
        multi_line = {"outro", "examples_intro", "example_body"}
        texts = [v for k, v in template.items() if isinstance(v, str) and k not in multi_line]
        texts += template.get("guidelines", []) + template.get("example_headers", [])
        assert texts and all("\n" not in text for text in texts), name  # folded scalars stay one line
    assert load_template("baseline")["examples_intro"].count("\n") == 1


def test_template_yaml_parses_with_safe_load() -> None:
    for path in TEMPLATES_DIR.glob("*.yaml"):
        assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict), path.name


def test_bad_names_and_missing_templates() -> None:
    with pytest.raises(ValueError):
        load_template("../baseline")
    with pytest.raises(FileNotFoundError):
        load_template("no_such_template")
    with pytest.raises(ValueError, match="unknown benchmark 'mnist'"):  # examples belong to a benchmark
        load_examples("mnist")


def test_invalid_class_lists_are_rejected() -> None:
    with pytest.raises(TypeError):
        render_stage2("ant", [])
    with pytest.raises(TypeError):
        render_stage1([1, 2, 3])
    with pytest.raises(ValueError):
        render_stage2([], ["dog"])
    with pytest.raises(ValueError):
        render_stage2(["ant", "ant"], [])
    with pytest.raises(ValueError):
        render_stage2(TOY + [REJECTION_CLASS], [])
    with pytest.raises(ValueError):
        render_stage2(TOY, [REJECTION_CLASS])
    with pytest.raises(ValueError):
        render_stage1(TOY + [REJECTION_CLASS])


@pytest.mark.parametrize("n_near, n_far", [(0, 20), (20, -1), (2.5, 3), (True, 3)])
def test_invalid_suggestion_counts_are_rejected(n_near, n_far) -> None:
    with pytest.raises(ValueError):
        render_stage1(TOY, n_near=n_near, n_far=n_far)


def test_invalid_examples_are_rejected() -> None:
    examples = toy_examples()
    with pytest.raises(ValueError, match="example headers"):
        render_baseline(TOY, examples[:1])
    reordered = [{**examples[0], "confidences": dict(reversed(examples[0]["confidences"].items()))}, examples[1]]
    with pytest.raises(ValueError, match="prompt order"):
        render_baseline(TOY, reordered)
    with pytest.raises(ValueError, match="not a class"):
        render_baseline(TOY, [{**examples[0], "prediction": "dog"}, examples[1]])
    with pytest.raises(ValueError, match="confidence keys"):
        render_baseline(["ant", "bee"], examples)


def test_unknown_placeholder_is_reported() -> None:
    with pytest.raises(ValueError, match="'instruction'"):
        render_stage2(TOY, [], {"instruction": "Classify into ${n_klasses} classes."})
    with pytest.raises(ValueError, match="'guidelines'"):
        render_stage2(TOY, [], {"guidelines": ["costs $5"]})


def test_templates_do_not_register_as_lmms_eval_tasks():
    """lmms-eval indexes every YAML with a top-level ``task`` key under an include path as a task; the
    prompt templates name their opening sentence ``instruction`` instead."""
    for path in sorted(TEMPLATES_DIR.glob("*.yaml")):
        assert "task" not in yaml.safe_load(path.read_text(encoding="utf-8")), path.name
