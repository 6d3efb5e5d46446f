"""The docs' served-model snippet runs as pasted (the other docs commands: tests/test_docs_commands.py).

"Try it without a GPU" (docs/usage.md, moved there from the README): the first fenced ``bash`` block of
that section runs in a fresh folder with the
venv's commands on ``PATH`` (the only edit: a free port instead of 8000, so parallel test runs do not
collide), and the summary rows it prints match the figures the page quotes under it. The test
server stands in for a served model (no weights can be downloaded here); its answers are seeded per
image, so the figures are the same on every machine.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import offline_env

USAGE = Path(__file__).resolve().parents[1] / "docs" / "usage.md"
SECTION = "### Try it without a GPU"


def section(title: str) -> str:
    text = USAGE.read_text(encoding="utf-8")
    start = text.index(title)
    end = text.find("\n#", start + len(title))
    return text[start : end if end > 0 else None]


def fenced_bash(text: str) -> str:
    """The section's first ``bash`` block (the second shows the server's fault options)."""
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)[0]


def quoted_rows(text: str) -> dict[str, list[str]]:
    """The summary rows the page quotes (lines of its ``text`` block starting with a task name)."""
    return {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("reguide_")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.e2e
def test_try_it_without_a_gpu_runs_as_pasted(tmp_path: Path) -> None:
    text = section(SECTION)
    script = fenced_bash(text).replace("8000", str(free_port()))
    bin_dir = str(Path(sys.executable).parent)
    env = offline_env(tmp_path, drop=("REGUIDE_", "OPENAI_", "LMMS_IMAGE_"), PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    process = subprocess.Popen(["bash", "-e", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=600)
    finally:  # the background server too, whatever happened
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert process.returncode == 0, output[-4000:]
    printed = {line.split()[0]: line.split() for line in output.splitlines() if line.startswith("reguide_") and "  " in line}
    quoted = quoted_rows(text)
    assert set(quoted) == {"reguide_baseline_cifar10_custom", "reguide_cifar10_custom"}, quoted
    for task, row in quoted.items():
        assert printed[task] == row, (task, printed.get(task), output[-3000:])
    # What the figures show (the server at its default quality 0.8 stands in for a model): values
    # strictly between 0 and 100, and ReGuide above the baseline on both AUROC means.
    baseline, reguide = ([float(cell) for cell in printed[task][2:7]] for task in ("reguide_baseline_cifar10_custom", "reguide_cifar10_custom"))
    assert all(0 < value < 100 for value in baseline + reguide), (baseline, reguide)
    assert reguide[1] > baseline[1] and reguide[2] > baseline[2], (baseline, reguide)
    assert (tmp_path / "outputs" / "try").is_dir()
