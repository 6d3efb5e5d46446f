"""Write a small synthetic image tree in the OpenOOD layout (and its document file).

    reguide-make-fixtures --data_root ./data --benchmark imagenet200 --per-dataset 4

Then run the ``*_custom`` tasks on it, e.g.
``reguide-eval --tasks reguide_baseline_imagenet200_custom --data_root ./data --model ...``.
With ``--train-per-class N`` it also writes N training images per ID class and OpenOOD's training
list for them, which ``reguide-clip-train`` reads.
"""

from __future__ import annotations

import argparse

from reguide_tasks.data.benchmarks import BENCHMARKS, get_benchmark, register_benchmark_file
from reguide_tasks.testing.fixtures import custom_documents_file, make_fixture, make_train_fixture


def benchmark_names(given: str) -> list[str]:
    """A benchmark name, or a benchmark file (``.yaml``), registered: its name and its full-spectrum
    view's (whose covariate-shifted images the benchmark's own documents do not hold)."""
    if given.endswith((".yaml", ".yml")):
        bench = register_benchmark_file(given)
        return [bench.name] + ([bench.fsood_view().name] if bench.shifted else [])
    return [get_benchmark(given).name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reguide-make-fixtures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", "--root", dest="root", default="./data", help="data root to write into (default ./data); --root is the old spelling")
    parser.add_argument("--benchmark", action="append", metavar="NAME|FILE", help=f"benchmark(s): {', '.join(BENCHMARKS)} or a benchmark file of your own (its image lists name the images); default: those with a released subset")
    parser.add_argument("--per-dataset", type=int, default=4, help="images per dataset (default 4)")
    parser.add_argument("--subset", default=None, help="document set to take them from (default: the ReGuide default)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    parser.add_argument("--train-per-class", type=int, default=0, help="also write this many training images per ID class and the training list (default 0: none)")
    args = parser.parse_args(argv)
    try:
        chosen = [name for given in args.benchmark for name in benchmark_names(given)] if args.benchmark else [b.name for b in BENCHMARKS.values() if b.subsets]
    except ValueError as exc:  # an unknown name, a malformed file (the message names the field)
        parser.error(str(exc))
    for benchmark in chosen:
        docs = make_fixture(args.root, benchmark, args.per_dataset, args.subset, args.size)
        print(f"{benchmark}: {len(docs)} images under {args.root}; documents in {custom_documents_file(args.root, benchmark)}")
        if args.train_per_class > 0:
            listed = make_train_fixture(args.root, benchmark, args.train_per_class, args.size)
            print(f"{benchmark}: {args.train_per_class} training images per class; training list {listed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
