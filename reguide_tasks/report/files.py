"""lmms-eval's output files: finding the results files, naming their samples files, reading both;
and :class:`ReportError`, the one error of the report room.

Input layout (lmms-eval 0.7.3, ``--output_path OUT --log_samples``)
--------------------------------------------------------------------
``OUT/<sanitized model name>/<date_id>_results.json`` and, next to it,
``<date_id>_samples_<task>.jsonl`` (one line per document; its ``oodd`` key holds the per-document
record: ``dataset``, ``role``, ``ood_score``, ``failed``, ``score_rule``, ``failure_policy``, ...).
``<date_id>`` is ``YYYYMMDD_HHMMSS``. In the results JSON, ``results[task]`` maps
``"<metric>,none"`` to the aggregated value (percent), ``config`` holds ``model`` / ``model_args``,
``configs[task]`` the task config and ``n-samples[task]["effective"]`` the number of documents.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

RESULTS_SUFFIX = "_results.json"
FILTER_SUFFIX = ",none"
_DATE_ID = re.compile(r"^(\d{8}_\d{6})")


class ReportError(Exception):
    """A report cannot be made; the message is one line meant for the user."""


def find_results_files(paths: Iterable[str | Path]) -> list[Path]:
    """Results files named by ``paths``: files as given, directories searched recursively for
    ``*_results.json``. Duplicates (same resolved path) are dropped. Missing path -> ReportError.
    """
    found: dict[Path, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            hits = sorted(path.rglob(f"*{RESULTS_SUFFIX}"))
        elif path.is_file():
            hits = [path]
        else:
            raise ReportError(f"no such file or directory: {path}")
        for hit in hits:
            found.setdefault(hit.resolve(), hit)
    return list(found.values())


def read_results_json(path: Path) -> dict[str, Any]:
    """The results JSON as a dict; ReportError if it is unreadable or not lmms-eval's layout."""
    try:
        if path.stat().st_size > MAX_RESULTS_BYTES:
            raise ReportError(f"{path}: over {MAX_RESULTS_BYTES // 2**20} MB, no lmms-eval results file is that big: check the path")
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM (an editor's) is no error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"cannot read {path}: {_one_line(err)}; a truncated or partly copied file? Copy it again, or run the task again") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ReportError(f"{path} is not an lmms-eval results file (no 'results' object)")
    for key in ("config", "configs", "group_subtasks", "n-samples"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise ReportError(f"{path}: '{key}' is {type(data[key]).__name__}, not an object: not lmms-eval's layout (edited by hand?); restore the file from the run, or run the task again")
    # one object per task inside them (what the report reads with .get); None stands for absent
    for key in ("results", "configs", "n-samples"):
        for task, value in (data.get(key) or {}).items():
            if value is not None and not isinstance(value, dict):
                raise ReportError(f"{path}: '{key}' -> '{task:.80}' is {type(value).__name__}, not an object: not lmms-eval's layout "
                                  "(edited by hand?); restore the file from the run, or run the task again")
    return data


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def date_id(path: Path) -> str | None:
    """The ``YYYYMMDD_HHMMSS`` prefix lmms-eval gives its output files, or None."""
    match = _DATE_ID.match(path.name)
    return match.group(1) if match else None


def samples_path_for(results_path: Path, task: str) -> Path | None:
    """``<date_id>_samples_<task>.jsonl`` next to the results file, if it exists. A task name that
    is no plain file name (a path separator, NUL, over 200 characters) names no samples file: only
    files beside the results file are read."""
    if not results_path.name.endswith(RESULTS_SUFFIX) or not is_plain_name(task):
        return None
    prefix = results_path.name[: -len(RESULTS_SUFFIX)]
    candidate = results_path.with_name(f"{prefix}_samples_{task}.jsonl")
    return candidate if candidate.is_file() else None


def is_plain_name(name: str) -> bool:
    """Whether ``name`` can be one part of a file name: no path separator, NUL or '..', not too long."""
    separators = {"/", "\0", os.sep, os.altsep} - {None}
    return bool(name) and len(name) <= 200 and not any(c in name for c in separators) and name not in (".", "..")


def task_metrics(entry: Mapping[str, Any]) -> dict[str, float]:
    """``{"auroc_x,none": 97.1, "auroc_x_stderr,none": "N/A", "alias": ..}`` -> ``{"auroc_x": 97.1}``."""
    out: dict[str, float] = {}
    for key, value in entry.items():
        if not key.endswith(FILTER_SUFFIX) or "_stderr" in key:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key[: -len(FILTER_SUFFIX)]] = float(value)
    return out


# A results file is kilobytes; one samples line (a document's record, its answers, the trimmed
# prompt) tens of kilobytes. Far bigger ones are refused while being read: memory stays bounded.
MAX_RESULTS_BYTES = 256 * 1024 * 1024
MAX_LINE_CHARS = 16 * 1024 * 1024
# Record fields the report computes with, and the types they must have (None is allowed: absent).
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "ood_score": (int, float), "dataset": (str,), "image": (str,), "failed": (bool,), "not_in_release": (bool,),
    "prediction_confidence": (int, float), "correct": (bool,),
}


def _check_record(record: Mapping[str, Any], path: Path, number: int) -> None:
    for key, types in _RECORD_TYPES.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise ReportError(f"{path}: line {number}: 'oodd.{key}' is {value!r:.60}, not {' or '.join(t.__name__ for t in types)}: not a record our tasks write (edited by hand?)")


def iter_records(path: Path, limit: int | None = None) -> Iterable[dict[str, Any]]:
    """The ``oodd`` records of a samples file (lines without one are skipped); ReportError naming
    the line for one that is not JSON, over :data:`MAX_LINE_CHARS`, or a record of wrong types."""
    with path.open(encoding="utf-8-sig") as handle:
        number = 0
        while True:
            line = handle.readline(MAX_LINE_CHARS + 1)
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_CHARS:
                raise ReportError(f"{path}: line {number} is over {MAX_LINE_CHARS // 2**20} M characters: not a samples file of our tasks")
            if limit is not None and number > limit:
                return
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
            except json.JSONDecodeError as err:
                raise ReportError(f"{path}: line {number} is not JSON ({_one_line(err)}); a truncated file (a killed run)? Run the task again") from None
            record = sample.get("oodd") if isinstance(sample, dict) else None
            if isinstance(record, dict):
                _check_record(record, path, number)
                yield record


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every ``oodd`` record of a samples file; ReportError if the file is unreadable."""
    try:
        return list(iter_records(path))
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"cannot read {path}: {_one_line(err)}") from None
