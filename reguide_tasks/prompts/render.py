"""ReGuide prompts rendered from the YAML templates in ``tasks_yaml/templates``.

Three prompts (Kim, Lee, Hwang, ICLR 2025; wording from the authors' release, typos included):

- baseline: classify into the ID classes + :data:`REJECTION_CLASS`, one confidence per class, with
  two example answers whose numbers are data (``examples_<benchmark>.yaml``);
- stage 1: suggest ``n_near`` visually similar then ``n_far`` dissimilar class names, no ID class;
- stage 2: the baseline task over ID + auxiliary classes, with a fill-in example.

Conventions: class lists are printed as Python's ``repr`` of a list (stage 1: joined with ", "),
confidence dicts as ``repr`` of a dict; sections are joined with ``"\\n"``; the text ends with the
released trailing newline. The released baseline / stage-2 prompts start with ``<image>\\n``
(:data:`RELEASE_IMAGE_PREFIX`), which is NOT rendered here: lmms-eval inserts the image itself.
The stage-1 release has no such prefix.

Every ``render_*`` takes ``template``: overrides shallow-merged on top of the YAML template (the
``lmms_eval_specific_kwargs`` pattern), e.g. ``{"post_prompt": "..."}``. ``pre_prompt`` and
``post_prompt`` (default "") are put verbatim before / after the prompt; the other text fields use
``string.Template`` placeholders (``${name}``, ``$$`` for a literal ``$``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

import yaml

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.paths import TEMPLATES_DIR
from reguide_tasks.vocab import REJECTION_CLASS

__all__ = [
    "REJECTION_CLASS",
    "RELEASE_IMAGE_PREFIX",
    "TEMPLATES_DIR",
    "example_confidences",
    "generated_examples",
    "load_examples",
    "load_template",
    "render_baseline",
    "render_stage1",
    "render_stage2",
]

RELEASE_IMAGE_PREFIX = "<image>\n"

_NAME = re.compile(r"[A-Za-z0-9_-]+")


@cache
def _read_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _data_file(stem: str) -> Path:
    if not _NAME.fullmatch(stem):
        raise ValueError(f"not a template name: {stem!r}")
    path = TEMPLATES_DIR / f"{stem}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no template file {path}")
    return path


def load_template(name: str) -> dict:
    """The template ``tasks_yaml/templates/<name>.yaml`` ("baseline", "stage1", "stage2") as a fresh dict."""
    template = _read_yaml(_data_file(name))
    if not isinstance(template, dict):
        raise TypeError(f"template {name!r} is not a mapping")
    return copy.deepcopy(template)


def load_examples(benchmark: str) -> list[dict]:
    """The baseline example answers of ``benchmark``, as its file's ``examples`` says: ``released``
    (``examples_<benchmark>.yaml`` here: the authors' prompt, values exactly as it prints them), a
    file of the same layout, or none given: :func:`generated_examples`, seeded by the benchmark's name.

    Each is ``{"prediction": str, "confidences": {class: float}}``, confidences in class order
    (rejection class last).
    """
    bench = get_benchmark(benchmark)
    if not bench.examples:
        return generated_examples(bench.classes, bench.prompt_name)
    path = _data_file(f"examples_{bench.prompt_name}") if bench.examples == "released" else Path(bench.examples)
    data = _read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise ValueError(f"{path}: expected a mapping with 'examples': a list of {{prediction, confidences}}")
    return copy.deepcopy(data["examples"])


def generated_examples(classes: Sequence[str], seed: str) -> list[dict]:
    """Two example answers for a benchmark without a released prompt, in the released examples'
    shape: one predicts an ID class, one the rejection class, each with the top confidence (90-99.9)
    and every other class a lower one (0.5-80), two decimals. Seeded by ``seed`` (the benchmark's
    name), so every run and machine prints the same prompt."""
    import random

    rng = random.Random(f"reguide-examples/{seed}")
    options = [*_id_class_names(classes, REJECTION_CLASS), REJECTION_CLASS]
    examples = []
    for top in (rng.randrange(len(options) - 1), len(options) - 1):  # an ID class, then the rejection class
        confidences = {name: round(rng.uniform(0.5, 80.0), 2) for name in options}
        confidences[options[top]] = round(rng.uniform(90.0, 99.9), 2)
        examples.append({"prediction": options[top], "confidences": confidences})
    return examples


def example_confidences(benchmark: str) -> list[dict[str, float]]:
    """Just the confidence dicts of :func:`load_examples` (to spot an example copied back)."""
    return [example["confidences"] for example in load_examples(benchmark)]


def _merged(name: str, overrides: Mapping | None) -> dict:
    template = load_template(name)
    template.update(overrides or {})
    template.setdefault("pre_prompt", "")
    template.setdefault("post_prompt", "")
    return template


def _substitute(text: str, values: Mapping[str, Any], where: str) -> str:
    """Fill ``${name}`` placeholders of ``text``; an unknown one is a ValueError naming ``where``."""
    try:
        return Template(text).substitute(values)
    except KeyError as error:
        raise ValueError(f"template field {where!r}: unknown placeholder {error}") from None
    except ValueError as error:  # a lone "$"
        raise ValueError(f"template field {where!r}: {error}") from None


def _fill(template: Mapping, field: str, values: Mapping[str, Any]) -> str:
    return _substitute(template[field], values, field)


def _class_names(classes: Sequence[str], what: str) -> list[str]:
    if isinstance(classes, str):
        raise TypeError(f"{what} must be a sequence of class names, not one string")
    names = list(classes)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"{what} must hold strings only")
    return names


def _id_class_names(id_classes: Sequence[str], rejection_class: str) -> list[str]:
    """ID classes as a list: non-empty, no duplicates, not containing the rejection class."""
    names = _class_names(id_classes, "id_classes")
    if not names:
        raise ValueError("id_classes is empty")
    if len(set(names)) != len(names):
        raise ValueError("id_classes has duplicates")
    if rejection_class in names:
        raise ValueError(f"id_classes must not contain the rejection class {rejection_class!r}")
    return names


def _render_classification(
    template: Mapping, classes: list[str], examples: Sequence[tuple[str, str]]
) -> str:
    """Shared layout of the baseline and stage-2 prompts.

    ``classes`` is the full printed list (rejection class last); ``examples`` are
    ``(prediction, printed confidences)`` pairs, one per ``example_headers`` entry.
    """
    headers = template["example_headers"]
    if len(headers) != len(examples):
        raise ValueError(f"template has {len(headers)} example headers, got {len(examples)} examples")
    values = {
        "n_classes": len(classes),
        "n_other": len(classes) - 1,
        "class_list": repr(classes),
        "rejection_class": template["rejection_class"],
    }
    sections = [_fill(template, field, values) for field in ("instruction", "rejection_rule", "guidelines_intro")]
    sections += ["- " + _substitute(rule, values, "guidelines") for rule in template["guidelines"]]
    sections += [_fill(template, field, values) for field in ("guidelines_outro", "examples_intro")]
    rule = template["example_rule"]
    for header, (prediction, confidences) in zip(headers, examples):
        body = _fill(template, "example_body", {**values, "prediction": prediction, "confidences": confidences})
        sections += [_substitute(header, values, "example_headers"), rule, body, rule]
    sections.append(_fill(template, "outro", values))
    return template["pre_prompt"] + "\n".join(sections) + template["post_prompt"]


def render_baseline(
    id_classes: Sequence[str], examples: Sequence[Mapping], template: Mapping | None = None
) -> str:
    """The baseline prompt over ``id_classes`` + the rejection class.

    ``examples`` (see :func:`load_examples`): one per header of the template (two); each
    example's confidence keys must be exactly the printed classes in order and its prediction one
    of them. Raises ``ValueError`` / ``TypeError`` on a malformed class list or example.
    """
    tpl = _merged("baseline", template)
    classes = [*_id_class_names(id_classes, tpl["rejection_class"]), tpl["rejection_class"]]
    printed = []
    for at, example in enumerate(examples, start=1):
        confidences = dict(example["confidences"])
        if list(confidences) != classes:
            raise ValueError(f"example {at}: confidence keys are not the classes in prompt order")
        if example["prediction"] not in classes:
            raise ValueError(f"example {at}: prediction {example['prediction']!r} is not a class")
        printed.append((example["prediction"], repr(confidences)))
    return _render_classification(tpl, classes, printed)


def render_stage2(
    id_classes: Sequence[str], aux_classes: Sequence[str], template: Mapping | None = None
) -> str:
    """The stage-2 prompt over ``id_classes`` + ``aux_classes`` + the rejection class.

    ``aux_classes`` is printed as given, duplicates included (the release has auxiliary names
    that repeat an ID class, e.g. 'basketball'); the example dict keeps each name once, at its
    first position, as Python's dict does. Counts in the text are the printed list's length.
    """
    tpl = _merged("stage2", template)
    rejection = tpl["rejection_class"]
    aux = _class_names(aux_classes, "aux_classes")
    if rejection in aux:
        raise ValueError(f"aux_classes must not contain the rejection class {rejection!r}")
    classes = [*_id_class_names(id_classes, rejection), *aux, rejection]
    confidences = repr(dict.fromkeys(classes, tpl["example_confidence"]))
    return _render_classification(tpl, classes, [(tpl["example_prediction"], confidences)])


def render_stage1(
    id_classes: Sequence[str], n_near: int = 20, n_far: int = 20, template: Mapping | None = None
) -> str:
    """The stage-1 prompt: ask for ``n_near`` similar + ``n_far`` dissimilar names, none in ``id_classes``.

    Both counts must be positive. The example answer shows the first ``n_near`` / ``n_far`` of the
    template's stored example lists (20 each: asking for more shows all 20).
    """
    for name, value in (("n_near", n_near), ("n_far", n_far)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    tpl = _merged("stage1", template)
    suggestions = [*tpl["example_near"][:n_near], *tpl["example_far"][:n_far]]
    values = {
        "n_total": n_near + n_far,
        "n_near": n_near,
        "n_far": n_far,
        "excluded_classes": ", ".join(_id_class_names(id_classes, REJECTION_CLASS)),
        "example_image": tpl["example_image"],
        "example_suggestions": ", ".join(suggestions),
    }
    fields = ("instruction", "limit", "diversity", "exclusion", "exclusion_warning", "example_intro", "example_header")
    sections = [_fill(tpl, field, values) for field in fields]
    rule = tpl["example_rule"]
    sections += [rule, _fill(tpl, "example_body", values), rule, _fill(tpl, "outro", values)]
    return tpl["pre_prompt"] + "\n".join(sections) + tpl["post_prompt"]
