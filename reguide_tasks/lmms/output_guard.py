"""What ``reguide-eval`` checks and holds about its ``--output_path`` (and answer cache) before
lmms-eval writes there (docs/security.md).

- Names lmms-eval derives from the arguments stay inside the output folder: it writes
  ``<output_path>/<model name>/<date>_samples_<task>.jsonl``, the model name taken from
  ``pretrained=`` / ``model=`` ... of ``--model_args`` (only '/' and a few characters replaced), so
  ``model=..`` would write beside the output folder and a 300-character name fails the save after the
  whole run. :func:`check_output_names` refuses both, before any model loads.
- One run at a time: two runs with the same output path or answer cache would write the same
  files (the cache's run folder is the same for the same command). :func:`hold_run_lock` takes an
  exclusive ``flock`` on ``.reguide-eval.lock`` in each folder for the life of the process (the kernel
  drops it when the process ends, however it ends: no stale lock after ``kill -9``); a second run is
  refused with the holder's pid, host, start time and command.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

LOCK_NAME = ".reguide-eval.lock"
MAX_NAME = 200  # characters of one path component lmms-eval makes (file systems allow 255 bytes)
_HELD: list = []  # open lock files: kept for the life of the process


class OutputGuardError(RuntimeError):
    """An output name would leave the output folder, or another run holds it; says what to do."""


def _plain(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name and len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME


def check_output_names(model_args: str | None, tasks: Sequence[str]) -> None:
    """:class:`OutputGuardError` when the folder lmms-eval names after the model, or a samples file
    named after a task, would not be one plain name inside the output folder."""
    from lmms_eval.loggers.evaluation_tracker import GeneralConfigTracker
    from lmms_eval.utils import sanitize_model_name

    folder = sanitize_model_name(GeneralConfigTracker._get_model_name(model_args or ""))
    if folder and not _plain(folder):
        raise OutputGuardError(
            f"lmms-eval would write this run's results into the folder {folder[:80]!r}{'...' if len(folder) > 80 else ''} under --output_path, "
            f"named after the model in --model_args: that is not one folder inside it (empty, '.', '..' or over {MAX_NAME} characters). "
            "Give the model a plain name (pretrained= / model=)."
        )
    for task in tasks:
        if not _plain(f"20250101_000000_samples_{task}.jsonl"):
            raise OutputGuardError(f"task name {task[:80]!r} cannot name a samples file inside --output_path (a '/', '..' or too long): rename the task")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process (no details in the lock file)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"reguide-eval pid {info.get('pid')} on {info.get('host')} since {since} ({info.get('command', '?')})"


def hold_run_lock(folders: Sequence[str | os.PathLike | None], command: Sequence[str]) -> list[Path]:
    """Lock each folder (created if missing) for this process; :class:`OutputGuardError` naming the
    holder when another process has one. ``command``: what the holder's refusal shows (no secrets)."""
    import fcntl

    taken = []
    for folder in dict.fromkeys(os.path.realpath(f) for f in folders if f):
        path = Path(folder) / LOCK_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open on purpose)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise OutputGuardError(
                f"{folder} is in use by {_holder(path)}: wait for that run to finish, or give this one another "
                "--output_path (and --use_cache folder)"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": " ".join(command)[:500]}))
            handle.flush()
        except OSError as err:  # a full disk: before lmms-eval writes anything there
            handle.close()
            raise OutputGuardError(f"cannot write {path}: {err.strerror} (a full disk?): free space in {folder} or give another --output_path; nothing there was changed") from None
        _HELD.append(handle)
        taken.append(path)
    return taken


def is_first_rank() -> bool:
    """Whether this process is rank 0 of a launcher (torchrun / accelerate), or runs alone: the
    ranks of one run share its output path, only the first takes the lock."""
    return os.environ.get("RANK", "0") in ("", "0")


def release_run_locks() -> None:
    """Drop every lock this process holds (the kernel does it at exit; tests call this)."""
    while _HELD:
        _HELD.pop().close()


def check_results_written(output_path: str | os.PathLike, since: float) -> None:
    """:class:`OutputGuardError` unless this run left a readable results file under ``output_path``:
    lmms-eval logs a failed save ("Could not save results aggregated") and goes on, so a full disk
    would otherwise end a run with exit 0 and an empty or no results file."""
    from reguide_tasks.report.files import ReportError, read_results_json
    from reguide_tasks.report.run_summary import results_written_since

    written = results_written_since(output_path, since)
    problems = []
    for path in written:
        try:
            read_results_json(path)
            return
        except ReportError as err:
            problems.append(str(err))
    found = f" ({problems[0]})" if problems else " (none written)"
    raise OutputGuardError(
        f"lmms-eval could not write this run's results under {output_path}{found}: a full disk, or no permission to write there? "
        "Free space and run the same command again (answers already cached are not asked again); results of earlier runs there are untouched"
    )
