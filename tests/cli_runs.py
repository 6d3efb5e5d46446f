"""Reading what an lmms-eval / reguide-eval run wrote under its ``--output_path``: shared by the
end-to-end test files (each keeps its own run bookkeeping)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


def _one(output: Path, pattern: str, describe: str) -> Path:
    files = sorted(Path(output).rglob(pattern))
    assert len(files) == 1, f"expected one {pattern} under {output}, found {files}\n{describe}"
    return files[0]


def read_results(output: Path, describe: str = "") -> dict:
    """The run's single results JSON."""
    return json.loads(_one(output, "*_results.json", describe).read_text(encoding="utf-8"))


def read_metrics(output: Path, task: str, describe: str = "") -> dict[str, float]:
    """A task's aggregated metrics, lmms-eval's ``,none`` filter suffix and stderr entries dropped."""
    table = read_results(output, describe)["results"][task]
    return {key.rpartition(",")[0]: value for key, value in table.items() if key.endswith(",none") and "_stderr" not in key}


def read_samples(output: Path, task: str, describe: str = "") -> list[dict]:
    """A task's sample log rows, in file order."""
    path = _one(output, f"*_samples_{task}.jsonl", describe)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def console_script(name: str) -> str:
    """The console script installed next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"console script {name!r} not found: install the package (pip install -e .)")
    return found


def offline_env(run_dir: Path, drop: tuple[str, ...] = ("REGUIDE_",), **extra: str) -> dict[str, str]:
    """This process's environment for a CLI run: variables starting with ``drop`` removed, the hubs
    offline, a dataset cache of the run's own (runs overlap), one OpenMP thread, then ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_CACHE=str(run_dir / "hf_datasets"),
        OMP_NUM_THREADS="1",
        **extra,
    )
    return env


@dataclass
class ServedRun:
    """A finished ``reguide-eval`` run and the (stopped) server it talked to."""

    name: str
    argv: list[str]
    returncode: int
    log: str
    output: Path
    seconds: float
    server: object  # reguide_tasks.testing.server.OoDDTestServer

    def describe(self) -> str:
        return f"[{self.name}] exit {self.returncode} after {self.seconds:.0f}s\n$ {' '.join(self.argv)}\n--- log (tail)\n{self.log[-4000:]}"

    def metrics(self, task: str) -> dict[str, float]:
        return read_metrics(self.output, task, self.describe())

    def records(self, task: str) -> list[dict]:
        rows = read_samples(self.output, task, self.describe())
        return [row["oodd"] for row in sorted(rows, key=lambda row: row["doc_id"])]

    def entries(self, stage: str) -> list:
        return [entry for entry in self.server.log if entry.stage == stage]
