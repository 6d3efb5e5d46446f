"""``reguide-reproduce``: the authors' table from their released answers, in one command.

For every run the release holds (``response/baseline/<bench>-<pct>%/<model>/`` and, where both stages
were released, ``response/reguide/<bench>-<pct>%/stage1|stage2/<model>/``), one ``reguide-eval`` run of
the matching task with the ``reguide_replay`` model (``missing=skip``: documents without a released
answer are left out of the metrics and counted as not in the release), then ``reguide-report`` over
all of them.

Output layout under ``--out``: ``runs/<stage>_<bench>-<pct>_<model>/`` (lmms-eval's output of one
run), ``logs/<same name>.log`` (that run's stdout and stderr) and ``report/`` (the report). A run whose
folder already holds a results file is skipped (resume); a failed run is recorded and the others
still run. Exit status: 0 all good, 1 some run or the report failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from reguide_tasks.data.release import RELEASE_DIR
from reguide_tasks.lmms.task_yamls import task_variants
from reguide_tasks.report.cli import _csv_list, print_outcome
from reguide_tasks.report.files import RESULTS_SUFFIX
from reguide_tasks.report.make import make_report

PROG = "reguide-reproduce"
STAGES = ("baseline", "reguide")
# run folder suffix -> task subset; the inverse of reguide_tasks.models.replay.SUBSET_RUN (not imported:
# the replay model module pulls in lmms-eval, which this front end does not need).
PCT_SUBSET = {"25": "subset25", "5": "subset5"}
_RUN_FOLDER = re.compile(r"^(?P<bench>.+)-(?P<pct>\d+(?:\.\d+)?)%$")


class ReproduceError(Exception):
    """Bad input (release root, output folder, filters): nothing was run. One line for the user."""


@dataclass(frozen=True)
class ReleaseRun:
    """One released run: ``stage`` baseline | reguide, ``pct`` without the % sign, ``task`` ours."""

    stage: str
    benchmark: str
    pct: str
    model: str
    task: str

    @property
    def run(self) -> str:
        """The release's run folder name, as ``reguide_replay``'s ``run=`` takes it."""
        return f"{self.benchmark}-{self.pct}%"

    @property
    def slug(self) -> str:
        return f"{self.stage}_{self.benchmark}-{self.pct}_{self.model}"

    def __str__(self) -> str:
        return f"{'Baseline' if self.stage == 'baseline' else 'ReGuide'} {self.run} {self.model}"


class ReleaseRuns(list):
    """The runs found (a list of :class:`ReleaseRun`) and, in ``notes``, what was passed over and why."""

    def __init__(self, runs: Sequence[ReleaseRun] = (), notes: Sequence[str] = ()) -> None:
        super().__init__(runs)
        self.notes = list(notes)


def response_dir(root: str | Path) -> Path:
    """The release's ``response/`` folder (``root`` may be the release root or that folder itself)."""
    root = Path(root)
    if "," in str(root):  # reguide_replay's responses= travels in lmms-eval's comma-separated --model_args
        raise ReproduceError(f"release root {root}: a path with a comma cannot be passed to reguide_replay; move or link it")
    if not root.is_dir():
        raise ReproduceError(f"release root {root}: no such directory")
    for candidate in (root / "response", root):
        if (candidate / "baseline").is_dir() or (candidate / "reguide").is_dir():
            return candidate
    raise ReproduceError(f"release root {root}: not a ReGuide release (expected response/baseline/ or response/reguide/ inside)")


def _subdirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def discover_release_runs(root: str | Path) -> ReleaseRuns:
    """Every run of the release under ``root`` that one of our tasks replays, in a stable order
    (baseline first, then benchmark, subset size, model); ``.notes`` says what was passed over."""
    response = response_dir(root)
    tasks = {(v.stage, v.benchmark, v.subset): v.name for v in task_variants() if not v.default}
    found: list[ReleaseRun] = []
    notes: list[str] = []
    for stage in STAGES:
        label = "Baseline" if stage == "baseline" else "ReGuide"
        for folder in _subdirs(response / stage):
            match = _RUN_FOLDER.match(folder)
            task = match and tasks.get((stage, match["bench"], PCT_SUBSET.get(match["pct"], "")))
            if not task:
                notes.append(f"{label} {folder}: no task of ours replays this run folder (expected <benchmark>-25% or <benchmark>-5%)")
                continue
            bench, pct = match["bench"], match["pct"]
            if stage == "baseline":
                models = _subdirs(response / stage / folder)
            else:
                stage1 = set(_subdirs(response / stage / folder / "stage1"))
                stage2 = set(_subdirs(response / stage / folder / "stage2"))
                models = sorted(stage1 & stage2)
                notes += [f"{label} {folder} {m}: stage2 not in release" for m in sorted(stage1 - stage2)]
                notes += [f"{label} {folder} {m}: stage1 not in release" for m in sorted(stage2 - stage1)]
            found += [ReleaseRun(stage, bench, pct, model, task) for model in models]
    found.sort(key=lambda r: (STAGES.index(r.stage), r.benchmark, float(r.pct), r.model))
    return ReleaseRuns(found, notes)


def _matches(value: str, patterns: Sequence[str] | None) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


def select(runs: ReleaseRuns, models: Sequence[str] | None = None, tasks: Sequence[str] | None = None) -> list[ReleaseRun]:
    """The runs whose model and task match the filters (names or globs); ReproduceError if a task
    name is none of ours or nothing is left."""
    known = {v.name for v in task_variants()}
    unknown = [t for t in tasks or () if not any(ch in t for ch in "*?[") and t not in known]
    if unknown:
        raise ReproduceError(f"--tasks: not a task of ours: {', '.join(unknown)}")
    chosen = [r for r in runs if _matches(r.model, models) and _matches(r.task, tasks)]
    if not chosen:
        available = ", ".join(f"{r.task} ({r.model})" for r in runs) or "none"
        raise ReproduceError(f"no released run matches --models / --tasks (runs in this release: {available})")
    return chosen


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ReproduceError(f"output folder {out} is not writable: {err.strerror or err}") from None


def eval_command() -> list[str]:
    """How to start ``reguide-eval`` with this interpreter: its console script beside the interpreter,
    else the module as a script. The script is preferred because ``python -m`` puts the working folder
    first on ``sys.path``, where a stale ``*.egg-info`` of a source checkout can shadow the installed
    package's entry points (lmms-eval would then not find our models)."""
    script = Path(sys.executable).with_name("reguide-eval")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "reguide_tasks.lmms.cli"]


def _results_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob(f"*{RESULTS_SUFFIX}")) if folder.is_dir() else []


def run_one(run: ReleaseRun, root: Path, out: Path, log: Path, extra_args: Sequence[str] = ()) -> int:
    """One ``reguide-eval`` replay of ``run`` into ``out``, its output in ``log``; the exit status."""
    command = [
        *eval_command(),
        "--model", "reguide_replay",
        "--model_args", f"responses={root},model={run.model},run={run.run},missing=skip",
        "--tasks", run.task,
        "--output_path", str(out),
        "--log_samples",
        *extra_args,
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False).returncode


def reproduce(
    root: str | Path,
    out_dir: str | Path,
    *,
    report: bool = True,
    note: Callable[[str], None] = print,
    extra_args: Sequence[str] = (),
    models: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
) -> int:
    """Replay every released run under ``root`` (``models`` / ``tasks``: filters, names or globs)
    into ``out_dir/runs``, then (``report``) write the report to ``out_dir/report``.

    Returns 0 when every run and the report worked, 1 otherwise. Bad input raises ReproduceError
    before any run starts.
    """
    root, out = Path(root).absolute(), Path(out_dir)
    runs = discover_release_runs(root)
    chosen = select(runs, models, tasks)
    _check_writable(out)
    for text in runs.notes:
        note(f"note: {text}")
    failed: list[tuple[ReleaseRun, int, Path]] = []
    skipped = 0
    for run in tqdm(chosen, desc=PROG, unit="run"):
        run_out, log = out / "runs" / run.slug, out / "logs" / f"{run.slug}.log"
        existing = _results_files(run_out)
        if existing:
            skipped += 1
            note(f"skip {run} ({run.task}): results already in {existing[-1].parent} (resume)")
            continue
        status = run_one(run, root, run_out, log, extra_args)
        if status == 0 and not _results_files(run_out):
            status = 1  # exit 0 without a results file: nothing to report
        note(f"{'ok' if status == 0 else 'FAILED'} {run} ({run.task}): exit status {status}, log {log}")
        if status != 0:
            failed.append((run, status, log))
    ran = len(chosen) - skipped
    note(f"{len(chosen)} runs: {ran - len(failed)} ran, {skipped} skipped (results already there), {len(failed)} failed")
    for run, status, log in failed:
        note(f"failed: {run} ({run.task}), exit status {status}; see {log}")
    if not report:
        return 1 if failed else 0
    try:
        print_outcome(PROG, lambda: make_report([out / "runs"], out / "report", note=lambda text: note(f"note: {text}")))
    except SystemExit:  # print_outcome has printed "reguide-reproduce: error: <reason>"
        return 1
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Reproduce the ReGuide authors' table from their released answers: one reguide-eval replay "
            "(reguide_replay, missing=skip) per released run, then reguide-report over all of them. "
            "Runs whose results are already in the output folder are skipped."
        ),
    )
    parser.add_argument("root", nargs="?", default=str(RELEASE_DIR), metavar="RELEASE_ROOT",
                        help="the release (the folder holding response/); default: the sample shipped in the package")
    parser.add_argument("--out", default="outputs/reproduce", metavar="DIR", help="output folder (default outputs/reproduce)")
    parser.add_argument("--models", type=_csv_list, metavar="A,B", help="only these release models (folder names or globs), e.g. gpt,qwen")
    parser.add_argument("--tasks", type=_csv_list, metavar="T1,T2", help="only these tasks (names or globs), e.g. reguide_imagenet200_5pct")
    parser.add_argument("--no-report", dest="report", action="store_false", help="run the replays only, no report")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 all good, 1 a run or the report failed, 2 bad arguments."""
    args = build_parser().parse_args(argv)
    try:
        return reproduce(args.root, args.out, report=args.report, note=tqdm.write, models=args.models, tasks=args.tasks)
    except ReproduceError as err:
        sys.stdout.flush()
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
