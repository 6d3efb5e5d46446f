"""Peak memory of the full OpenOOD v1.5 ImageNet200 document set (the ``_full`` tasks), ~95k documents.

Synthetic ``benchmark_imglist/imagenet200/test_<dataset>.txt`` files are written with the real
per-dataset counts of the OpenOOD v1.5 ImageNet200 test sets (:data:`COUNTS`; paths shaped like
OpenOOD's, ID labels 0..199) and loaded the way the ``_full`` task loads them: lmms-eval reads the
task's one-row document-set spec and its ``process_docs``,
:func:`reguide_tasks.lmms.hooks.expand_document_sets`, builds every document (images not checked:
``RUN.images_required = False``, as for ``reguide_replay``). Each stage runs in a fresh process and
reports its peak RSS (``resource.getrusage``):

- ``imports``: the interpreter with lmms-eval, datasets and this package imported (the floor);
- ``expand``: plus ``expand_document_sets`` on the spec row -> a ``datasets.Dataset`` of all documents;
- ``lmms-eval task``: plus lmms-eval building the ``reguide_baseline_imagenet200_full`` task (its
  dataset, the media-free copy, the task index), as a run holds it before the model answers.
- ``lmms-eval run`` (``--run``): a whole run of that task with ``reguide_replay missing=skip``
  and ``--log_samples`` (requests, per-document records, aggregation, the samples file).

Target: peak RSS <= 1.5 GB for ``expand``.

    python bench/bench_memory.py [--run]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# OpenOOD v1.5, ImageNet200 benchmark: test images per dataset.
COUNTS = {"imagenet200": 9000, "ssb_hard": 49000, "ninco": 5879, "inaturalist": 10000, "textures": 5160, "openimage_o": 15869}
TARGET_MB = 1536.0
FULL_TASK = "reguide_baseline_imagenet200_full"


def imglist_line(dataset: str, i: int) -> str:
    """One line of an OpenOOD imglist: '<path relative to the images root> <label>' (path shapes as OpenOOD's)."""
    if dataset == "imagenet200":
        return f"imagenet_1k/val/n{1440764 + i % 200:08d}/ILSVRC2012_val_{i + 1:08d}.JPEG {i % 200}"
    shapes = {
        "ssb_hard": f"ssb_hard/n{4000000 + i % 980:08d}/n{4000000 + i % 980:08d}_{i:06d}.JPEG",
        "ninco": f"ninco/NINCO_OOD_classes/class_{i % 64:02d}/ninco_image_{i:06d}.jpg",
        "inaturalist": f"inaturalist/iNaturalist/images/{i:032x}.jpg",
        "textures": f"texture/images/class_{i % 47:02d}/class_{i % 47:02d}_{i:04d}.jpg",
        "openimage_o": f"openimage_o/images/{i:016x}.jpg",
    }
    return f"{shapes[dataset]} -1"


def write_imglists(root: Path) -> Path:
    from reguide_tasks.data.benchmarks import get_benchmark

    bench = get_benchmark("imagenet200")
    folder = root / "benchmark_imglist" / "imagenet200"
    folder.mkdir(parents=True, exist_ok=True)
    for dataset, count in COUNTS.items():
        lines = (imglist_line(dataset, i) for i in range(count))
        (folder / bench.imglist_name(dataset)).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def stage(name: str, root: Path) -> dict:
    """Run one stage in this (fresh) process; return its figures."""
    import datasets
    import lmms_eval.evaluator  # noqa: F401  (the floor includes what a run imports)

    from reguide_tasks.lmms import hooks as task_hooks
    from reguide_tasks.lmms.run_state import RUN

    RUN.images_required = False
    out: dict = {"stage": name}
    start = time.perf_counter()
    if name == "expand":
        spec = datasets.Dataset.from_list([{"benchmark": "imagenet200", "subset": "full", "path": "", "data_root": str(root)}])
        docs = task_hooks.expand_document_sets(spec)
        out["documents"] = len(docs)
        out["per_dataset"] = dict(Counter(docs.select_columns(["dataset"])[:]["dataset"]))
    elif name == "lmms-eval task":
        from lmms_eval.tasks import TaskManager, get_task_dict

        manager = TaskManager("ERROR", include_path=str(REPO_ROOT / "tasks_yaml"))
        task = get_task_dict([FULL_TASK], manager)[FULL_TASK]
        out["documents"] = len(task.test_docs())
    elif name == "lmms-eval run":
        import lmms_eval.__main__ as lmms_main

        sys.argv = ["lmms-eval", "--include_path", str(REPO_ROOT / "tasks_yaml"), "--model", "reguide_replay", "--model_args", "missing=skip",
                    "--tasks", FULL_TASK, "--output_path", str(root / "run_output"), "--log_samples", "--verbosity", "WARNING"]
        _, args = lmms_main.parse_eval_args()
        lmms_main.cli_evaluate(args)
        results = next((root / "run_output").rglob("*_results.json"))
        out["documents"] = json.loads(results.read_text(encoding="utf-8"))["n-samples"][FULL_TASK]["effective"]
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="also a whole lmms-eval run of the _full task (replay, missing=skip)")
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # internal: one stage in a child process
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print("RESULT " + json.dumps(stage(args.stage, Path(args.root))), flush=True)
        return

    root = Path(tempfile.mkdtemp(prefix="reguide_memory_"))
    folder = write_imglists(root)
    print(f"synthetic imglists in {folder}: {sum(COUNTS.values())} documents ({', '.join(f'{d} {n}' for d, n in COUNTS.items())})")
    env = dict(os.environ, REGUIDE_DATA_ROOT=str(root), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=str(root / "hf_datasets"))
    stages = ["imports", "expand", "lmms-eval task"] + (["lmms-eval run"] if args.run else [])
    figures = {}
    for name in stages:
        done = subprocess.run([sys.executable, __file__, "--stage", name, "--root", str(root)], check=False, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            raise SystemExit(f"stage {name} failed (exit {done.returncode}):\n{done.stdout[-3000:]}")
        figures[name] = json.loads(line[len("RESULT "):])
    floor = figures["imports"]["peak_rss_mb"]
    for name, fig in figures.items():
        extra = f"   documents {fig['documents']}" if "documents" in fig else ""
        print(f"{name:15s} peak RSS {fig['peak_rss_mb']:8.1f} MB   (+{fig['peak_rss_mb'] - floor:7.1f} MB over imports)   {fig['seconds']:6.2f} s{extra}")
    print("expanded per dataset:", figures["expand"]["per_dataset"])
    assert figures["expand"]["per_dataset"] == COUNTS, "the expanded documents do not match the imglists"
    peak = figures["expand"]["peak_rss_mb"]
    print(f"target: expand peak RSS <= {TARGET_MB:.0f} MB: {'met' if peak <= TARGET_MB else 'NOT met'} ({peak:.0f} MB)")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
