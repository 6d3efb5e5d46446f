"""Synthetic image trees in the OpenOOD layout, for tests and for trying the harness without the data.

:func:`make_fixture` takes the first ``per_dataset`` documents of every dataset of a document set,
writes a real image file at each document's path under ``root`` (PNG or JPEG by the path's
extension; deterministic content) and the documents themselves to
``root/reguide_documents/<benchmark>.jsonl``, which the ``*_custom`` tasks read.

Each image carries its document's label as a code of black and white cells over its top half
(:mod:`reguide_tasks.testing.label_code`: role, dataset, ID class, fixture index), which the test
server reads back to answer like a model of a chosen quality; the bottom half is a colour gradient
plus noise, different for every image. The code is read reliably from 32 px (the default) up.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from reguide_tasks.data.documents import subset_documents, write_documents
from reguide_tasks.testing.label_code import MIN_SIDE, LabelCode, draw_label_code
from reguide_tasks.vocab import custom_documents_path

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def custom_documents_file(root: Path, benchmark: str) -> Path:
    """Where the ``*_custom`` tasks read ``benchmark``'s documents under data root ``root``."""
    return Path(root) / custom_documents_path(benchmark)


def fixture_image(seed: int, size: int, code: LabelCode | None = None):
    """A deterministic RGB image: a colour gradient plus noise, different for every seed; with
    ``code``, the label code over its top half."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    pixels = base[None, None, :] * ramp[:, None, None] + rng.normal(0, 25, size=(size, size, 3))
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    if code is not None:
        pixels = draw_label_code(pixels, code)
    return Image.fromarray(pixels, mode="RGB")


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
        code = LabelCode.for_document(doc, index) if size >= MIN_SIDE else None  # too small to carry one
        fixture_image(index, size, code).save(path, format=image_format)
    write_documents(docs, custom_documents_file(root, benchmark))
    return docs
