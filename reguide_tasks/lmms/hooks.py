"""The lmms-eval-facing functions the task YAMLs name. Thin: the work happens in the rooms they call.

Baseline tasks (``output_type: generate_until``): :func:`doc_to_visual`, :func:`baseline_doc_to_text`,
:func:`baseline_process_results`. ReGuide tasks (``output_type: generate_until_agentic``):
:func:`reguide_doc_to_text` drives stage 1 -> filtering -> stage 2 through lmms-eval's agentic
protocol (round 0: stage-1 prompt; round 1: stage-2 prompt; round 2: terminal, the final response is
a JSON record of both raw answers) and :func:`reguide_process_results` scores it.

The aggregations are one function per metric family (:mod:`reguide_tasks.lmms.aggregations`). The
``process_results`` variants a YAML can name, ``<stage>_process_results_<score rule>_<failure policy>``
(keys read by the repairing policy of :mod:`reguide_tasks.answers.key_matching`) and the same name
ending in ``_strict`` (keys read exactly or normalised only), are built by :func:`make_process_results`
and written out in :mod:`reguide_tasks.lmms.process_results_variants`. Each task folder's ``utils.py``
brings in :mod:`reguide_tasks.lmms.yaml_functions`, which lists every name a YAML may use.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets

from reguide_tasks.answers.key_matching import READINGS
from reguide_tasks.answers.parsing import ParsedAnswer, parse_answer
from reguide_tasks.answers.suggestions import (
    Suggestions,
    filter_suggestions,
    parse_suggestions,
)
from reguide_tasks.data import documents as docs_mod
from reguide_tasks.data.benchmarks import ensure_benchmark, get_benchmark, stratified_percent
from reguide_tasks.lmms.records import (
    build_record,
    is_not_in_release,
    not_in_release_record,
    per_doc_metrics,
)
from reguide_tasks.lmms.run_state import RUN
from reguide_tasks.prompts.render import (
    example_confidences,
    load_examples,
    render_baseline,
    render_stage1,
    render_stage2,
)
from reguide_tasks.vocab import (
    RECORD_KEY,
    REJECTION_CLASS,
    custom_documents_path,
    placeholder_reason,
)

N_NEAR = 20
N_FAR = 20


# ---------------------------------------------------------------- documents
def expand_document_sets(spec_rows: datasets.Dataset) -> datasets.Dataset:
    """``process_docs``: each row of a task's data file names a document set; expand and check it.

    Rows: ``{"benchmark": ..., "subset": "subset25" | "subset5" | "full" | "file", "path": ...,
    "data_root": ...}``. ``full`` builds from OpenOOD's ``benchmark_imglist/<benchmark>/`` under the data
    root (or ``path``); ``file`` reads a JSONL of documents at ``path`` (relative to the data root when
    not absolute). ``data_root`` (optional, "" = ``REGUIDE_DATA_ROOT`` / ``./data``) is the task's own
    image root, kept in every document when set (a ``data_root`` column only then). Missing images
    stop here with a message naming how many of which dataset are missing. The documents come out
    interleaved by dataset (:func:`~reguide_tasks.data.documents.interleave_by_dataset`), so that a
    ``--limit`` run measures something.
    """
    per_set = []
    for spec in spec_rows:
        root = spec.get("data_root") or ""
        get_benchmark_of(spec)
        docs = document_set(spec["benchmark"], spec["subset"], spec.get("path") or "", root)
        docs_mod.check_unique(docs)
        if RUN.images_required:
            docs_mod.require_images(docs, Path(root) if root else None)
        per_set.append((root, docs))
    # The data_root column only when a row sets one: every column costs lmms-eval time on every
    # document it reads (twice per run), and readers take a missing data_root as the default root.
    if any(root for root, _ in per_set):
        rows = [dict(doc, data_root=root) for root, docs in per_set for doc in docs]
    else:
        rows = [doc for _, docs in per_set for doc in docs]
    if len(per_set) > 1:  # a single set was checked above
        docs_mod.check_unique(rows)
    # Datasets (and classes) interleaved in proportion: any --limit prefix holds ID and every OoD
    # set; each document keeps its list position for the report (see documents.LIST_POSITION).
    rows = [dict(doc, **{docs_mod.LIST_POSITION: i}) for i, doc in enumerate(rows)]
    return datasets.Dataset.from_list(docs_mod.interleave_by_dataset(rows))


def get_benchmark_of(spec: Mapping):
    """The benchmark a docset row names; a user's benchmark file the row names (``benchmark_file``) is
    registered first, so a plain ``lmms-eval --include_path`` run knows it too."""
    return ensure_benchmark(spec["benchmark"], spec.get("benchmark_file") or "")


def document_set(benchmark: str, subset: str, path: str = "", data_root: str = "") -> list[dict]:
    """The documents of one set; ``path`` defaults to the benchmark's image lists (``full``, and the
    seeded ``stratified<pct>`` subsets of them: OpenOOD's under the data root, or the folder a user's
    benchmark file names) or the custom documents file (``file``) under the data root."""
    root = docs_mod.data_root(data_root or None)
    lists = path or str(get_benchmark(benchmark).default_imglist_dir(root))
    if subset == "full":
        return docs_mod.full_documents(benchmark, lists)
    percent = stratified_percent(subset)
    if percent is not None:
        return docs_mod.stratified_documents(benchmark, percent, lists)
    if subset == "file":
        return docs_mod.read_documents(path or custom_documents_path(benchmark), root)
    return docs_mod.subset_documents(benchmark, subset)


def doc_to_visual(doc: Mapping) -> list:
    """The document's image, opened lazily; under ``--bad_images exclude`` an unreadable one is a 1x1
    stand-in and the document is recorded in :data:`~reguide_tasks.lmms.run_state.RUN`."""
    image, unreadable = docs_mod.load_image_or_stand_in(doc)
    if unreadable:
        RUN.excluded[doc["doc_key"]] = unreadable
    return [image]


# ---------------------------------------------------------------- prompts
def _overrides(kwargs: Mapping | None) -> tuple:
    return tuple(sorted((k, v) for k, v in (kwargs or {}).items() if isinstance(v, str)))


@lru_cache(maxsize=64)
def _baseline_prompt(benchmark: str, overrides: tuple) -> str:
    return render_baseline(get_benchmark(benchmark).classes, load_examples(benchmark), dict(overrides) or None)


@lru_cache(maxsize=64)
def _stage1_prompt(benchmark: str, overrides: tuple) -> str:
    return render_stage1(get_benchmark(benchmark).classes, N_NEAR, N_FAR, dict(overrides) or None)


def baseline_doc_to_text(doc: Mapping, lmms_eval_specific_kwargs: Mapping | None = None) -> str:
    return _baseline_prompt(doc["benchmark"], _overrides(lmms_eval_specific_kwargs))


# ---------------------------------------------------------------- baseline scoring
@lru_cache(maxsize=8)
def _baseline_parse_inputs(benchmark: str) -> tuple[tuple[str, ...], tuple]:
    """(options, example confidences) of a benchmark's baseline prompt: per document, reading them
    again (a template file stat and a deep copy) cost more than parsing the answer."""
    return (*get_benchmark(benchmark).classes, REJECTION_CLASS), tuple(example_confidences(benchmark))


def _parse(answer: str, options: Sequence[str], examples: Sequence = (), key_reading: str = "repair") -> ParsedAnswer:
    """parse_answer, except that a placeholder (no released answer, a failed API request) is a
    failure with its own reason without being parsed: it is no answer (and a long replay with
    missing=skip is mostly placeholders)."""
    placeholder = placeholder_reason(answer)
    if placeholder:
        return ParsedAnswer(None, {}, "failed", placeholder)
    return parse_answer(answer, options, examples, repair=key_reading == "repair")


def _score_baseline(doc: Mapping, answer: str, score_rule: str, failure_policy: str, key_reading: str = "repair") -> dict:
    classes = get_benchmark(doc["benchmark"]).classes
    options, examples = _baseline_parse_inputs(doc["benchmark"])
    parsed = _parse(answer, options, examples, key_reading)
    return build_record(doc, parsed, classes, score_rule, failure_policy, answer, key_reading)


def make_process_results(stage: str, score_rule: str = "max_id", failure_policy: str = "exclude", key_reading: str = "repair") -> Callable:
    """A ``process_results`` for ``stage`` ('baseline' or 'reguide') with a score rule, a failure
    policy and a key reading ('repair' or 'strict', see :mod:`reguide_tasks.answers.key_matching`)."""
    if key_reading not in READINGS:
        raise ValueError(f"unknown key reading {key_reading!r}; choose one of {list(READINGS)}")

    def process_results(doc: Mapping, results: Sequence[Any]) -> dict:
        response = results[0] if results else ""
        if isinstance(response, list):  # some lmms-eval paths nest one level
            response = response[0] if response else ""
        if is_not_in_release(response) and doc["doc_key"] not in RUN.excluded:  # nothing to parse or score
            return per_doc_metrics(not_in_release_record(doc, score_rule, failure_policy, key_reading), get_benchmark(doc["benchmark"]))
        if stage == "baseline":
            record = _score_baseline(doc, str(response or ""), score_rule, failure_policy, key_reading)
        else:
            record = _score_reguide(doc, str(response or ""), score_rule, failure_policy, key_reading)
        if doc["doc_key"] in RUN.excluded:  # unreadable image, REGUIDE_BAD_IMAGES=exclude
            record.update(ood_score=None, failed=True, excluded=True, reason=RUN.excluded[doc["doc_key"]])
            return {RECORD_KEY: record}
        return per_doc_metrics(record, get_benchmark(doc["benchmark"]))

    name = f"{stage}_process_results_{score_rule}_{failure_policy}" + ("_strict" if key_reading == "strict" else "")
    process_results.__name__ = process_results.__qualname__ = name  # the results JSON's config shows it
    return process_results


baseline_process_results = make_process_results("baseline")


# ---------------------------------------------------------------- ReGuide
def _reguide_stage2(doc: Mapping, stage1_answer: str, overrides: tuple) -> tuple[str, dict]:
    classes = get_benchmark(doc["benchmark"]).classes
    placeholder = placeholder_reason(stage1_answer)
    if placeholder:  # e.g. lmms-eval's "[LMMS_EVAL_REQUEST_FAILED ...]": not class names for stage 2
        suggestions = Suggestions([], [], [], "failed", f"stage 1: {placeholder}")
    else:
        suggestions = parse_suggestions(stage1_answer, N_NEAR, N_FAR)
    filtered = filter_suggestions(suggestions.items, classes, cap=N_NEAR + N_FAR)
    prompt = render_stage2(classes, filtered.kept, dict(overrides) or None)
    info = {
        "stage": 2,
        "suggestions_status": suggestions.status,
        "suggestions_reason": suggestions.reason,
        "suggestions_kept": list(filtered.kept),
        "suggestions_dropped": [list(item) for item in filtered.dropped],
    }
    return prompt, info


def reguide_doc_to_text(
    doc: Mapping,
    lmms_eval_specific_kwargs: Mapping | None = None,
    previous_output: Sequence[str] | None = None,
    round_idx: int | None = None,
    previous_round_info: Mapping | None = None,
):
    """Round 0: stage-1 prompt. Round 1: stage-2 prompt built from the filtered suggestions.
    Round 2: terminal; the final response becomes ``{"stage1": ..., "stage2": ..., "stage2_sent":
    {...}}`` (JSON), ``stage2_sent`` being the round-1 info: the suggestions the stage-2 prompt showed
    (``suggestions_kept``), what filtering dropped and the stage-1 parse status. Stage 2 is scored
    against that list, whatever ``lmms_eval_specific_kwargs`` built the prompt."""
    overrides = _overrides(lmms_eval_specific_kwargs)
    if not round_idx:
        return _stage1_prompt(doc["benchmark"], overrides)
    outputs = list(previous_output or [])
    if round_idx == 1:
        prompt, info = _reguide_stage2(doc, outputs[-1] if outputs else "", overrides)
        return None, prompt, False, outputs, info
    stage1 = outputs[0] if outputs else ""
    stage2 = outputs[1] if len(outputs) > 1 else ""
    payload = {"stage1": stage1, "stage2": stage2}
    if isinstance(previous_round_info, Mapping) and isinstance(previous_round_info.get("suggestions_kept"), list):
        payload["stage2_sent"] = {key: previous_round_info.get(key) for key in _SENT_KEYS}
    return None, None, True, [json.dumps(payload, ensure_ascii=False)], None


_SENT_KEYS = ("suggestions_kept", "suggestions_dropped", "suggestions_status", "suggestions_reason")


def read_reguide_response(response: str) -> tuple[str, str, dict | None]:
    """The final agentic response -> (stage-1 answer, stage-2 answer, what stage 2 was sent or None
    when the response does not say: a response written before it was carried)."""
    try:
        payload = json.loads(response)
    except (TypeError, ValueError):
        return "", response, None
    if not isinstance(payload, dict):
        return "", response, None
    sent = payload.get("stage2_sent")
    if not (isinstance(sent, dict) and isinstance(sent.get("suggestions_kept"), list)):
        sent = None
    return str(payload.get("stage1") or ""), str(payload.get("stage2") or ""), sent


def _score_reguide(doc: Mapping, response: str, score_rule: str, failure_policy: str, key_reading: str = "repair") -> dict:
    classes = get_benchmark(doc["benchmark"]).classes
    stage1, stage2, sent = read_reguide_response(response)
    if sent is not None:
        info, source = {key: sent.get(key) for key in _SENT_KEYS}, "sent"
        info["suggestions_kept"] = [str(name) for name in info["suggestions_kept"]]
        info["suggestions_dropped"] = list(info["suggestions_dropped"] or [])
    else:  # not carried: re-derived from stage 1 with the default prompt
        _, info = _reguide_stage2(doc, stage1, ())
        source = "rederived"
    options = (*classes, *info["suggestions_kept"], REJECTION_CLASS)
    parsed = _parse(stage2, options, (), key_reading)
    record = build_record(doc, parsed, classes, score_rule, failure_policy, stage2, key_reading)
    record.update(
        suggestions_source=source,
        stage1=stage1,
        suggestions_kept=info["suggestions_kept"],
        suggestions_dropped=info["suggestions_dropped"],
        suggestions_status=info["suggestions_status"],
        suggestions_reason=info["suggestions_reason"],
        stage2=stage2,
        predicted_aux=parsed.prediction is not None and parsed.prediction in info["suggestions_kept"],
    )
    return record


reguide_process_results = make_process_results("reguide")


__all__ = [
    "baseline_doc_to_text",
    "baseline_process_results",
    "doc_to_visual",
    "expand_document_sets",
    "make_process_results",
    "read_reguide_response",
    "reguide_doc_to_text",
    "reguide_process_results",
]
