"""``reguide-eval --tasks list``: our tasks and tags, one line each, without importing lmms-eval.

lmms-eval's own ``lmms-eval --tasks list`` prints its ~2,000 tasks with ours among them and no
description; this listing says per task: method (baseline or ReGuide), benchmark, document set and
how many documents it holds (the released subsets are counted; the full and custom sets depend on
the data root); per benchmark, its datasets and their test images in each document set.
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path

from reguide_tasks.data.benchmarks import BENCHMARKS, get_benchmark, stratified_percent
from reguide_tasks.lmms.task_yamls import TaskVariant, task_variants
from reguide_tasks.vocab import custom_documents_path

METHODS = {"baseline": "baseline (one prompt)", "reguide": "ReGuide (two stages)"}
TAG_DESCRIPTIONS = {
    "reguide_baseline_all": "tag: the default baseline task of the paper's benchmarks (cifar10, imagenet200)",
    "reguide_all": "tag: the default ReGuide task of the paper's benchmarks (cifar10, imagenet200)",
}


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
    return f"authors' {share}% subset, {sum(_released_sizes(variant.benchmark, variant.subset).values()):,} documents"


def describe(variant: TaskVariant) -> str:
    return f"{METHODS[variant.stage]}; {document_description(variant)}"


UNKNOWN_SIZE = "size of your imglist"


@functools.cache
def _released_sizes(benchmark: str, subset: str) -> dict[str, int]:
    from reguide_tasks.data.documents import subset_documents

    return dict(collections.Counter(doc["dataset"] for doc in subset_documents(benchmark, subset)))


def _per_dataset(datasets, sizes: dict[str, int]) -> str:
    """``total = a n, b m, ...``; a dataset without a figure says so instead of a number (no total then)."""
    parts = ", ".join(f"{d} {sizes[d]:,}" if d in sizes else f"{d} ({UNKNOWN_SIZE})" for d in datasets)
    return f"{sum(sizes[d] for d in datasets):,} = {parts}" if all(d in sizes for d in datasets) else parts


def size_lines(name: str) -> list[str]:
    """Images per dataset in each document set of the benchmark: the full lists (the counts its file
    gives; OpenOOD's lists are not shipped, so any other dataset is the size of the user's list), the
    released subsets (counted from the shipped lists, exact) and the seeded stratified subsets (a share
    of each stratum of the full lists)."""
    bench = get_benchmark(name)
    if bench.sizes:
        lines = [f"full lists (counts of {Path(bench.source).name}): {_per_dataset(bench.datasets, bench.sizes)}"]
    else:
        lines = [f"full lists: {UNKNOWN_SIZE} for every dataset (reguide-build-documents --data_root DIR counts them)"]
    for subset in bench.subsets:
        counts = _released_sizes(name, subset)
        counted = {d: counts.get(d, 0) for d in bench.datasets}
        lines.append(f"authors' {subset.removeprefix('subset')}% subset: {_per_dataset(bench.datasets, counted)}")
    if bench.stratified and not set(bench.ood_datasets) & set(bench.sizes):
        shares = " / ".join(f"{pct}%" for pct in bench.stratified)
        lines.append(f"seeded stratified {shares}: that share of each stratum of your imglists (a dataset; a class within the ID sets), at least 1 image each")
    elif bench.stratified:
        lines += [_stratified_line(bench, pct) for pct in bench.stratified]
    return lines


def _stratified_line(bench, percent: int) -> str:
    """A seeded stratified subset: an OoD set of known size keeps an exact count; an ID or shifted set
    keeps that share of each class, whose sizes no shipped file gives."""
    from reguide_tasks.data.documents import stratum_share

    def one(dataset: str) -> str:
        if dataset in bench.id_datasets:
            return f"{dataset} ({percent}% of each class)"
        if dataset in bench.sizes:
            return f"{dataset} {stratum_share(bench.sizes[dataset], percent):,}"
        return f"{dataset} ({percent}% of the {UNKNOWN_SIZE})"

    return f"seeded stratified {percent}% (at least 1 image per stratum): {', '.join(one(d) for d in bench.datasets)}"


def benchmark_line(name: str) -> str:
    """One benchmark: its classes and datasets."""
    bench = get_benchmark(name)
    line = f"{name}: {len(bench.classes):,} classes; ID {bench.id_dataset}; near {', '.join(bench.near)}; far {', '.join(bench.far)}"
    if bench.csid:
        line += f"; covariate-shifted ID {', '.join(bench.csid)}"
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
    described = [f"  {benchmark_line(b)}\n" + "\n".join(f"    {line}" for line in size_lines(b)) for b in BENCHMARKS]
    footer = "\n".join(["", "Each task holds the ID test set and every OoD set of its benchmark (docs/benchmarks.md); test images per dataset in each document set:", *described])
    footer += (
        "\nA benchmark of your own: reguide-eval --benchmark my_bench.yaml --tasks list (docs/benchmarks.md)"
        "\nRun one: reguide-eval --model ... --tasks reguide_baseline_imagenet200 --output_path outputs --log_samples"
        "\nlmms-eval's own tasks: lmms-eval --tasks list (reguide-eval forwards list_groups / list_tags / list_subtasks)"
    )
    return "\n".join(lines) + "\n" + footer
