"""Build the documents of the full OpenOOD v1.5 test lists from OpenOOD's benchmark_imglist/ files.

    reguide-build-documents --data_root ./data [--benchmark imagenet200] [--out FILE]

Reads each dataset's image list, ``<data root>/benchmark_imglist/<folder>/test_<dataset>.txt`` (written
by OpenOOD's download script; ``<folder>`` is ``imagenet`` for ImageNet-1K; a benchmark file of your
own names its lists), prints the document count per dataset, and writes the documents as JSON lines (default
``<data root>/reguide_documents/<benchmark>_full.jsonl``). The ``*_full`` tasks build the same
documents themselves at load time; this file is for inspection and for custom document sets.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from reguide_tasks.data.benchmarks import BENCHMARKS, get_benchmark
from reguide_tasks.data.documents import DataError, check_unique, data_root, full_documents, write_documents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reguide-build-documents", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", "--data-root", dest="data_root", default=None, help="OpenOOD data folder (default: $REGUIDE_DATA_ROOT or ./data); --data-root is the old spelling")
    parser.add_argument("--benchmark", choices=list(BENCHMARKS), action="append", help="default: every benchmark whose image-list folder exists")
    parser.add_argument("--imglist-dir", default=None, help="folder of test_*.txt (default: <data root>/benchmark_imglist/<folder of the benchmark>)")
    parser.add_argument("--out", default=None, help="output file (only with one --benchmark)")
    args = parser.parse_args(argv)
    root = data_root(args.data_root)
    benchmarks = args.benchmark or [name for name, bench in BENCHMARKS.items() if bench.default_imglist_dir(root).is_dir()]
    if not benchmarks:
        print(f"reguide-build-documents: error: no image-list folder under {root / 'benchmark_imglist'} (run OpenOOD's download script, or pass --benchmark and --imglist-dir)", file=sys.stderr)
        return 1
    try:
        for benchmark in benchmarks:
            folder = Path(args.imglist_dir) if args.imglist_dir else get_benchmark(benchmark).default_imglist_dir(root)
            docs = full_documents(benchmark, folder)
            check_unique(docs)
            out = Path(args.out) if args.out and len(benchmarks) == 1 else root / "reguide_documents" / f"{benchmark}_full.jsonl"
            write_documents(docs, out)
            counts = ", ".join(f"{name}: {n}" for name, n in Counter(d["dataset"] for d in docs).items())
            print(f"{benchmark}: {len(docs)} documents ({counts}) -> {out}")
    except DataError as exc:
        print(f"reguide-build-documents: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
