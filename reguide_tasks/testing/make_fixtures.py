"""Write a small synthetic image tree in the OpenOOD layout (and its document file).

    reguide-make-fixtures --data_root ./data --benchmark imagenet200 --per-dataset 4

Then run the ``*_custom`` tasks on it, e.g.
``reguide-eval --tasks reguide_baseline_imagenet200_custom --data_root ./data --model ...``.
"""

from __future__ import annotations

import argparse

from reguide_tasks.data.benchmarks import BENCHMARKS
from reguide_tasks.testing.fixtures import custom_documents_file, make_fixture


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reguide-make-fixtures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", "--root", dest="root", default="./data", help="data root to write into (default ./data); --root is the old spelling")
    parser.add_argument("--benchmark", choices=sorted(BENCHMARKS), action="append", help="benchmark(s); default: all")
    parser.add_argument("--per-dataset", type=int, default=4, help="images per dataset (default 4)")
    parser.add_argument("--subset", default=None, help="document set to take them from (default: the ReGuide default)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    args = parser.parse_args(argv)
    for benchmark in args.benchmark or sorted(BENCHMARKS):
        docs = make_fixture(args.root, benchmark, args.per_dataset, args.subset, args.size)
        print(f"{benchmark}: {len(docs)} images under {args.root}; documents in {custom_documents_file(args.root, benchmark)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
