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


def read_release_file(path: str | Path) -> Any:
    """Load one released file (a single JSON object), plain or gzipped."""
    path = resolve_release_file(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)
