"""The hooks the task YAMLs name, called as lmms-eval calls them: the key reading a YAML selects, what a
record says about repairs, documents without a released answer, and ReGuide's stage 2 scored against
the suggestions it was sent."""

from __future__ import annotations

import json
import math

import pytest

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.lmms import hooks as task_hooks
from reguide_tasks.lmms import process_results_variants
from reguide_tasks.lmms.aggregations import aggregate_metric
from reguide_tasks.lmms.hooks import reguide_doc_to_text
from reguide_tasks.vocab import NO_ANSWER, RECORD_KEY

BENCH = get_benchmark("imagenet200")


def resolve_hook(name: str):
    """The process_results a task YAML names ``utils.<name>``."""
    return getattr(process_results_variants, name)

CLASSES = BENCH.classes


def doc(dataset: str = "imagenet200", label: str = "scarf", n: int = 0) -> dict:
    role = BENCH.role(dataset)
    return {"doc_key": f"images/{dataset}/{n}.png", "image": f"images/{dataset}/{n}.png", "benchmark": "imagenet200",
            "dataset": dataset, "role": role, "label": 0 if role == "id" else -1, "label_name": label}


def garbled_answer(top: str = "scarf", drop: tuple[str, ...] = ("scarf", "skunk", "snail")) -> str:
    values = {name: 0.5 for name in CLASSES}
    values[top] = 99.88
    body = ", ".join(f"'{name[1:] if name in drop else name}': {value}" for name, value in values.items())
    return f"Prediction: {top}\nConfidence: {{{body}, 'none of these classes': 0.1}}"


def test_a_yaml_selects_the_strict_reading_and_both_are_recorded():
    repair = resolve_hook("baseline_process_results_max_id_exclude")
    strict = resolve_hook("baseline_process_results_max_id_exclude_strict")
    assert resolve_hook("reguide_process_results_msp_most_ood_strict").__name__ == "reguide_process_results_msp_most_ood_strict"
    answer = garbled_answer()
    read = repair(doc(), [answer])[RECORD_KEY]
    assert read["key_reading"] == "repair" and read["ood_score"] == 99.88 and read["score_repaired"] is True
    assert read["repaired_keys"] == {"carf": "scarf", "kunk": "skunk", "nail": "snail"} and read["unknown_keys"] == []
    assert read["correct"] is True and read["status"] == "ok"
    kept = strict(doc(), [answer])[RECORD_KEY]
    assert kept["key_reading"] == "strict" and kept["ood_score"] == 0.5 and kept["score_repaired"] is False
    assert kept["repaired_keys"] == {} and sorted(kept["unknown_keys"]) == ["carf", "kunk", "nail"] and kept["status"] == "partial"
    with pytest.raises(AttributeError):
        resolve_hook("baseline_process_results_max_id_exclude_lenient")


def test_repaired_rate_counts_answers_whose_score_used_a_repaired_key():
    hook = resolve_hook("baseline_process_results_max_id_exclude")
    answers = [garbled_answer("scarf"), garbled_answer("hen"), garbled_answer("scarf", drop=()), "I'm sorry, I can't."]
    items = [hook(doc(n=i), [a])["repaired_rate_imagenet200"] for i, a in enumerate(answers)]
    # only the first answer's S_max came from a repaired key ('carf'); the second repaired keys below its max
    assert aggregate_metric("repaired_rate_imagenet200", items) == 25.0
    assert aggregate_metric("fail_rate_imagenet200", items) == 25.0


def test_a_document_without_a_released_answer_is_left_out_of_every_metric():
    hook = resolve_hook("baseline_process_results_max_id_most_ood")
    per_doc = {}
    docs = [(doc("imagenet200", n=0), garbled_answer()), (doc("imagenet200", n=1), NO_ANSWER),
            (doc("ninco", "x", n=2), garbled_answer("hen")), (doc("ninco", "x", n=3), "I'm sorry, I can't help."),
            (doc("ssb_hard", "x", n=4), NO_ANSWER), (doc("ssb_hard", "x", n=5), NO_ANSWER)]
    for d, answer in docs:
        for key, value in hook(d, [answer]).items():
            per_doc.setdefault(key, []).append(value)
    missing = [r for r in per_doc[RECORD_KEY] if r["not_in_release"]]
    assert len(missing) == 3 and all(r["failed"] is False and r["status"] == "not in release" and r["correct"] is None for r in missing)
    value = {key: aggregate_metric(key, items) for key, items in per_doc.items()}
    assert value["not_in_release_imagenet200"] == 1 and value["not_in_release_ssb_hard"] == 2 and value["not_in_release_ninco"] == 0
    assert value["fail_rate_imagenet200"] == 0.0 and value["fail_rate_ninco"] == 50.0  # the refusal, not the missing answers
    assert value["id_acc"] == 100.0
    assert math.isnan(value["fail_rate_ssb_hard"]) and math.isnan(value["auroc_ssb_hard"])
    assert math.isnan(value["auroc_near"])  # a near dataset without a single answer: no near mean over NINCO alone
    # most_ood fills the refusal below every real score; the missing ID document is not filled: ID
    # [99.88] vs NINCO [99.88 tie, filled] = 75 (with the missing document filled it would be 50)
    assert value["auroc_ninco"] == 75.0
    assert value[RECORD_KEY] == 2


def _run_rounds(d: dict, stage1: str, stage2: str, kwargs: dict | None = None) -> str:
    """The agentic protocol as lmms-eval drives it; returns the final response."""
    reguide_doc_to_text(d, kwargs)
    _, prompt, terminal, outputs, info = reguide_doc_to_text(d, kwargs, [stage1], 1, None)
    assert not terminal and all(name in prompt for name in info["suggestions_kept"])
    _, _, terminal, final, _ = reguide_doc_to_text(d, kwargs, [*outputs, stage2], 2, info)
    assert terminal
    return final[0]


STAGE1 = "Class suggested: lynx, bobcat, ocelot, submarine, teapot."


def test_stage2_is_scored_against_the_suggestions_it_was_sent(monkeypatch):
    stage2 = ("Prediction: lynx\nConfidence: {'scarf': 1.0, 'lynx': 93.0, 'bobcat': 4.0, 'ocelot': 0.5, "
              "'teapot': 0.1, 'none of these classes': 1.3}")
    final = _run_rounds(doc("ninco", "lynx"), STAGE1, stage2, {"pre_prompt": "Look closely. "})
    sent = json.loads(final)["stage2_sent"]
    assert sent["suggestions_kept"] == ["lynx", "bobcat", "ocelot", "teapot"]  # 'submarine' is an ID class
    assert [item[0] for item in sent["suggestions_dropped"]] == ["submarine"]
    # Scoring must not derive the list again: make a re-derivation give a different one.
    monkeypatch.setattr(task_hooks, "_reguide_stage2", lambda *a: pytest.fail("stage 2 re-derived while the sent list was carried"))
    record = resolve_hook("reguide_process_results_max_id_exclude")(doc("ninco", "lynx"), [final])[RECORD_KEY]
    assert record["suggestions_source"] == "sent" and record["suggestions_kept"] == sent["suggestions_kept"]
    assert record["predicted_aux"] is True and record["ood_score"] == 1.0 and record["status"] == "partial"


def test_a_response_without_the_sent_list_is_rederived_and_says_so():
    stage2 = "Prediction: lynx\nConfidence: {'scarf': 1.0, 'lynx': 93.0}"
    legacy = json.dumps({"stage1": STAGE1, "stage2": stage2})
    record = resolve_hook("reguide_process_results_max_id_exclude")(doc("ninco", "lynx"), [legacy])[RECORD_KEY]
    assert record["suggestions_source"] == "rederived" and "lynx" in record["suggestions_kept"]
    assert record["predicted_aux"] is True
