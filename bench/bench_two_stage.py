"""ReGuide wall time / baseline wall time on the same documents, batched runner vs lmms-eval's loop.

Backends, each timed on baseline, ReGuide through our batched runner and ReGuide through lmms-eval's
own per-document agentic loop (``--skip-sequential`` leaves the last one out):

- ``scripted``: ``reguide_scripted`` with a fixed latency per ``generate_until`` call plus a small
  cost per request (how in-process batched engines such as vLLM or SGLang behave);
- ``served``: lmms-eval's ``openai`` model (``num_concurrent`` requests in flight) against our
  OpenAI-compatible test server on loopback (real HTTP, base64 images). Two latency models:
  - token-realistic (the headline): the server takes ``--output-token-latency`` seconds per output
    token of its answer (plus ``--prompt-token-latency`` per prompt token), so a stage-1 answer (40
    names) costs far less than a baseline or stage-2 answer (a confidence per class). The physical
    ratio is what that latency model charges ReGuide over the baseline, summed from the server's own
    request log (the same answers): (stage 1 + stage 2) / baseline. Target: measured / physical
    <= 1.1;
  - equal-cost (``--request-latency`` per request, whatever it says): physical ratio 2.0.

Each route runs in this process through ``lmms_eval.evaluator.simple_evaluate``, so imports and
start-up are paid once; dataset loading and scoring are inside the timed region for every route
alike. Target (ReGuide issue): ReGuide batched <= 2.2 x baseline.

    python bench/bench_two_stage.py [--backend all|scripted|served] [--per-dataset 20]
        [--call-latency 1.0] [--item-latency 0.01] [--request-latency 0.5] [--num-concurrent 32]
        [--output-token-latency 0.002] [--prompt-token-latency 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import ExitStack

from reguide_tasks.testing.fixtures import make_fixture
from reguide_tasks.paths import TASKS_DIR

BASELINE_TASK, REGUIDE_TASK = "reguide_baseline_imagenet200_custom", "reguide_imagenet200_custom"


def timed_run(task: str, model: str, model_args: str, batched: bool) -> tuple[float, dict]:
    import lmms_eval.evaluator as evaluator
    from lmms_eval.tasks import TaskManager

    from reguide_tasks.lmms import runtime

    if batched:
        runtime.install_batched_agentic_runner()
    try:
        manager = TaskManager("ERROR", include_path=str(TASKS_DIR))
        start = time.perf_counter()
        results = evaluator.simple_evaluate(model=model, model_args=model_args, tasks=[task], task_manager=manager, verbosity="ERROR")
        elapsed = time.perf_counter() - start
    finally:
        runtime.uninstall_batched_agentic_runner()
    return elapsed, results["results"][task]


def compare(label: str, model: str, model_args: str, skip_sequential: bool, server=None) -> None:
    """Time the three routes with one backend and print them with their ratios to the baseline; with
    ``server`` (our test server), also the physical ratio its latency model charged."""
    timed_run(BASELINE_TASK, model, model_args, batched=True)  # warm-up: the backend's imports and clients
    mark = len(server.log) if server is not None else 0
    base_s, _ = timed_run(BASELINE_TASK, model, model_args, batched=True)
    base_log = server.log[mark:] if server is not None else []
    batched_s, batched = timed_run(REGUIDE_TASK, model, model_args, batched=True)
    reguide_log = server.log[mark + len(base_log):] if server is not None else []
    ratio = batched_s / base_s
    print(f"[{label}]")
    print(f"  baseline            {base_s:8.2f} s")
    print(f"  reguide (batched)   {batched_s:8.2f} s   ratio {ratio:.2f}   target <= 2.2: {'met' if ratio <= 2.2 else 'NOT met'}")
    if server is not None:
        physical = physical_ratio(base_log, reguide_log)
        print(f"  physical ratio      {physical:8.2f}     (server-side latency charged, ReGuide / baseline; output tokens per answer: {tokens_per_stage(base_log, reguide_log)})")
        print(f"  measured / physical {ratio / physical:8.2f}     target <= 1.1: {'met' if ratio / physical <= 1.1 else 'NOT met'}")
    if not skip_sequential:
        seq_s, sequential = timed_run(REGUIDE_TASK, model, model_args, batched=False)
        same = {k: v for k, v in sequential.items() if k != "alias"} == {k: v for k, v in batched.items() if k != "alias"}
        print(f"  reguide (per-doc)   {seq_s:8.2f} s   ratio {seq_s / base_s:.2f}   same metrics as batched: {same}")


def physical_ratio(base_log, reguide_log) -> float:
    """Latency the server charged ReGuide's requests (both stages) over the baseline's."""
    return sum(entry.latency for entry in reguide_log) / sum(entry.latency for entry in base_log)


def tokens_per_stage(base_log, reguide_log) -> str:
    by_stage: dict[str, list[int]] = {}
    for entry in [*base_log, *reguide_log]:
        by_stage.setdefault(entry.stage, []).append(entry.output_tokens)
    return ", ".join(f"{stage} {sum(n) / len(n):.0f}" for stage, n in by_stage.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("all", "scripted", "served"), default="all")
    parser.add_argument("--per-dataset", type=int, default=20)
    parser.add_argument("--call-latency", type=float, default=1.0, help="scripted: seconds per generate_until call")
    parser.add_argument("--item-latency", type=float, default=0.01, help="scripted: seconds per request in a call")
    parser.add_argument("--request-latency", type=float, default=0.5, help="served: seconds the server takes per request")
    parser.add_argument("--num-concurrent", type=int, default=32, help="served: requests lmms-eval's openai model keeps in flight")
    parser.add_argument("--output-token-latency", type=float, default=0.002, help="served, token-realistic: seconds per output token (0.002: 500 tokens/s per request)")
    parser.add_argument("--prompt-token-latency", type=float, default=0.0, help="served, token-realistic: seconds per prompt token")
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="reguide_bench_")
    docs = make_fixture(root, "imagenet200", per_dataset=args.per_dataset)
    os.environ["REGUIDE_DATA_ROOT"] = root
    print(f"documents: {len(docs)} (fixture images, ImageNet200 ID + 5 OoD sets)")

    if args.backend in ("all", "scripted"):
        scripted_args = f"call_latency={args.call_latency},item_latency={args.item_latency}"
        compare(f"scripted: {args.call_latency} s per call + {args.item_latency} s per request", "reguide_scripted", scripted_args, args.skip_sequential)
    if args.backend in ("all", "served"):
        from reguide_tasks.testing.server import DEFAULT_MODEL, OoDDTestServer

        os.environ.setdefault("OPENAI_API_KEY", "sk-reguide-bench")  # the loopback server ignores it; the SDK wants one
        settings = [
            (f"served, token-realistic: openai model, {args.num_concurrent} in flight, {args.output_token_latency} s per output token, {args.prompt_token_latency} s per prompt token",
             {"output_token_latency": args.output_token_latency, "prompt_token_latency": args.prompt_token_latency}),
            (f"served, equal cost: openai model, {args.num_concurrent} in flight, {args.request_latency} s per request", {"latency": args.request_latency}),
        ]
        for label, latency in settings:
            with ExitStack() as stack:
                server = stack.enter_context(OoDDTestServer(**latency))
                served_args = f"model={DEFAULT_MODEL},base_url={server.url},num_concurrent={args.num_concurrent},max_retries=1"
                compare(label, "openai", served_args, args.skip_sequential, server)
                print(f"  server: {sum(server.requests.values())} requests, at most {server.max_in_flight} in flight")


if __name__ == "__main__":
    main()
