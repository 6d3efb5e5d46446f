"""``reguide-eval``: lmms-eval with our tasks on the include path, the batched two-stage runner, a data
check before any model loads, and an exit code that says whether the run worked.

Every lmms-eval argument is forwarded unchanged. Our own options (removed before lmms-eval sees them):
``--data_root DIR`` (sets ``REGUIDE_DATA_ROOT``), ``--sequential`` (keep lmms-eval's per-document
agentic loop instead of the batched runner) and ``--bad_images fail|exclude`` (sets
``REGUIDE_BAD_IMAGES``: an unreadable image stops the run naming the document, or is recorded in the
samples and left out of every metric).

When every task is ours, ``--process_docs_parallel`` defaults to 1 (lmms-eval's default is 4 threads,
which only contend for the GIL on our CPU-bound scoring); pass it to override.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from reguide_tasks.data.documents import (
    BAD_IMAGE_POLICIES,
    BAD_IMAGES_ENV,
    DATA_ROOT_ENV,
    DataError,
    check_unique,
    require_images,
)
from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.lmms import runtime
from reguide_tasks.lmms.run_state import RUN
from reguide_tasks.lmms.output_guard import OutputGuardError, check_output_names, check_results_written, hold_run_lock, is_first_rank
from reguide_tasks.lmms.secrets import split_secret_model_args
from reguide_tasks.lmms.task_yamls import TAGGED_BENCHMARKS, task_variants
from reguide_tasks.lmms.user_benchmarks import output_path_of, register_benchmarks, write_benchmarks, write_document_lists
from reguide_tasks.paths import TASKS_DIR

TAGS = {"reguide_all": ("reguide",), "reguide_baseline_all": ("baseline",)}


class RunFailed(RuntimeError):
    pass


def our_tasks(task_arg: str | None) -> list:
    """The task variants of ours named in ``--tasks`` (names or our tags)."""
    if not task_arg:
        return []
    variants = {v.name: v for v in task_variants()}
    chosen = []
    for name in (t.strip() for t in task_arg.split(",")):
        if name in variants:
            chosen.append(variants[name])
        elif name in TAGS:
            chosen.extend(v for v in variants.values() if v.default and v.stage in TAGS[name] and v.benchmark in TAGGED_BENCHMARKS)
    return chosen


def only_our_tasks(task_arg: str | None) -> bool:
    """Whether every name in ``--tasks`` is a task or tag of ours."""
    if not task_arg:
        return False
    names = {v.name for v in task_variants()} | set(TAGS)
    return all(t.strip() in names for t in task_arg.split(","))


def _given(flag: str, argv: Sequence[str]) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def model_needs_images(model_name: str | None) -> bool:
    """False for our models that never open an image (``reguide_replay``); every other model, ours or
    lmms-eval's, gets its images checked. Decided by name, so the check runs before lmms-eval loads."""
    from reguide_tasks.models import MODELS_WITHOUT_IMAGES

    return model_name not in MODELS_WITHOUT_IMAGES


def preflight(variants: Sequence, check_images: bool = True) -> None:
    """Expand each task's documents and check every image exists, before any model is loaded."""
    from reguide_tasks.lmms.hooks import document_set

    for variant in variants:
        if not check_images and variant.subset in get_benchmark(variant.benchmark).subsets:
            continue  # the authors' subsets are fixed and unique (tests/test_documents.py): nothing to check
        docs = document_set(variant.benchmark, variant.subset)
        check_unique(docs)
        if not check_images:
            continue
        try:
            require_images(docs)
        except DataError as exc:
            raise DataError(f"task {variant.name}: {exc}") from None


CACHE_RUN_ID_ENV = "LMMS_CACHE_RUN_ID"
ANSWER_CACHE_DIR = "answer_cache"
# Requests per model call while an answer cache is on: small enough that a kill loses little, large
# enough that a served model's pool of concurrent requests rarely drains at a chunk's end.
DEFAULT_SAVE_EVERY = 1024


def default_answer_cache(output_path: str | None, model: str | None) -> str | None:
    """Where ``reguide-eval`` keeps answers when the user gave no ``--use_cache``: under the output
    path, for every model that asks something (``reguide_replay`` reads its answers from files)."""
    if not output_path or not model_needs_images(model):
        return None
    return str(Path(output_path) / ANSWER_CACHE_DIR)


def stable_cache_run_id(model: str | None, model_args: str | None, tasks: str | None) -> str:
    """A response-cache run id that a restarted run gets again: same model, model args and tasks -> same id.

    lmms-eval 0.7.3 writes each run's answers to ``<cache>/runs/<run id>/rank_<r>.db`` and folds them
    into ``<cache>/cache.db`` (what later runs read) only when the run finishes. Without
    ``LMMS_CACHE_RUN_ID`` (or SLURM / torchrun ids) a single process picks a random id, so the answers
    of a killed run were never read again. The cache keys themselves still hold the task and model
    fingerprints: sharing a run folder across commands cannot mix answers up.
    """
    import hashlib

    key = "\0".join(str(part or "") for part in (model, model_args, tasks))
    return "reguide-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def own_parser() -> argparse.ArgumentParser:
    """reguide-eval's own options (removed before lmms-eval sees the arguments)."""
    own = argparse.ArgumentParser(
        prog="reguide-eval",
        add_help=False,
        usage="reguide-eval [our options] [lmms-eval options]",
        description=(
            "lmms-eval with the ReGuide OoD-detection tasks: our tasks on the include path, the batched "
            "two-stage runner, every task's documents and images checked before any model loads, and an "
            "exit code that says whether the run worked."
        ),
        epilog=(
            "Every other option is lmms-eval's, forwarded unchanged (lmms-eval --help lists them), e.g. "
            "--model, --model_args, --tasks, --output_path, --log_samples, --limit, --use_cache. Result "
            "file names use this machine's time zone (UTC when unknown) unless --timezone is given. "
            "Our tasks, described: reguide-eval --tasks list. Afterwards: reguide-report <output_path> --out <dir>."
        ),
    )
    own.add_argument("--data_root", default=None, metavar="DIR", help="the folder holding images_classic/ and images_largescale/ (OpenOOD v1.5 layout); sets REGUIDE_DATA_ROOT (default ./data)")
    own.add_argument("--sequential", action="store_true", help="keep lmms-eval's per-document loop for ReGuide's two stages instead of the batched runner (same answers, slower)")
    own.add_argument("--bad_images", choices=BAD_IMAGE_POLICIES, default=None, help="an unreadable image stops the run naming the document (fail, default) or is recorded and left out of every metric (exclude)")
    own.add_argument("--no_answer_cache", action="store_true", help=f"do not keep the model's answers in <output_path>/{ANSWER_CACHE_DIR} (kept by default, so a restarted identical command resumes without asking the model again; --use_cache DIR puts them elsewhere)")
    own.add_argument("--save_every", type=int, default=DEFAULT_SAVE_EVERY, metavar="N", help=f"with an answer cache, ask the model for at most N requests per call and save their answers before the next (default {DEFAULT_SAVE_EVERY}; a kill loses at most the chunk in flight; 0: lmms-eval's one call per request type / stage)")
    own.add_argument("--benchmark", action="append", default=None, metavar="FILE", help="a benchmark of your own (YAML; docs/benchmarks.md): validated before anything else, its tasks (reguide_baseline_<name>_full, ...) put on the include path; repeatable")
    own.add_argument("--dry_run", "--estimate", dest="dry_run", action="store_true", help="print, per task, the documents, the requests per stage, their prompt tokens and (with --price) the cost, then stop: no model is loaded or called, images are only checked to exist")
    own.add_argument("--price", default=None, metavar="IN[,OUT]", help="with --dry_run: USD per million input (and output) tokens, e.g. 2.5,10")
    own.add_argument("--answer_tokens", type=int, default=None, metavar="N", help="with --dry_run and an output price: tokens per answer to price (answers are not known before the run)")
    own.add_argument("--allow_unknown_model_args", action="store_true", help="let a model of lmms-eval's run on when it ignores --model_args it does not know (default: such a run stops; our own models always stop on an unknown argument)")
    return own


class UnknownModelArgs(RuntimeError):
    """An lmms-eval model said it ignores model args it does not know (a typo would run on defaults)."""


def _ignored_names(text: str) -> list[str]:
    """The names in lmms-eval's "Unknown model_args ignored: ['a', 'b']..." message."""
    import ast

    start, end = text.find("["), text.find("]")
    try:
        return [str(name) for name in ast.literal_eval(text[start : end + 1])]
    except (SyntaxError, ValueError):
        return []


def _user_model_arg_names(model_args: str | None) -> set[str]:
    return {item.split("=", 1)[0].strip() for item in (model_args or "").split(",") if "=" in item}


def _is_unknown_model_args(record) -> bool:
    return record["message"].startswith("Unknown model_args ignored")


@contextlib.contextmanager
def refusing_unknown_model_args(model_args: str | None):
    """While open, lmms-eval's "Unknown model_args ignored" warning raises :class:`UnknownModelArgs`
    where it is logged (a sink with ``catch=False``) when it names an argument of the user's
    ``--model_args``; lmms-eval's own ``batch_size`` / ``device`` it warns about too pass. Entered
    after lmms-eval has set up its logging, which removes every handler first."""
    from loguru import logger

    given = _user_model_arg_names(model_args)

    def refuse(message) -> None:
        text = str(message).strip().split(" - ", 1)[-1]
        if any(name in given for name in _ignored_names(text)):
            raise UnknownModelArgs(f"{text} reguide-eval stops here: the run would use defaults instead (--allow_unknown_model_args to go on)")

    handler = logger.add(refuse, level="WARNING", filter=_is_unknown_model_args, catch=False)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # already removed by lmms-eval
            logger.remove(handler)


def _split_own_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    return own_parser().parse_known_args(list(argv))


class UnknownTask(RuntimeError):
    """A task name that looks like ours (``reguide_*``) but is not one."""


def tasks_under(include_path: str | None) -> set[str]:
    """The ``task:`` names of the YAML files under a user's ``--include_path`` folders (a line scan:
    task files name lmms-eval's ``!function`` tags, which a plain YAML reader refuses)."""
    import re

    names: set[str] = set()
    for folder in filter(None, (include_path or "").split(",")):
        for path in Path(folder).rglob("*.yaml") if Path(folder).is_dir() else []:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            names.update(re.findall(r"^task:\s*['\"]?([\w.-]+)", text, flags=re.MULTILINE))
    return names


def early_args(argv: Sequence[str]) -> argparse.Namespace:
    """``--tasks``, ``--model``, ``--include_path``, ``--model_args`` and ``--limit`` read before lmms-eval is imported."""
    peek = argparse.ArgumentParser(add_help=False)
    for flag in ("--tasks", "--model", "--include_path", "--model_args", "--limit"):
        peek.add_argument(flag, default=None)
    return peek.parse_known_args(list(argv))[0]


def check_task_names(task_arg: str | None, include_path: str | None = None) -> None:
    """Before lmms-eval is imported (seconds): a ``reguide_*`` name in ``--tasks`` that is none of our
    tasks or tags is an error with the closest of our names. Other names are lmms-eval's to judge."""
    import difflib

    if not task_arg or task_arg.startswith("list"):
        return
    ours = sorted({v.name for v in task_variants()} | set(TAGS) | tasks_under(include_path))
    for name in (t.strip() for t in task_arg.split(",")):
        if name.startswith("reguide") and name not in ours:
            close = difflib.get_close_matches(name, ours, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise UnknownTask(f"unknown task {name!r}{hint}; reguide-eval --tasks list shows every task")


def local_timezone_name() -> str:
    """This machine's IANA time zone (``TZ``, ``/etc/timezone`` or the ``/etc/localtime`` link), else
    "UTC": lmms-eval names result files by the time in its ``--timezone``, Asia/Singapore by default."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    import pytz  # lmms-eval's own dependency, and what it resolves the name with

    for name in candidates:
        if name and name in pytz.all_timezones_set:
            return name
    return "UTC"


class BadArguments(ValueError):
    """Our own options do not fit together; the message says what to give."""


def _include_path(user_value, benchmark_folders: Sequence[str] = (), task_arg: str | None = None):
    """The user's ``--include_path`` folders, then those of ``--benchmark`` files and ours, unless one
    of them holds it: of ours only the folders of the tasks ``--tasks`` names (lmms-eval parses every
    YAML under its include path before it runs anything), all of them when it names none."""
    variants = our_tasks(task_arg)  # a user's benchmark's folder is among benchmark_folders
    named = {TASKS_DIR / f"reguide_{variant.benchmark}" for variant in variants}
    ours = sorted(str(folder) for folder in named if folder.is_dir()) if variants else [str(TASKS_DIR)]
    return runtime.with_plugin_folders(user_value or None, [*benchmark_folders, *ours])


def run(argv: Sequence[str]) -> None:
    """Run lmms-eval; raise :class:`RunFailed` / :class:`DataError` when it did not produce results."""
    own, rest = _split_own_args(argv)
    rest, secrets = split_secret_model_args(rest)  # out of every file lmms-eval writes (lmms/secrets.py)
    if own.data_root:
        os.environ[DATA_ROOT_ENV] = own.data_root
    if own.bad_images:
        os.environ[BAD_IMAGES_ENV] = own.bad_images

    runtime.check_lmms_eval_version()  # before any work: the patches below were written for it
    early = early_args(rest)
    # A user's benchmark (--benchmark, or a reguide-new-benchmark folder on --include_path): checked now, written after the run lock
    benches, included = register_benchmarks(own.benchmark or [], early.include_path)
    if early.tasks == "list":  # ours only, described, without importing lmms-eval
        from reguide_tasks.lmms.task_list import task_listing

        print(task_listing(), flush=True)
        return
    check_task_names(early.tasks, early.include_path)
    listing = early.tasks is None or early.tasks.startswith("list")
    if own.dry_run:
        from reguide_tasks.lmms.dry_run import dry_run_text

        print(dry_run_text(own, early), flush=True)
        return
    if not listing:  # every document and image checked before lmms-eval (seconds) and any model loads
        preflight(our_tasks(early.tasks), check_images=model_needs_images(early.model))
    import lmms_eval.__main__ as lmms_main

    sys.argv = ["lmms-eval", *rest]
    _, args = lmms_main.parse_eval_args()
    if not _given("--timezone", rest):
        args.timezone = local_timezone_name()
    if only_our_tasks(args.tasks) and not _given("--process_docs_parallel", rest):
        # Our process_results is CPU-bound Python: lmms-eval's default of 4 threads only contends
        # for the GIL (bench/bench_overhead.py: post-processing about twice as slow).
        args.process_docs_parallel = 1
    if not listing and not own.no_answer_cache and not getattr(args, "use_cache", None):
        # Nothing lost by default: a killed run's answers are there for the restarted command.
        args.use_cache = default_answer_cache(getattr(args, "output_path", None), args.model)
    if getattr(args, "use_cache", None) and not os.environ.get(CACHE_RUN_ID_ENV):
        # Set for every rank alike (same arguments), before lmms-eval creates the cache.
        os.environ[CACHE_RUN_ID_ENV] = stable_cache_run_id(args.model, args.model_args, args.tasks)

    if not listing:  # before lmms-eval writes anything: names inside --output_path, one run at a time
        check_output_names(args.model_args, [t.strip() for t in (args.tasks or "").split(",") if t.strip()])
        if is_first_rank():
            hold_run_lock([getattr(args, "output_path", None), getattr(args, "use_cache", None)], ["reguide-eval", *rest])
        write_document_lists(our_tasks(early.tasks), output_path_of(rest))  # after the lock: a refused run writes nothing
    args.include_path = _include_path(args.include_path, write_benchmarks(benches, None if listing else output_path_of(rest), included), args.tasks)
    if getattr(args, "use_cache", None):
        runtime.install_cache_placeholder_policy()
        runtime.install_cache_audit_check()
        runtime.install_chunked_cache_saving(own.save_every)
        runtime.install_stable_cache_version()
    if not listing and not own.sequential:
        runtime.install_batched_agentic_runner()
    if not listing:
        runtime.install_result_file_trimming()
        runtime.install_running_usage_totals()

    if secrets:
        runtime.install_model_arg_secrets(secrets)
    around = None if own.allow_unknown_model_args else functools.partial(refusing_unknown_model_args, args.model_args)
    started = time.time()
    with runtime.recording_evaluate_single(around) as outcomes:
        lmms_main.cli_evaluate(args)
    if listing:
        return
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        raise RunFailed(f"evaluation failed: {type(errors[0]).__name__}: {errors[0]}")
    if not outcomes:
        raise RunFailed("lmms-eval ran no evaluation")
    if _is_main_process() and any(o is None or o[0] is None for o in outcomes):
        raise RunFailed("lmms-eval returned no results")
    if RUN.every_request_failed():
        raise RunFailed(f"every one of the {RUN.documents_scored} requests of this process failed ({RUN.first_failure}); is the model server reachable?")
    if _is_main_process() and getattr(args, "output_path", None):
        from reguide_tasks.report.run_summary import run_summary

        check_results_written(args.output_path, started)  # lmms-eval logs a failed save and goes on
        summary = run_summary(args.output_path, started)
        if summary:
            print(summary, flush=True)
        if getattr(args, "use_cache", None):
            print(f"answers kept in {args.use_cache}: the same command resumes from them (start clean: delete that folder, or --no_answer_cache)", flush=True)
    elif _is_main_process():  # no --output_path: nothing written, the summary from the results in memory
        from reguide_tasks.report.run_summary import unsaved_run_summary

        summary = unsaved_run_summary([results for results, _ in outcomes])
        if summary:
            print(summary, flush=True)


def _is_main_process() -> bool:
    try:
        import torch.distributed as dist

        return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    except ImportError:  # pragma: no cover
        return True


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):  # ours, before lmms-eval is imported (seconds)
        own_parser().print_help()
        return
    try:
        run(argv)
    except BrokenPipeError:  # `reguide-eval --tasks list | head`: the reader has gone, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (DataError, RunFailed, UnknownTask, OutputGuardError, BadArguments, runtime.UnsupportedLmmsEval) as exc:
        print(f"reguide-eval: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except SystemExit as exc:
        if exc.code not in (0, None):
            print(f"reguide-eval: error: lmms-eval exited with status {exc.code}", file=sys.stderr, flush=True)
        raise


if __name__ == "__main__":
    main()
