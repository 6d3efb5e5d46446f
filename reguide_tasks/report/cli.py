"""``reguide-report``: one cross-model report from lmms-eval outputs of the ReGuide tasks.

Prints the Markdown tables to stdout, then the paths written; notes (newest run kept, samples file
missing, ...) go to stderr as ``reguide-report: note: ...``. On failure the last line on stderr is
``reguide-report: error: <reason>`` and the exit status is 1 (2 for bad command-line usage).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from reguide_tasks.report.files import ReportError
from reguide_tasks.report.leaderboard import FALLBACK_ORDER, MEAN_OVER_SHARED
from reguide_tasks.report.make import make_report

PROG = "reguide-report"


def _csv_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Cross-model report of ReGuide OoD-detection runs: reads lmms-eval's <date>_results.json files "
            "(and the <date>_samples_<task>.jsonl files next to them, written with --log_samples) and writes "
            "report.md, one CSV per benchmark, report.tex (booktabs), plots and report.html: per benchmark a "
            "ranked leaderboard with paired significance (DeLong, Holm), ReGuide vs baseline per model, and the "
            "calibration of verbalized confidence."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="results JSON files, or directories searched recursively for *_results.json")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if needed)")
    parser.add_argument("--sort-by", metavar="KEY", help="sort rows by this column key, e.g. auroc_far, fpr95_near, id_acc, auroc_ninco")
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument("--descending", dest="descending", action="store_true", default=None, help="sort highest first")
    direction.add_argument("--ascending", dest="descending", action="store_false", help="sort lowest first (default: best first for metrics)")
    parser.add_argument("--models", type=_csv_list, metavar="A,B", help="keep these models (label, model name, pretrained/responses value, or glob)")
    parser.add_argument("--tasks", type=_csv_list, metavar="T1,T2", help="keep these tasks (name or glob)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap replicates for the AUROC CIs; 0 = none (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--rank-by", default=None, metavar="KEY", help=(
        f"the metric the leaderboard ranks by, e.g. auroc_far, fpr95_near, auroc_ninco (default: per document set, the first of "
        f"{', '.join(FALLBACK_ORDER)} that every run of the set has; {MEAN_OVER_SHARED}: the mean AUROC over the OoD sets they all have)"))
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="do not draw ROC curves / histograms / reliability / forest plots")
    parser.add_argument("--no-html", dest="html", action="store_false", help="do not write report.html")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0, or exits with status 1 and a one-line error on ReportError."""
    args = build_parser().parse_args(argv)

    def note(text: str) -> None:
        print(f"{PROG}: note: {text}", file=sys.stderr)

    return print_outcome(PROG, lambda: make_report(
        args.paths,
        args.out,
        sort_by=args.sort_by,
        descending=args.descending,
        models=args.models,
        tasks=args.tasks,
        n_boot=args.bootstrap,
        seed=args.seed,
        plots=args.plots,
        primary=args.rank_by,
        html=args.html,
        note=note,
    ))


def print_outcome(prog: str, build: Callable[[], Any]) -> int:
    """Run ``build`` (a report or an audit: ``.markdown``, ``.files``) and print its Markdown and the
    files it wrote; on ReportError, ``<prog>: error: <reason>`` as the last line and exit status 1."""
    try:
        outcome = build()
    except ReportError as err:
        sys.stdout.flush()
        print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(1) from None
    print(outcome.markdown)
    if outcome.files:
        print("Wrote:")
        for path in outcome.files:
            print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
