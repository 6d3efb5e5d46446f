"""Reading the authors' released files (daintlab/ReGuide, MIT).

Every released ``.jsonl`` is ONE pretty-printed JSON object. The project ships a gzipped sample of
them under ``reguide_tasks/data/reguide-release`` (upstream layout); a user's own copy of the full
release may be plain or gzipped. Image ids mix prefixes (``./data/images_classic/...``,
``/data/openood/images_classic/...``): :func:`normalize_image_path` keeps the stable part.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from pathlib import Path
from typing import Any

RELEASE_DIR = Path(__file__).resolve().parent / "reguide-release"

_STABLE_ROOTS = ("images_classic/", "images_largescale/")
_SLASHES = re.compile(r"/+")


def normalize_image_path(image_id: str) -> str:
    """Return the path from ``images_classic/`` or ``images_largescale/`` on, with '/' separators.

    Paths with neither root are returned stripped of a leading './' (they are taken as already
    relative to the data root).
    """
    path = _SLASHES.sub("/", image_id.strip().replace("\\", "/"))
    for root in _STABLE_ROOTS:
        at = path.find(root)
        if at == 0 or (at > 0 and path[at - 1] == "/"):
            return path[at:]
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


def resolve_release_file(path: str | Path) -> Path:
    """Find ``path`` as given, or its gzipped twin (``x.jsonl`` <-> ``x.jsonl.gz``)."""
    path = Path(path)
    if path.exists():
        return path
    twin = path.with_name(path.name[:-3]) if path.name.endswith(".gz") else path.with_name(path.name + ".gz")
    if twin.exists():
        return twin
    raise FileNotFoundError(f"no released file at {path} (nor {twin.name})")


# A released file is at most a few tens of MB (the full ImageNet200 lists' biggest, about 50 MB): a
# bigger one is no release file, and is refused before it is parsed (memory stays bounded).
MAX_RELEASE_BYTES = 512 * 1024 * 1024


class ReleaseError(ValueError):
    """A released file that cannot be read as the release's layout; the message names the file, the
    line or key, and what to do."""


def _no_duplicate_keys(path: Path):
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ReleaseError(f"{path}: key {key!r} appears twice in one object (a duplicated document id): fix or download the file again")
            out[key] = value
        return out

    return pairs


def read_release_file(path: str | Path) -> Any:
    """Load one released file (a single JSON object), plain or gzipped. :class:`ReleaseError` for a
    truncated or corrupt file (gzip or JSON, with the line and column), an empty one, one over
    :data:`MAX_RELEASE_BYTES`, or an object with a duplicated key. A UTF-8 BOM is accepted."""
    path = resolve_release_file(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read(MAX_RELEASE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; EOFError: a truncated gzip; zlib: corrupt data
        raise ReleaseError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); a truncated or corrupt download? Download it again") from None
    if len(raw) > MAX_RELEASE_BYTES:
        raise ReleaseError(f"{path}: over {MAX_RELEASE_BYTES // 2**20} MB (decompressed), no released file is that big: check the path")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReleaseError(f"{path}: not UTF-8 text (byte {exc.start}): a corrupt download? Download it again") from None
    if not text.strip():
        raise ReleaseError(f"{path}: empty; download it again")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys(path))
    except json.JSONDecodeError as exc:
        raise ReleaseError(f"{path}: not JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); a truncated download? Download it again") from None
