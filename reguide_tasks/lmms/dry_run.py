"""``reguide-eval --dry_run``: what a run of our tasks would send, before anything is sent.

Per task: the documents (after ``--limit``), the requests of each stage (baseline: one per document;
ReGuide: stage 1 and stage 2, one each per document) and their prompt tokens, and the cost at a
price the user gives. No model is loaded or called and no image is opened: the images are only
checked to exist (the same pre-flight check as a real run).

How tokens are counted (said in the output):
- with the model's own tokenizer when ``--model_args`` names a local model folder or a hub id that
  is already in the local cache (``pretrained=`` / ``model_version=`` / ``model=``), loaded offline;
- otherwise ``ceil(characters / 4)``, the usual rule of thumb for English text with BPE tokenizers.
Only the prompt text is counted: the chat template and the image's tokens depend on the model (an
API model bills its image at a fixed rate per image size) and are not included.

Stage-2 prompts are made from each image's own stage-1 suggestions, unknown before the run; the
estimate renders stage 2 with the stage-1 template's 40 example suggestions (the ReGuide asks for
20 + 20), so it is the prompt of an image whose suggestions all survive the filtering.
"""

from __future__ import annotations

import math
import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.lmms.hooks import N_FAR, N_NEAR, document_set
from reguide_tasks.prompts.render import (
    load_examples,
    load_template,
    render_baseline,
    render_stage1,
    render_stage2,
)

MODEL_ARG_PATHS = ("pretrained", "model_version", "model")


@dataclass(frozen=True)
class TokenCounter:
    """Counts a prompt's tokens; ``how`` says with what (printed with every estimate)."""

    how: str
    tokenizer: object | None = None

    def count(self, text: str) -> int:
        if self.tokenizer is None:
            return math.ceil(len(text) / 4)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _model_path(model_args: str | None) -> str | None:
    for item in (model_args or "").split(","):
        key, _, value = item.partition("=")
        if key.strip() in MODEL_ARG_PATHS and value.strip():
            return value.strip()
    return None


def token_counter(model_args: str | None) -> TokenCounter:
    """The model's tokenizer when it loads offline, else the characters / 4 rule (see the module)."""
    path = _model_path(model_args)
    if path:
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            return TokenCounter(f"tokenizer of {path}", tokenizer)
        except Exception as exc:  # noqa: BLE001 - any failure to load means: no tokenizer offline
            return TokenCounter(f"characters / 4 (the tokenizer of {path} does not load offline: {type(exc).__name__})")
    return TokenCounter("characters / 4 (no local model in --model_args)")


def stand_in_suggestions() -> list[str]:
    """The stage-1 template's example suggestions, as many as ReGuide asks for (40)."""
    template = load_template("stage1")
    return [*template["example_near"][:N_NEAR], *template["example_far"][:N_FAR]]


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    requests: int
    tokens_per_request: int

    @property
    def tokens(self) -> int:
        return self.requests * self.tokens_per_request


@dataclass(frozen=True)
class TaskEstimate:
    task: str
    documents: int
    of_documents: int
    stages: tuple[StageEstimate, ...]

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.stages)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.stages)


def limited(n: int, limit: float | None) -> int:
    """lmms-eval's ``--limit``: a count, or a fraction of the documents when below 1."""
    if limit is None:
        return n
    return min(n, int(math.ceil(n * limit)) if limit < 1.0 else int(limit))


def stage_prompts(benchmark: str, stage: str) -> dict[str, str]:
    """Stage name -> the prompt every document of the stage gets (stage 2: with stand-in suggestions)."""
    classes = get_benchmark(benchmark).classes
    if stage == "baseline":
        return {"baseline": render_baseline(classes, load_examples(benchmark))}
    return {
        "stage 1": render_stage1(classes, N_NEAR, N_FAR),
        "stage 2 (est.)": render_stage2(classes, stand_in_suggestions()),
    }


def estimate(variant, limit: float | None, counter: TokenCounter) -> TaskEstimate:
    """What ``variant`` (a :class:`~reguide_tasks.lmms.task_yamls.TaskVariant`) would send."""
    total = len(document_set(variant.benchmark, variant.subset))
    n = limited(total, limit)
    stages = tuple(
        StageEstimate(name, n, counter.count(prompt)) for name, prompt in stage_prompts(variant.benchmark, variant.stage).items()
    )
    return TaskEstimate(variant.name, n, total, stages)


def parse_price(text: str | None) -> tuple[float, float | None] | None:
    """``"2.5"`` or ``"2.5,10"``: USD per million input (and output) tokens."""
    if not text:
        return None
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 2 or any(v < 0 for v in values):
        raise ValueError(f"--price {text!r}: give USD per million tokens as IN or IN,OUT (e.g. 2.5,10)")
    return values[0], (values[1] if len(values) == 2 else None)


def report(estimates: Sequence[TaskEstimate], counter: TokenCounter, price: tuple[float, float | None] | None,
           answer_tokens: int | None, skipped: Sequence[str] = ()) -> str:
    """The text ``--dry_run`` prints."""
    lines = ["reguide-eval --dry_run: nothing was sent to a model and no image was opened.", f"prompt tokens: {counter.how}; prompt text only (chat template and image tokens not counted)", ""]
    header = ("task", "docs", "stage", "requests", "tokens/request", "prompt tokens")
    rows = []
    for est in estimates:
        docs = f"{est.documents:,}" + (f" of {est.of_documents:,}" if est.documents < est.of_documents else "")
        for i, stage in enumerate(est.stages):
            rows.append((est.task if i == 0 else "", docs if i == 0 else "", stage.stage, f"{stage.requests:,}", f"{stage.tokens_per_request:,}", f"{stage.tokens:,}"))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    lines += [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows), ""]
    for est in estimates:
        per_doc = len(est.stages)
        lines.append(f"{est.task}: {est.documents:,} documents x {per_doc} request{'s' if per_doc > 1 else ''} per document "
                     f"= {est.requests:,} requests, {est.tokens:,} prompt tokens")
    requests = sum(e.requests for e in estimates)
    tokens = sum(e.tokens for e in estimates)
    lines.append(f"total: {requests:,} requests, {tokens:,} prompt tokens")
    if price is not None:
        cost_in = tokens / 1e6 * price[0]
        line = f"cost: ${cost_in:,.2f} for the prompts at ${price[0]:g} per million input tokens"
        if price[1] is not None and answer_tokens is not None:
            cost_out = requests * answer_tokens / 1e6 * price[1]
            line += f" + ${cost_out:,.2f} for {answer_tokens:,} answer tokens per request at ${price[1]:g} per million = ${cost_in + cost_out:,.2f}"
        else:
            line += " (answers not priced: give --price IN,OUT and --answer_tokens N)"
        lines.append(line)
    else:
        lines.append("cost: give --price IN[,OUT] (USD per million tokens) to have it computed")
    lines.extend(f"not estimated (not one of our tasks): {name}" for name in skipped)
    return "\n".join(lines)


def dry_run_text(own: argparse.Namespace, early: argparse.Namespace) -> str:
    """``reguide-eval --dry_run``'s text: the pre-flight check, then the estimate of every task of
    ours named in ``--tasks`` (lmms-eval is not imported)."""
    from reguide_tasks.lmms.cli import TAGS, BadArguments, model_needs_images, our_tasks, preflight

    variants = our_tasks(early.tasks)
    if not variants:
        raise BadArguments("--dry_run estimates our tasks: name at least one in --tasks (reguide-eval --tasks list)")
    try:
        price = parse_price(own.price)
        limit = float(early.limit) if early.limit is not None else None
    except ValueError as exc:
        raise BadArguments(str(exc) if own.price and "price" in str(exc) else f"--limit {early.limit!r} is not a number") from None
    if own.answer_tokens is not None and own.answer_tokens < 0:
        raise BadArguments(f"--answer_tokens must be >= 0, got {own.answer_tokens}")
    preflight(variants, check_images=model_needs_images(early.model))
    counter = token_counter(early.model_args)
    ours = {v.name for v in variants} | set(TAGS)
    skipped = [t.strip() for t in early.tasks.split(",") if t.strip() not in ours]
    estimates = [estimate(v, limit, counter) for v in variants]
    return report(estimates, counter, price, own.answer_tokens, skipped)
