"""The answer cache's audit log checked before lmms-eval replays it (docs/security.md).

lmms-eval 0.7.3's response cache appends every answer to ``rank_<r>.audit.jsonl`` (then fsync), then
commits it to SQLite; when a cache is opened, lines whose key SQLite lacks are replayed into it.
Its replay skips an undecodable line without a word and inserts any other line as it is. Here,
before that replay (:func:`reguide_tasks.lmms.runtime.install_cache_audit_check`):

- a torn last line (a run killed while writing it) is cut off, and counted in a warning;
- every line is checked: its schema (the fields and their types), its ``cache_key`` recomputed from
  the request fields it holds, and its ``response_sha256`` (written beside each new line by
  :class:`ChecksummedAudit`) against its response. A line that fails is moved to
  ``<audit>.rejected.jsonl``, never replayed, and counted in a warning naming the reasons.

The answer asked again is the cost of a dropped line; nothing wrong is replayed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

CHECKSUM_FIELD = "response_sha256"
_FIELDS: dict[str, tuple[type, ...]] = {
    "cache_key": (str,), "request_type": (str,), "task_name": (str,), "doc_id": (int, str), "idx": (int,),
    "gen_kwargs": (str,), "response": (str,), "created_at": (int, float), "deterministic": (bool,),
}


def response_checksum(response: str) -> str:
    return hashlib.sha256(response.encode("utf-8", "surrogatepass")).hexdigest()


def line_problem(line: str, require_checksum: bool = False) -> str | None:
    """Why an audit line must not be replayed (``"not JSON"``, ``"schema"``, ``"cache key"``,
    ``"checksum"``), or None for a good line. ``require_checksum``: a line without one fails too
    (its log holds checksummed lines, so a missing one was taken out by hand)."""
    from lmms_eval.caching.response_cache import compute_cache_key

    try:
        record = json.loads(line)
    except ValueError:
        return "not JSON"
    if not isinstance(record, dict):
        return "schema"
    for field, types in _FIELDS.items():
        value = record.get(field)
        if field == "created_at" and value is None:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return "schema"
    checksum = record.get(CHECKSUM_FIELD)
    if checksum is None and require_checksum:
        return "checksum"
    if checksum is not None and checksum != response_checksum(record["response"]):
        return "checksum"
    if record["deterministic"] and record["cache_key"]:
        try:
            gen_kwargs = json.loads(record["gen_kwargs"])
        except ValueError:
            return "schema"
        expected = compute_cache_key(
            request_type=record["request_type"], task_name=record["task_name"], doc_id=record["doc_id"], gen_kwargs=gen_kwargs,
            idx=record["idx"], task_fingerprint=str(record.get("task_fingerprint") or ""), content_hash=str(record.get("content_hash") or ""),
            model_fingerprint_hash=str(record.get("model_fingerprint_hash") or ""), eval_version=str(record.get("eval_version") or ""),
        )
        if expected != record["cache_key"]:
            return "cache key"
    return None


def check_audit_log(path: str | os.PathLike) -> tuple[int, Counter]:
    """Cut a torn last line off ``path`` and move the lines that fail :func:`line_problem` to
    ``<path>.rejected.jsonl``; return (torn lines cut, rejected lines by reason)."""
    path = Path(path)
    if not path.is_file():
        return 0, Counter()
    data = path.read_bytes()
    torn = 0
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        torn = 1
    # Lines without a checksum pass only in a log that has none (written before ChecksummedAudit):
    # in one that has, a line without it lost it by hand (or came from plain lmms-eval: asked again).
    require_checksum = f'"{CHECKSUM_FIELD}"'.encode() in data
    kept, rejected, reasons = [], [], Counter()
    for raw in data.splitlines(keepends=True):
        text = raw.decode("utf-8", "replace")
        if not text.strip():
            continue
        problem = line_problem(text, require_checksum)
        if problem:
            reasons[problem] += 1
            rejected.append(raw)
        else:
            kept.append(raw)
    if torn or rejected:
        if rejected:
            with open(f"{path}.rejected.jsonl", "ab") as handle:
                handle.writelines(rejected)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(b"".join(kept))
        os.replace(tmp, path)
    return torn, reasons


class ChecksummedAudit:
    """The audit log file lmms-eval appends to, each JSON line written with its response's checksum."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, text: str) -> int:
        try:
            record = json.loads(text)
            if isinstance(record, dict) and isinstance(record.get("response"), str):
                record[CHECKSUM_FIELD] = response_checksum(record["response"])
                text = json.dumps(record, ensure_ascii=False) + "\n"
        except ValueError:
            pass
        return self._handle.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, close, closed
        return getattr(self._handle, name)
