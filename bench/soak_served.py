"""Soak: the full ImageNet200 list as ReGuide through lmms-eval's ``openai`` model against the loopback
test server, with injected faults and a SIGKILL in stage 2, restarted with the same command.

Not a CI test (the full list is 94,908 documents, two requests each). Steps:

1. synthetic OpenOOD imglists at the real per-dataset counts (``--scale`` shrinks them) and one small
   label-coded fixture image per document (the server reads the label back and answers like a model
   of quality 0.8);
2. the reference: ``reguide-eval --tasks reguide_imagenet200_full`` against an unfaulted server;
3. the soak: the same command against a server injecting a few percent of 5xx / 429 / dropped
   connections / malformed bodies, SIGKILLed once ``--kill-fraction`` of the documents have their
   stage-2 answer, then started again unchanged (its answer cache is the default
   ``<output>/answer_cache``).

Passes when the restart exits 0, no document is lost or duplicated, the metrics equal the
reference's, and no more answers were asked twice than one ``--save_every`` chunk (the one in flight
at the kill). Reported: wall time and peak RSS of each ``reguide-eval`` process (``VmHWM``) and of this process
(the server), requests sent vs documents, answers the server gave twice for the same image and
stage (the chunk in flight at the kill, ``--save_every``), documents lost or duplicated in the
samples file, and whether the metrics equal the reference's. Loopback only; every run has a time
limit and the script stops by itself.

    python bench/soak_served.py [--scale 1.0] [--num-concurrent 64] [--kill-fraction 0.5] [--save-every N] [--time-limit 10800]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from bench_memory import COUNTS, imglist_line  # noqa: E402  (the real per-dataset counts)

TASK = "reguide_imagenet200_full"
FAULTS = ("status:500,every=101", "status:429,every=137,retry_after_ms=20", "drop,every=173", "malformed,every=211")


def write_data(root: Path, scale: float) -> list[dict]:
    """Imglists at ``scale`` of the real counts and a label-coded 32 px image per document."""
    from reguide_tasks.data.benchmarks import get_benchmark
    from reguide_tasks.data.documents import full_documents
    from reguide_tasks.testing.fixtures import fixture_image
    from reguide_tasks.testing.label_code import LabelCode

    bench = get_benchmark("imagenet200")
    folder = root / "benchmark_imglist" / "imagenet200"
    folder.mkdir(parents=True, exist_ok=True)
    for dataset, count in COUNTS.items():
        lines = (imglist_line(dataset, i) for i in range(max(1, round(count * scale))))
        (folder / bench.imglist_name(dataset)).write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs = full_documents("imagenet200", folder)
    for index, doc in enumerate(docs):
        path = root / doc["image"]
        path.parent.mkdir(parents=True, exist_ok=True)
        fixture_image(index, 32, LabelCode.for_document(doc, index)).save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG", quality=95)
    return docs


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_eval(argv: list[str], log: Path, env: dict, deadline: float, kill_when=None) -> dict:
    """One reguide-eval process; SIGKILLed when ``kill_when()`` says so; its wall time and peak RSS."""
    started = time.monotonic()
    peak = 0.0
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        killed = False
        while process.poll() is None:
            peak = max(peak, peak_rss_mb(process.pid) or 0.0)
            if kill_when is not None and kill_when():
                process.send_signal(signal.SIGKILL)
                killed = True
            elif time.monotonic() > deadline:
                process.send_signal(signal.SIGKILL)
                raise SystemExit(f"time limit reached during {argv[:3]}; log: {log}")
            time.sleep(0.5)
    return {"returncode": process.returncode, "killed": killed, "wall_s": time.monotonic() - started, "peak_rss_mb": peak}


def metrics_of(output: Path) -> dict:
    (results,) = output.rglob("*_results.json")
    entry = json.loads(results.read_text(encoding="utf-8"))["results"][TASK]
    return {k: v for k, v in entry.items() if k.endswith(",none")}


def samples_doc_ids(output: Path) -> Counter:
    (samples,) = output.rglob(f"*_samples_{TASK}.jsonl")
    with open(samples, encoding="utf-8") as handle:
        return Counter(json.loads(line)["doc_id"] for line in handle if line.strip())


def same_metrics(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="share of the real per-dataset counts (1.0: 94,908 documents)")
    parser.add_argument("--num-concurrent", type=int, default=64)
    parser.add_argument("--kill-fraction", type=float, default=0.5, help="SIGKILL once this share of documents has a stage-2 answer")
    parser.add_argument("--time-limit", type=float, default=3 * 3600, help="seconds for everything; the script stops itself")
    parser.add_argument("--save-every", type=int, default=None, help="reguide-eval --save_every (default: reguide-eval's, 1024)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    deadline = time.monotonic() + args.time_limit
    work = Path(args.workdir or tempfile.mkdtemp(prefix="reguide_soak_"))
    root = work / "data"
    from reguide_tasks.testing.server import DEFAULT_MODEL, OoDDTestServer

    t0 = time.monotonic()
    docs = write_data(root, args.scale)
    print(f"documents: {len(docs)} ({time.monotonic() - t0:.0f} s to write the imglists and images) under {work}", flush=True)
    env = {**os.environ, "OPENAI_API_KEY": "EMPTY", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(work / "hf_datasets")}
    eval_bin = str(Path(sys.executable).with_name("reguide-eval"))

    def argv(server, output: Path, *extra: str) -> list[str]:
        model_args = f"model={DEFAULT_MODEL},base_url={server.url},num_concurrent={args.num_concurrent},max_retries=5,retry_backoff_s=0.05"
        save = ["--save_every", str(args.save_every)] if args.save_every else []
        return [eval_bin, "--model", "openai", "--model_args", model_args, "--tasks", TASK, "--data_root", str(root),
                "--output_path", str(output), "--log_samples", *save, *extra]

    report: dict = {"documents": len(docs), "scale": args.scale, "num_concurrent": args.num_concurrent, "save_every": args.save_every or 1024, "faults": FAULTS}
    with OoDDTestServer() as server:  # the reference: no faults, no kill, no cache
        report["reference"] = run_eval(argv(server, work / "reference", "--no_answer_cache"), work / "reference.log", env, deadline)
        report["reference"]["requests"] = sum(server.requests.values())
    print("reference:", report["reference"], flush=True)

    output = work / "soak"
    with OoDDTestServer(FAULTS) as server:  # one server for both runs: its counters span the kill
        kill_at = int(args.kill_fraction * len(docs))
        report["killed_run"] = run_eval(argv(server, output), work / "soak_first.log", env, deadline, kill_when=lambda: server.answered["stage2"] >= kill_at)
        requests_at_kill = sum(server.requests.values())
        report["restart"] = run_eval(argv(server, output), work / "soak_restart.log", env, deadline)
        answered = Counter((entry.stage, entry.image) for entry in server.log if not entry.fault)
        report["requests"] = {"sent": sum(server.requests.values()), "before_kill": requests_at_kill, "per_stage": dict(server.requests),
                              "faults": dict(server.faults), "answered_twice": sum(n - 1 for n in answered.values() if n > 1),
                              "documents": len(docs)}
    report["server_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ids = samples_doc_ids(output)
    report["samples"] = {"rows": sum(ids.values()), "lost": len(docs) - len(ids), "duplicated": sum(n - 1 for n in ids.values() if n > 1)}
    report["metrics_identical_to_reference"] = same_metrics(metrics_of(output), metrics_of(work / "reference"))
    # Asked again after the restart: at most the chunk in flight at the kill (--save_every requests).
    report["asked_again_within_one_chunk"] = report["requests"]["answered_twice"] <= report["save_every"]
    print(json.dumps(report, indent=2), flush=True)
    (work / "soak_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    ok = (report["restart"]["returncode"] == 0 and report["samples"]["lost"] == 0 and report["samples"]["duplicated"] == 0
          and report["metrics_identical_to_reference"] and report["asked_again_within_one_chunk"])
    print(f"soak {'passed' if ok else 'FAILED'}; report: {work / 'soak_report.json'}", flush=True)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
