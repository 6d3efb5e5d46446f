"""Time the whole reguide-report (tables, bootstrap CIs, leaderboard with paired tests, ReGuide vs
baseline, calibration, every plot, the HTML page) on N runs of the ImageNet200 5% task, against the
same report on one run measured in the same process.

The runs are copies of one real replay of the authors' GPT-4o answers (``reguide_baseline_imagenet200_5pct``,
the demo), each under its own model name, so every run is read, bootstrapped, tested and plotted.

    .venv/bin/python bench/bench_report.py            # 10 runs; replays the demo first if needed
    .venv/bin/python bench/bench_report.py --runs 20 --source outputs/demo
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reguide_tasks.report.make import make_report

REPO = Path(__file__).resolve().parents[1]
TASK = "reguide_baseline_imagenet200_5pct"


def replay(out: Path) -> Path:
    """One lmms-eval run of the task with the released answers (as utils/demo.sh does)."""
    cli = Path(sys.executable).with_name("reguide-eval")
    done = subprocess.run(
        [str(cli), "--model", "reguide_replay", "--model_args", "model=gpt,missing=skip", "--tasks", TASK, "--output_path", str(out), "--log_samples"],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        sys.exit(f"bench_report: the replay failed:\n{done.stderr[-2000:]}")
    return out


def copies(source: Path, n: int, into: Path) -> list[Path]:
    """``n`` copies of the run folder under ``source``, each results JSON naming another model."""
    (results,) = sorted(source.rglob("*_results.json"))[-1:]
    folders = []
    for i in range(n):
        folder = into / f"model_{i:02d}"
        shutil.copytree(results.parent, folder)
        for path in folder.glob("*_results.json"):
            data = json.loads(path.read_text())
            data["config"]["model_args"] = f"{data['config'].get('model_args', '')},copy={i}"
            path.write_text(json.dumps(data))
        folders.append(folder)
    return folders


def timed(paths: list[Path], out: Path) -> float:
    start = time.perf_counter()
    make_report(paths, out)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--source", type=Path, default=None, help="an output folder of the task (default: replay it now)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = args.source or replay(root / "source")
        runs = copies(source, args.runs, root / "runs")
        one = timed(runs[:1], root / "report_one")
        many = timed(runs, root / "report_many")
    print(f"reguide-report, {TASK}: 1 run {one:.1f} s; {args.runs} runs {many:.1f} s; ratio {many / one:.2f}")


if __name__ == "__main__":
    main()
