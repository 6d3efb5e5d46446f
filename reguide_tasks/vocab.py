"""The words every room shares, each defined once.

- :data:`REJECTION_CLASS`: the class an answer picks to say "none of the ID classes".
- Metric families and their direction: :data:`OOD_METRICS` (computed per OoD dataset and per group),
  :data:`DATASET_FAMILIES` (per dataset, every task), :data:`REGUIDE_FAMILIES` (per dataset, ReGuide
  tasks), ``id_acc``; :data:`HIGHER_IS_BETTER` says which way each one is better.
- :data:`GROUPS`: the near / far groups of OoD datasets; :func:`metric_key` / :func:`split_metric_key`:
  how a metric key is spelled (``<family>_<dataset or group>``).
- :data:`RECORD_KEY`: the per-document record in lmms-eval's samples.
- :func:`prompt_stage`: which of our prompts a request is (baseline, stage 1, stage 2).
- Placeholder answers: what a model without an answer returns (:data:`NO_ANSWER`, lmms-eval's
  :data:`REQUEST_FAILED` / :data:`BUDGET_EXCEEDED`) and :func:`placeholder_reason`.
- :func:`custom_documents_path`: where the ``*_custom`` tasks read their documents.

No imports beyond the standard library: every room may use this module.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

REJECTION_CLASS = "none of these classes"

# ---------------------------------------------------------------- metrics
OOD_METRICS = ("auroc", "fpr95", "fpr95tpr", "aupr_in", "aupr_out")
GROUPS = ("near", "far")
# Per dataset, every task: % of answers without a usable score; % of answers whose score depends on a
# repaired key; documents without a released answer (a count, left out of every other metric).
DATASET_FAMILIES = ("fail_rate", "repaired_rate", "not_in_release")
# Per dataset, ReGuide tasks: % of answers predicting an auxiliary class; mean kept suggestions per
# image; suggestions dropped by filtering (in total).
REGUIDE_FAMILIES = ("aux_pred_rate", "mean_kept", "filtered_out")
ID_ACCURACY = "id_acc"
RECORD_KEY = "oodd"

HIGHER_IS_BETTER: dict[str, bool | None] = {
    "auroc": True,
    "fpr95": False,
    "fpr95tpr": False,
    "aupr_in": True,
    "aupr_out": True,
    ID_ACCURACY: True,
    "fail_rate": False,
    "repaired_rate": False,
    # Counts and descriptive rates have no better direction (None: lmms-eval prints no arrow). An
    # auxiliary prediction is good on an OoD image and bad on an ID one; kept / dropped suggestions
    # and documents without a released answer describe the run, they do not rank it.
    "not_in_release": None,
    "aux_pred_rate": None,
    "mean_kept": None,
    "filtered_out": None,
    RECORD_KEY: None,  # the record key aggregates to the number of scored documents
}
# Longest first, so that "fpr95tpr_x" is not read as family "fpr95", target "tpr_x".
_FAMILIES_LONGEST_FIRST = tuple(sorted(HIGHER_IS_BETTER, key=len, reverse=True))


def metric_key(family: str, target: str) -> str:
    """The key of ``family`` for a dataset or group: ``metric_key("auroc", "near") == "auroc_near"``."""
    return f"{family}_{target}"


def split_metric_key(key: str) -> tuple[str, str]:
    """``(family, target)`` of a metric key; target "" for ``id_acc`` and ``oodd``.

    >>> split_metric_key("fpr95tpr_ssb_hard")
    ('fpr95tpr', 'ssb_hard')
    """
    if key in (ID_ACCURACY, RECORD_KEY):
        return key, ""
    for family in _FAMILIES_LONGEST_FIRST:
        if key.startswith(family + "_"):
            return family, key[len(family) + 1 :]
    raise ValueError(f"{key!r} is not a metric key of ours (families: {sorted(HIGHER_IS_BETTER)})")


def higher_is_better(key: str) -> bool | None:
    """Whether a higher value of metric ``key`` is better (None: a count, no direction)."""
    return HIGHER_IS_BETTER[split_metric_key(key)[0]]


# ---------------------------------------------------------------- prompts
PromptStage = Literal["baseline", "stage1", "stage2"]
# Phrases only one of our templates has (tasks_yaml/templates/stage1.yaml, stage2.yaml).
STAGE1_MARK = "class names based on the given image"
STAGE2_MARK = "'your confidence'"


@lru_cache(maxsize=256)  # every baseline request of a task carries the same prompt: scan it once
def prompt_stage(prompt: str) -> PromptStage:
    """Which of our prompts ``prompt`` is: 'stage1' (suggestions), 'stage2' (classification with
    auxiliary classes) or 'baseline' (anything else)."""
    if STAGE1_MARK in prompt:
        return "stage1"
    if STAGE2_MARK in prompt:
        return "stage2"
    return "baseline"


# ---------------------------------------------------------------- placeholder answers
# What a model that has no answer for a document (reguide_replay with missing=skip) returns.
NO_ANSWER = "[no released answer]"
# What lmms-eval's API models (openai, async_openai, ...) answer once their retries are spent.
REQUEST_FAILED = "[LMMS_EVAL_REQUEST_FAILED"
BUDGET_EXCEEDED = "[LMMS_EVAL_BUDGET_EXCEEDED]"
LMMS_EVAL_PLACEHOLDER_PREFIX = "[LMMS_EVAL_"


def placeholder_reason(answer_text: object) -> str | None:
    """Why there is no answer when ``answer_text`` is a placeholder rather than a model's answer: no
    released answer, an API request that failed after its retries, a spent API budget. Else None."""
    text = str(answer_text or "").strip()
    if text == NO_ANSWER:
        return "no released answer"
    if text.startswith(REQUEST_FAILED):  # "[LMMS_EVAL_REQUEST_FAILED after N retries] <error>"
        attempts, _, error = text[len(REQUEST_FAILED) :].partition("]")
        return f"request failed{attempts.rstrip()}: {error.strip()}"[:300]
    if text.startswith(BUDGET_EXCEEDED):
        return "API budget exceeded"
    return None


def is_lmms_eval_placeholder(text: object) -> bool:
    """Whether ``text`` is one of lmms-eval's own placeholders (a failed request, a spent budget)."""
    return isinstance(text, str) and text.lstrip().startswith(LMMS_EVAL_PLACEHOLDER_PREFIX)


# ---------------------------------------------------------------- documents
def custom_documents_path(benchmark: str) -> str:
    """Where a ``*_custom`` task reads its documents, relative to the data root."""
    return f"reguide_documents/{benchmark}.jsonl"
