"""Synthetic image trees in the OpenOOD layout, for tests and for trying the harness without the data.

:func:`make_fixture` takes the first ``per_dataset`` documents of every dataset of a document set,
writes a real image file at each document's path under ``root`` (PNG or JPEG by the path's
extension; deterministic content) and the documents themselves to
``root/reguide_documents/<benchmark>.jsonl``, which the ``*_custom`` tasks read.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from reguide_tasks.data.documents import subset_documents, write_documents
from reguide_tasks.vocab import custom_documents_path

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def custom_documents_file(root: Path, benchmark: str) -> Path:
    """Where the ``*_custom`` tasks read ``benchmark``'s documents under data root ``root``."""
    return Path(root) / custom_documents_path(benchmark)


def fixture_image(seed: int, size: int):
    """A deterministic RGB image: a colour gradient plus noise, different for every seed."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    pixels = base[None, None, :] * ramp[:, None, None] + rng.normal(0, 25, size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def make_fixture(root: str | Path, benchmark: str, per_dataset: int = 2, subset: str | None = None, size: int = 32) -> list[dict]:
    """Write the images and the document file; return the documents."""
    root = Path(root)
    subset = subset or ("subset5" if benchmark == "imagenet200" else "subset25")
    taken: dict[str, list[dict]] = defaultdict(list)
    for doc in subset_documents(benchmark, subset):
        if len(taken[doc["dataset"]]) < per_dataset:
            taken[doc["dataset"]].append(doc)
    docs = [doc for group in taken.values() for doc in group]
    for index, doc in enumerate(docs):
        path = root / doc["image"]
        path.parent.mkdir(parents=True, exist_ok=True)
        image_format = FORMATS.get(path.suffix.lower(), "PNG")
        fixture_image(index, size).save(path, format=image_format)
    write_documents(docs, custom_documents_file(root, benchmark))
    return docs
