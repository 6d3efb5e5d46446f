"""ReGuide wall time / baseline wall time on the same documents, batched runner vs lmms-eval's loop.

The model is ``reguide_scripted`` with a fixed latency per ``generate_until`` call plus a small cost
per request (how batched backends such as vLLM, SGLang or a concurrent API behave). Each route runs
in this process through ``lmms_eval.evaluator.simple_evaluate``, so imports and start-up are paid
once; dataset loading and scoring are inside the timed region for every route alike.

    python bench/bench_two_stage.py [--per-dataset 20] [--call-latency 1.0] [--item-latency 0.01]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from reguide_tasks.fixtures import make_fixture
from reguide_tasks.paths import REPO_TASKS_DIR


def timed_run(task: str, model_args: str, batched: bool) -> tuple[float, dict]:
    import lmms_eval.evaluator as evaluator
    from lmms_eval.tasks import TaskManager

    from reguide_tasks import two_stage

    original = two_stage.lmms_eval_agentic_loop()
    if batched:
        two_stage.install()
    try:
        manager = TaskManager("ERROR", include_path=str(REPO_TASKS_DIR))
        start = time.perf_counter()
        results = evaluator.simple_evaluate(model="reguide_scripted", model_args=model_args, tasks=[task], task_manager=manager, verbosity="ERROR")
        elapsed = time.perf_counter() - start
    finally:
        evaluator._run_generate_until_agentic = original
    return elapsed, results["results"][task]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-dataset", type=int, default=20)
    parser.add_argument("--call-latency", type=float, default=1.0)
    parser.add_argument("--item-latency", type=float, default=0.01)
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="reguide_bench_")
    docs = make_fixture(root, "imagenet200", per_dataset=args.per_dataset)
    os.environ["REGUIDE_DATA_ROOT"] = root
    model_args = f"call_latency={args.call_latency},item_latency={args.item_latency}"

    timed_run("reguide_baseline_imagenet200_custom", "call_latency=0", batched=True)  # warm-up: imports, dataset cache
    base_s, base = timed_run("reguide_baseline_imagenet200_custom", model_args, batched=True)
    batched_s, batched = timed_run("reguide_imagenet200_custom", model_args, batched=True)
    print(f"documents: {len(docs)}; model: {args.call_latency}s per call + {args.item_latency}s per request")
    print(f"baseline            {base_s:8.2f} s")
    print(f"reguide (batched)   {batched_s:8.2f} s   ratio {batched_s / base_s:.2f}")
    if not args.skip_sequential:
        seq_s, sequential = timed_run("reguide_imagenet200_custom", model_args, batched=False)
        same = {k: v for k, v in sequential.items() if k != "alias"} == {k: v for k, v in batched.items() if k != "alias"}
        print(f"reguide (per-doc)   {seq_s:8.2f} s   ratio {seq_s / base_s:.2f}   same metrics as batched: {same}")


if __name__ == "__main__":
    main()
