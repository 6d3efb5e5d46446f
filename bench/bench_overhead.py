"""Harness overhead: our whole CIFAR10 25% baseline task vs a trivial lmms-eval task of the same size.

Ours: ``reguide_baseline_cifar10`` (40,568 documents: the authors' 25% subset of every dataset) with
``reguide_replay`` and ``missing=skip``: the shipped sample only holds ID answers, the rest are
answered 'no released answer' and scored as failures, so every document goes through prompt
rendering, answer parsing, scoring, the per-document record and the aggregation of every metric key.
Baseline: lmms-eval's ``dummy`` model on a task written here: a JSON dataset of the same documents
(one row each), ``doc_to_text`` a constant, ``process_results`` ``{"acc": 1}``, aggregation mean.

A third run, ``trivial+prompt``, is the trivial task sending our real CIFAR10 prompt (~3 KB; the
trivial one is 24 characters) and nothing else of ours: it splits the gap into what lmms-eval itself
spends on a prompt of that size (request building, sample logging) and what our task adds on top
(document expansion, replay, parsing, scoring, records, 40+ metric keys). The target is on
ours / trivial.

All run the same way, alternating, after one warm-up run of each (imports done, dataset caches
built): by default in THIS process through lmms-eval's CLI entry (``cli_evaluate`` with the parsed
arguments: task indexing, dataset loading, requests, scoring, aggregation, the results and samples
files; not the interpreter start-up, which is the same for both and, on a loaded machine, mostly
noise); with ``--subprocess`` each run is ``python -m lmms_eval`` (start-up included); with
``--route reguide-eval`` every run goes through ``reguide-eval``'s own entry in this process
(:func:`reguide_tasks.lmms.cli.run`: its result-file trimming, batched runner and checks; answer cache
off for all, as ``reguide_replay`` has none; ours without ``--include_path``, as a user types it, so
lmms-eval indexes the task's own folder only). In-process runs share one heap, so each starts from a
full collection; with ``--isolate`` each timed run has a worker process of its own (a warm-up run of
the same task there first), so that no run inherits the heap another task left: the number of full
collections a run pays (printed, ~0.5 s each) then depends on that run's own work only. Same flags for all (``--log_samples`` unless
``--no-log-samples``). Target: ratio <= 1.2 (the issue "under real load": <= 1.15 through
``reguide-eval``, best of 5).

    python bench/bench_overhead.py [--repeats 3] [--no-log-samples] [--subprocess | --route reguide-eval [--isolate]] [--process-docs-parallel N] [--profile FILE.prof]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OUR_TASK = "reguide_baseline_cifar10"
TRIVIAL_TASK = "overhead_trivial"
PROMPT_TASK = "overhead_trivial_prompt"

TRIVIAL_UTILS = '''
def doc_to_visual(doc):
    return []


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return "Answer with one letter."


def process_results(doc, results):
    return {"acc": 1}


with open(__file__.replace("trivial_utils.py", "prompt.txt"), encoding="utf-8") as _handle:
    PROMPT = _handle.read()


def doc_to_text_ours(doc, lmms_eval_specific_kwargs=None):
    return PROMPT
'''

TRIVIAL_YAML = f"""task: {TRIVIAL_TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: rows.jsonl
test_split: test
output_type: generate_until
doc_to_visual: !function trivial_utils.doc_to_visual
doc_to_text: !function trivial_utils.doc_to_text
doc_to_target: label_name
process_results: !function trivial_utils.process_results
generation_kwargs:
  max_new_tokens: 16
  until: []
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0.1
"""


def write_trivial_task(folder: Path) -> int:
    """The trivial tasks over the same documents as ours (same row count and fields); return the count."""
    from reguide_tasks.data.documents import DOCUMENT_FIELDS, subset_documents
    from reguide_tasks.lmms.hooks import baseline_doc_to_text

    docs = subset_documents("cifar10", "subset25")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "rows.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({key: doc[key] for key in DOCUMENT_FIELDS}) + "\n" for doc in docs)
    (folder / "trivial_utils.py").write_text(TRIVIAL_UTILS, encoding="utf-8")
    (folder / "prompt.txt").write_text(baseline_doc_to_text(docs[0]), encoding="utf-8")
    (folder / f"{TRIVIAL_TASK}.yaml").write_text(TRIVIAL_YAML, encoding="utf-8")
    prompt_yaml = TRIVIAL_YAML.replace(f"task: {TRIVIAL_TASK}", f"task: {PROMPT_TASK}").replace("trivial_utils.doc_to_text", "trivial_utils.doc_to_text_ours")
    (folder / f"{PROMPT_TASK}.yaml").write_text(prompt_yaml, encoding="utf-8")
    return len(docs)


EXTRA_ARGS: list[str] = []  # lmms-eval flags given to every run (--process-docs-parallel)


def cli_argv(task: str, model: str, model_args: str, include: Path | None, output: Path, log_samples: bool) -> list[str]:
    argv = [*EXTRA_ARGS, *(["--include_path", str(include)] if include else []), "--model", model, "--tasks", task,
            "--output_path", str(output), "--verbosity", "WARNING"]
    if model_args:
        argv += ["--model_args", model_args]
    if log_samples:
        argv.append("--log_samples")
    return argv


def _check_output(task: str, output: Path, log: str) -> None:
    """A results file was written; then drop the output (the samples file of ours is ~170 MB)."""
    if not list(output.rglob("*_results.json")):
        raise SystemExit(f"{task}: no results written\n{log[-3000:]}")
    shutil.rmtree(output, ignore_errors=True)


def run_in_process(task: str, model: str, model_args: str, include: Path, workdir: Path, log_samples: bool) -> float:
    """One run through lmms-eval's CLI entry in this process; fresh model and released-answer caches."""
    import lmms_eval.__main__ as lmms_main

    from reguide_tasks.models import replay

    replay.load_answers.cache_clear()  # a new process would read the released answers again
    output = workdir / f"out_{task}_{time.monotonic_ns()}"
    saved_argv = sys.argv
    sys.argv = ["lmms-eval", *cli_argv(task, model, model_args, include, output, log_samples)]
    try:
        _, args = lmms_main.parse_eval_args()
        start = time.perf_counter()
        lmms_main.cli_evaluate(args)
        elapsed = time.perf_counter() - start
    finally:
        sys.argv = saved_argv
    _check_output(task, output, "")
    return elapsed


def run_reguide_eval(task: str, model: str, model_args: str, include: Path, workdir: Path, log_samples: bool) -> float:
    """One run through ``reguide-eval``'s entry (:func:`reguide_tasks.lmms.cli.run`) in this process."""
    from reguide_tasks.lmms import cli
    from reguide_tasks.models import replay

    replay.load_answers.cache_clear()
    output = workdir / f"out_{task}_{time.monotonic_ns()}"
    start = time.perf_counter()
    # ours as a user types it: reguide-eval finds our task folders itself (only the named task's)
    own_folder = include == REPO_ROOT / "tasks_yaml"
    cli.run(["--no_answer_cache", *cli_argv(task, model, model_args, None if own_folder else include, output, log_samples)])
    elapsed = time.perf_counter() - start
    _check_output(task, output, "")
    return elapsed


def run_subprocess(task: str, model: str, model_args: str, include: Path, workdir: Path, log_samples: bool, profile: str | None = None) -> float:
    output = workdir / f"out_{task}_{time.monotonic_ns()}"
    argv = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []), "-m", "lmms_eval"]
    argv += cli_argv(task, model, model_args, include, output, log_samples)
    start = time.perf_counter()
    done = subprocess.run(argv, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{task} failed (exit {done.returncode}):\n{done.stdout[-3000:]}")
    _check_output(task, output, done.stdout)
    return elapsed


def print_profile(path: str, top: int = 25) -> None:
    import pstats

    stats = pstats.Stats(path)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def task_specs(workdir: Path) -> dict[str, tuple]:
    trivial_dir = workdir / "trivial_task"
    return {
        "trivial": (TRIVIAL_TASK, "dummy", "", trivial_dir),
        "trivial+prompt": (PROMPT_TASK, "dummy", "", trivial_dir),
        "ours": (OUR_TASK, "reguide_replay", "missing=skip", REPO_ROOT / "tasks_yaml"),
    }


def timed(run, spec: tuple, workdir: Path, log_samples: bool) -> tuple[float, int]:
    """(wall seconds, full collections) of one run in this process.

    Starts from a full collection: in-process runs share one heap, and where the previous run left the
    collector's counters would otherwise decide whether this run pays one more full collection (about
    0.5 s here, ~5% of a run).
    """
    gc.collect()
    before = gc.get_stats()[2]["collections"]
    elapsed = run(*spec, workdir, log_samples)
    return elapsed, gc.get_stats()[2]["collections"] - before


def run_isolated(name: str, workdir: Path, args: argparse.Namespace) -> tuple[float, int]:
    """One timed run of ``name`` in a fresh worker process, after a warm-up run of the same task there:
    no run inherits the heap another task left. The time still covers the CLI call only."""
    argv = [sys.executable, __file__, "--worker", name, "--workdir", str(workdir), "--route", args.route]
    if args.process_docs_parallel is not None:
        argv += ["--process-docs-parallel", str(args.process_docs_parallel)]
    if args.no_log_samples:
        argv.append("--no-log-samples")
    done = subprocess.run(argv, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    lines = [line for line in done.stdout.splitlines() if line.startswith(WORKER_RESULT)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{name} worker failed (exit {done.returncode}):\n{done.stdout[-3000:]}")
    result = json.loads(lines[-1][len(WORKER_RESULT) :])
    return result["wall"], result["full_collections"]


WORKER_RESULT = "overhead-worker-result: "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (after one warm-up run of each)")
    parser.add_argument("--no-log-samples", action="store_true")
    parser.add_argument("--subprocess", action="store_true", help="one python -m lmms_eval process per run (start-up included)")
    parser.add_argument("--route", choices=("lmms-eval", "reguide-eval"), default="lmms-eval", help="in-process entry: lmms-eval's CLI (default) or reguide-eval's")
    parser.add_argument("--isolate", action="store_true", help="each timed run in its own worker process, after a warm-up run of the same task there")
    parser.add_argument("--process-docs-parallel", type=int, default=None, help="lmms-eval's --process_docs_parallel for every run (its default: 4 threads)")
    parser.add_argument("--profile", default=None, help="also run ours once under cProfile (a subprocess), write the stats here and print the top")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one --isolate run
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    log_samples = not args.no_log_samples
    if args.process_docs_parallel is not None:
        EXTRA_ARGS[:] = ["--process_docs_parallel", str(args.process_docs_parallel)]
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="reguide_overhead_"))
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_CACHE=str(workdir / "hf_datasets"))
    specs = task_specs(workdir)
    run = run_subprocess if args.subprocess else run_reguide_eval if args.route == "reguide-eval" else run_in_process
    if args.worker:
        run(*specs[args.worker], workdir, log_samples)  # warm-up: imports, dataset caches
        elapsed, collections = timed(run, specs[args.worker], workdir, log_samples)
        print(WORKER_RESULT + json.dumps({"wall": elapsed, "full_collections": collections}), flush=True)
        return
    n_docs = write_trivial_task(workdir / "trivial_task")

    mode = "subprocess per run" if args.subprocess else f"in-process ({args.route} CLI entry)" + (", a worker process per run" if args.isolate else "")
    print(f"documents: {n_docs} in each task; log_samples={log_samples}; {mode}; {os.cpu_count()} CPUs; extra lmms-eval args: {' '.join(EXTRA_ARGS) or 'none'}")
    if not args.isolate:
        for spec in specs.values():  # warm-up
            run(*spec, workdir, log_samples)
    times: dict[str, list[float]] = {name: [] for name in specs}
    full_collections: dict[str, list[int]] = {name: [] for name in specs}
    for _ in range(args.repeats):
        for name, spec in specs.items():
            if args.isolate:
                elapsed, collections = run_isolated(name, workdir, args)
            elif args.subprocess:
                elapsed, collections = run(*spec, workdir, log_samples), -1
            else:
                elapsed, collections = timed(run, spec, workdir, log_samples)
            times[name].append(elapsed)
            full_collections[name].append(collections)
    for name in specs:
        print(f"{name:14s} wall {' '.join(f'{t:7.2f}' for t in times[name])} s   best {min(times[name]):7.2f} s   median {sorted(times[name])[len(times[name]) // 2]:7.2f} s"
              + ("" if args.subprocess else f"   full gc collections {' '.join(map(str, full_collections[name]))}"))
    best = {name: min(times[name]) for name in specs}
    ratio = best["ours"] / best["trivial"]
    target = 1.15 if args.route == "reguide-eval" else 1.2
    print(f"ratio ours / trivial (best of {args.repeats}): {ratio:.2f}   target <= {target}: {'met' if ratio <= target else 'NOT met'}")
    print(f"  of which lmms-eval on a prompt of our size: trivial+prompt / trivial {best['trivial+prompt'] / best['trivial']:.2f}; "
          f"our task on top of that: ours / trivial+prompt {best['ours'] / best['trivial+prompt']:.2f}")
    if args.profile:
        run_subprocess(*specs["ours"], workdir, log_samples, profile=args.profile)
        print_profile(args.profile)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
