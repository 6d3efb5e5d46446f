"""``reguide-eval --tasks list``: our tasks and tags, one line each, without importing lmms-eval.

lmms-eval's own ``lmms-eval --tasks list`` prints its ~2,000 tasks with ours among them and no
description; this listing says per task: method (baseline or ReGuide), benchmark, document set and
how many documents it holds (the released subsets are counted; the full and custom sets depend on
the data root).
"""

from __future__ import annotations

import functools

from reguide_tasks.data.benchmarks import BENCHMARKS, get_benchmark
from reguide_tasks.lmms.task_yamls import TaskVariant, task_variants
from reguide_tasks.vocab import custom_documents_path

METHODS = {"baseline": "baseline (one prompt)", "reguide": "ReGuide (two stages)"}
TAG_DESCRIPTIONS = {
    "reguide_baseline_all": "tag: the default baseline task of each benchmark",
    "reguide_all": "tag: the default ReGuide task of each benchmark",
}


@functools.cache
def _released_count(benchmark: str, subset: str) -> int:
    from reguide_tasks.data.documents import subset_documents

    return len(subset_documents(benchmark, subset))


def document_description(variant: TaskVariant) -> str:
    if variant.subset == "full":
        return f"full OpenOOD v1.5 lists (<data root>/benchmark_imglist/{variant.benchmark}/)"
    if variant.subset == "file":
        return f"your documents (<data root>/{custom_documents_path(variant.benchmark)})"
    share = variant.subset.removeprefix("subset")
    return f"authors' {share}% subset, {_released_count(variant.benchmark, variant.subset):,} documents"


def describe(variant: TaskVariant) -> str:
    return f"{METHODS[variant.stage]}; {document_description(variant)}"


def benchmark_line(name: str) -> str:
    bench = get_benchmark(name)
    return f"{name}: ID {bench.id_dataset}; near {', '.join(bench.near)}; far {', '.join(bench.far)}"


def task_listing() -> str:
    """Every task and tag of ours with its one-line description."""
    variants = task_variants()
    named = {(v.stage, v.benchmark, v.subset): v.name for v in variants if not v.default}
    # A default task is an alias of one of the others: say which.
    rows = [(v.name, f"= {named[(v.stage, v.benchmark, v.subset)]}") for v in variants if v.default]
    rows += [(v.name, describe(v)) for v in variants if not v.default]
    rows += list(TAG_DESCRIPTIONS.items())
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {text}" for name, text in rows]
    footer = "\n".join(["", "Each task holds the ID test set and every OoD set of its benchmark:", *(f"  {benchmark_line(b)}" for b in sorted(BENCHMARKS))])
    footer += (
        "\nRun one: reguide-eval --model ... --tasks reguide_baseline_imagenet200 --output_path outputs --log_samples"
        "\nlmms-eval's own tasks: lmms-eval --tasks list (reguide-eval forwards list_groups / list_tags / list_subtasks)"
    )
    return "\n".join(lines) + "\n" + footer
