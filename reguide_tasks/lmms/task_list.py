"""``reguide-eval --tasks list``: our tasks and tags, one line each, without importing lmms-eval.

lmms-eval's own ``lmms-eval --tasks list`` prints its ~2,000 tasks with ours among them and no
description; this listing says per task: method (baseline or ReGuide), benchmark, document set and
how many documents it holds (the released subsets are counted; the full and custom sets depend on
the data root).
"""

from __future__ import annotations

import functools

from reguide_tasks.data.benchmarks import BENCHMARKS, get_benchmark, stratified_percent
from reguide_tasks.lmms.task_yamls import TaskVariant, task_variants
from reguide_tasks.vocab import custom_documents_path

METHODS = {"baseline": "baseline (one prompt)", "reguide": "ReGuide (two stages)"}
TAG_DESCRIPTIONS = {
    "reguide_baseline_all": "tag: the default baseline task of the paper's benchmarks (cifar10, imagenet200)",
    "reguide_all": "tag: the default ReGuide task of the paper's benchmarks (cifar10, imagenet200)",
}


@functools.cache
def _released_count(benchmark: str, subset: str) -> int:
    from reguide_tasks.data.documents import subset_documents

    return len(subset_documents(benchmark, subset))


def _lists(bench) -> str:
    return bench.imglist_dir or f"<data root>/benchmark_imglist/{bench.imglist_folder or bench.name}"


def document_description(variant: TaskVariant) -> str:
    bench = get_benchmark(variant.benchmark)
    if variant.subset == "full":
        return f"full image lists ({_lists(bench)}/)"
    if variant.subset == "file":
        return f"your documents (<data root>/{custom_documents_path(variant.benchmark)})"
    percent = stratified_percent(variant.subset)
    if percent is not None:
        return f"seeded stratified {percent}% of the full lists (seed {bench.seed}; the list is written to <output_path>/document_lists/)"
    share = variant.subset.removeprefix("subset")
    return f"authors' {share}% subset, {_released_count(variant.benchmark, variant.subset):,} documents"


def describe(variant: TaskVariant) -> str:
    return f"{METHODS[variant.stage]}; {document_description(variant)}"


def _named(bench, datasets) -> str:
    return ", ".join(f"{d} ({bench.sizes[d]:,})" if d in bench.sizes else d for d in datasets)


def benchmark_line(name: str) -> str:
    """One benchmark: its classes and datasets, with the number of test images where its file gives it."""
    bench = get_benchmark(name)
    line = f"{name}: {len(bench.classes):,} classes; ID {_named(bench, (bench.id_dataset,))}; near {_named(bench, bench.near)}; far {_named(bench, bench.far)}"
    if bench.csid:
        line += f"; covariate-shifted ID {_named(bench, bench.csid)}"
    return line


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
    footer = "\n".join(["", "Each task holds the ID test set and every OoD set of its benchmark (docs/benchmarks.md; in parentheses: test images):", *(f"  {benchmark_line(b)}" for b in BENCHMARKS)])
    footer += (
        "\nA benchmark of your own: reguide-eval --benchmark my_bench.yaml --tasks list (docs/benchmarks.md)"
        "\nRun one: reguide-eval --model ... --tasks reguide_baseline_imagenet200 --output_path outputs --log_samples"
        "\nlmms-eval's own tasks: lmms-eval --tasks list (reguide-eval forwards list_groups / list_tags / list_subtasks)"
    )
    return "\n".join(lines) + "\n" + footer
