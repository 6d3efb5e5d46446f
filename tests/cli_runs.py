"""Reading what an lmms-eval / reguide-eval run wrote under its ``--output_path``: shared by the
end-to-end test files (each keeps its own run bookkeeping)."""

from __future__ import annotations

import json
from pathlib import Path


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
