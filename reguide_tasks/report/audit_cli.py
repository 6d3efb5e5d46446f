"""``reguide-audit``: how the answers of one run, or of a folder of runs, were read by the parser.

Prints the Markdown audit (per run and dataset: ok / partial / failed, top failure reasons, most
frequent unknown and repaired keys, the share of scores that came from a repaired key) and, with
``--out``, writes ``audit.md``, ``audit.csv`` and ``audit_keys.csv`` there. On failure the last line
on stderr is ``reguide-audit: error: <reason>`` and the exit status is 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reguide_tasks.report.audit import make_audit
from reguide_tasks.report.cli import _csv_list, print_outcome

PROG = "reguide-audit"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Parser audit of ReGuide runs: reads the <date>_samples_<task>.jsonl files next to lmms-eval's "
            "<date>_results.json (written with --log_samples) and reports, per dataset, how the answers were read."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="results JSON files, or directories searched recursively for *_results.json")
    parser.add_argument("--out", metavar="DIR", help="also write audit.md, audit.csv and audit_keys.csv here")
    parser.add_argument("--top", type=int, default=5, metavar="N", help="entries shown per list (reasons, unknown keys, repaired keys; default 5)")
    parser.add_argument("--models", type=_csv_list, metavar="A,B", help="keep these models (as reguide-report)")
    parser.add_argument("--tasks", type=_csv_list, metavar="T1,T2", help="keep these tasks (name or glob)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return print_outcome(PROG, lambda: make_audit(args.paths, args.out, top=args.top, models=args.models, tasks=args.tasks))


if __name__ == "__main__":
    sys.exit(main())
