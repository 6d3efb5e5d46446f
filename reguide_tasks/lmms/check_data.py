"""Report missing images of tasks' documents without loading any model or running anything.

    reguide-check-data --tasks reguide_imagenet200,reguide_baseline_cifar10 [--data_root DIR]
    reguide-check-data --benchmark my_bench.yaml --tasks reguide_baseline_mybench

Exit 0 when every image is there, 1 otherwise (with the count per dataset and where they were looked for).
"""

from __future__ import annotations

import argparse
import sys
import os

from reguide_tasks.data.benchmarks import BenchmarkError, register_benchmark_file
from reguide_tasks.data.documents import DATA_ROOT_ENV, DataError, find_missing_images
from reguide_tasks.lmms.cli import our_tasks
from reguide_tasks.lmms.hooks import document_set


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reguide-check-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", required=True, help="comma-separated task names or tags of reguide-tasks")
    parser.add_argument("--benchmark", action="append", default=[], metavar="FILE", help="a benchmark file of your own whose tasks to check (repeatable)")
    parser.add_argument("--data_root", "--data-root", dest="data_root", default=None, help="the data root (default: $REGUIDE_DATA_ROOT or ./data); --data-root is the old spelling")
    args = parser.parse_args(argv)
    if args.data_root:
        os.environ[DATA_ROOT_ENV] = args.data_root
    try:
        for path in args.benchmark:
            register_benchmark_file(path)
    except BenchmarkError as exc:
        print(f"reguide-check-data: error: {exc}", file=sys.stderr)
        return 1
    variants = our_tasks(args.tasks)
    if not variants:
        print(f"reguide-check-data: error: no reguide task in {args.tasks!r} (see reguide-eval --tasks list)", file=sys.stderr)
        return 1
    bad = 0
    for variant in variants:
        try:
            docs = document_set(variant.benchmark, variant.subset)
        except DataError as exc:
            print(f"{variant.name}: {exc}")
            bad += 1
            continue
        report = find_missing_images(docs)
        if report.missing:
            bad += 1
            print(f"{variant.name}: {report.message()}")
        else:
            print(f"{variant.name}: all {report.total} images present under {report.root}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
