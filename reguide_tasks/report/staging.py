"""A report written whole or not at all (docs/security.md): every file goes into a hidden folder in
the output folder first and is moved into place (a rename each) only once all were written. A file
it replaces is first moved aside, and moved back if a later move fails. A full disk or a failed write
is a :class:`~reguide_tasks.report.files.ReportError` naming the folder, and leaves the report that
was there before as it was (or, if even moving it back failed, says so and where the old files are)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from reguide_tasks.report.files import ReportError


@contextlib.contextmanager
def staged(out: Path) -> Iterator[Path]:
    """Yield a fresh folder inside ``out`` to write into; on success move its files into ``out``
    (replacing those of the same name), on an OSError put back what was replaced and raise ReportError."""
    staging: Path | None = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=out))
        yield staging
        _move_into_place(staging, out)
    except _UndoFailed:
        staging = None  # it holds the replaced files the message names: kept
        raise
    except OSError as err:
        raise ReportError(f"cannot write into {out}: {' '.join(str(err).split())} (a full disk?); the files there before are untouched") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, out: Path) -> None:
    """Each staged file renamed over its target, the old target first renamed into ``staging/.replaced``;
    on an OSError every step is undone (old files back, new files and folders removed) and it is raised."""
    aside = staging / ".replaced"
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    moved: list[tuple[Path, Path | None]] = []  # (target, where its old file was put aside)
    made: list[Path] = []  # folders created in out
    try:
        for path in files:
            relative = path.relative_to(staging)
            target = out / relative
            for folder in reversed(relative.parents[:-1]):
                if not (out / folder).is_dir():
                    (out / folder).mkdir()
                    made.append(out / folder)
            old = None
            if target.exists():
                old = aside / relative
                old.parent.mkdir(parents=True, exist_ok=True)
                os.replace(target, old)
            moved.append((target, old))
            os.replace(path, target)
    except OSError as err:
        try:
            for target, old in reversed(moved):
                if old is not None:
                    os.replace(old, target)
                else:
                    target.unlink(missing_ok=True)
            for folder in reversed(made):
                folder.rmdir()
        except OSError as undo:
            kept = aside
            with contextlib.suppress(OSError):
                os.replace(aside, out / f".replaced-{os.getpid()}")
                kept = out / f".replaced-{os.getpid()}"
            raise _UndoFailed(f"cannot write into {out}: {' '.join(str(err).split())} (a full disk?), and putting the earlier report back failed "
                              f"({undo.strerror or undo}): {out} holds a partly replaced report; the replaced files are in {kept}") from None
        raise


class _UndoFailed(ReportError):
    """Moving the earlier report back failed too: the message names where its files are."""


def final_paths(paths: list[Path], staging: Path, out: Path) -> list[Path]:
    """The paths written under ``staging`` as they are once moved into ``out``."""
    return [out / p.relative_to(staging) for p in paths]
