"""A report written whole or not at all (docs/security.md): every file goes into a hidden folder in
the output folder first and is moved into place (a rename each) only once all were written. A full
disk or a failed write is a :class:`~reguide_tasks.report.files.ReportError` naming the folder, and
leaves the report that was there before as it was."""

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
    (replacing those of the same name), on an OSError remove it and raise ReportError."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=out))
    try:
        yield staging
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            target = out / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    except OSError as err:
        raise ReportError(f"cannot write into {out}: {' '.join(str(err).split())} (a full disk?); the files there before are untouched") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def final_paths(paths: list[Path], staging: Path, out: Path) -> list[Path]:
    """The paths written under ``staging`` as they are once moved into ``out``."""
    return [out / p.relative_to(staging) for p in paths]
