"""Reading what an lmms-eval / reguide-eval run wrote under its ``--output_path``: shared by the
end-to-end test files (each keeps its own run bookkeeping)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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


def run_logging_imports(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, list[str], list[str]]:
    """reguide-eval with Python's import log on (PYTHONPROFILEIMPORTTIME): the run, the lmms-eval
    modules it imported beyond the bare package (whose version reguide-eval reads), and its stderr
    without the import log. "Before lmms-eval loads" is checked on imports, not on seconds, which a
    loaded machine (two test workers on two cores) stretches. ``env``: the run's environment (default:
    this process's)."""
    env = {**(os.environ if env is None else env), "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run([console_script("reguide-eval"), *args], capture_output=True, text=True, timeout=120, check=False, env=env, cwd=cwd)
    lines = done.stderr.splitlines()
    modules = [line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")]
    return done, [m for m in modules if m.startswith("lmms_eval.")], [line for line in lines if not line.startswith("import time:")]


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


# ---------------------------------------------------------------- forked CLI runs
# Plain lmms-eval is not among them: this process may hold patches an in-process test installed,
# and a plain run must not see them.
FORKED_PROGRAMS = ("reguide-eval", "reguide-report")


def _forked_main(program: str, argv: list[str]) -> int:
    """The program's entry point, called as its console script would (``sys.argv`` set), from the
    state a fresh process starts in: no run state, and lmms-eval's own agentic loop (reguide-eval
    installs its batched runner itself, unless --sequential)."""
    sys.argv = [program, *argv]
    if program == "reguide-eval":
        from reguide_tasks.lmms import runtime
        from reguide_tasks.lmms.cli import main
        from reguide_tasks.lmms.run_state import RUN

        RUN.reset()
        runtime.uninstall_batched_agentic_runner()
        main(argv)
        return 0
    from reguide_tasks.report.cli import main as report_main

    return int(report_main(argv) or 0)


def _take_environment(env: dict[str, str]) -> None:
    """In the child: ``env`` as the process environment, and the offline / cache settings that
    huggingface_hub (which transformers asks) and datasets read once at import pointed at it as well."""
    os.environ.clear()
    os.environ.update(env)
    import datasets
    import huggingface_hub.constants
    import torch

    offline = lambda name: env.get(name, "").upper() in ("1", "ON", "YES", "TRUE")  # noqa: E731
    huggingface_hub.constants.HF_HUB_OFFLINE = offline("HF_HUB_OFFLINE")
    datasets.config.HF_DATASETS_OFFLINE = offline("HF_DATASETS_OFFLINE") or offline("HF_HUB_OFFLINE")
    if env.get("HF_DATASETS_CACHE"):
        datasets.config.HF_DATASETS_CACHE = Path(env["HF_DATASETS_CACHE"])
    torch.set_num_threads(int(env.get("OMP_NUM_THREADS") or 1))


def run_cli(program: str, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 600):
    """One of our CLIs run as a fork of this test process, where lmms-eval, torch and our package are
    imported once: what ``subprocess.run([program, *argv], capture_output=True, text=True)`` returns,
    without paying the imports (about 6 s of CPU) for every run.

    For tests of what a run does, not of how it starts: a test of start-up (what is imported before
    lmms-eval, the console script itself, several processes) keeps a real subprocess. The child gets
    its own environment, working folder, ``sys.argv`` and standard streams, and ends with
    ``os._exit``: nothing it changes reaches this process.
    """
    import signal
    import subprocess
    import tempfile
    import time
    import traceback

    program = Path(program).name  # a console script's path names its program
    if program not in FORKED_PROGRAMS:
        raise ValueError(f"run_cli runs {', '.join(FORKED_PROGRAMS)}, not {program!r}")
    import lmms_eval.__main__  # noqa: F401  the point: imported here, once per test process
    import torch  # noqa: F401

    import reguide_tasks.lmms.cli  # noqa: F401

    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = open(1, "w", encoding="utf-8", closefd=False, buffering=1)
                sys.stderr = open(2, "w", encoding="utf-8", closefd=False, buffering=1)
                os.setsid()  # a timeout kills the child's own children too
                if cwd is not None:
                    os.chdir(cwd)
                _take_environment(dict(os.environ) if env is None else env)
                code = _forked_main(program, list(argv))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - reported as a console script would
                traceback.print_exc()
                code = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired([program, *argv], timeout)
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess([program, *argv], os.waitstatus_to_exitcode(status),
                                           out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"))
