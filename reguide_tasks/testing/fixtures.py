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

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.data.documents import (
    full_documents,
    subset_documents,
    write_documents,
)
from reguide_tasks.testing.label_code import (
    FIELD_BITS,
    MIN_SIDE,
    LabelCode,
    draw_label_code,
)
from reguide_tasks.vocab import custom_documents_path

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def custom_documents_file(root: Path, benchmark: str) -> Path:
    """Where the ``*_custom`` tasks read ``benchmark``'s documents under data root ``root``."""
    return Path(root) / custom_documents_path(benchmark)


def fixture_image(seed: int, size: int, code: LabelCode | None = None, colour_seed: int | None = None):
    """A deterministic RGB image: a colour gradient plus noise, different for every seed; with
    ``code``, the label code over its top half. ``colour_seed`` picks the gradient's colour
    (default: ``seed``), so images can share a colour and differ in noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    if colour_seed is not None:
        base = np.random.default_rng(colour_seed).uniform(0, 255, size=3).astype(np.float32)
    pixels = base[None, None, :] * ramp[:, None, None] + rng.normal(0, 25, size=(size, size, 3))
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    if code is not None:
        pixels = draw_label_code(pixels, code)
    return Image.fromarray(pixels, mode="RGB")


def _code_of(doc: dict, index: int) -> LabelCode | None:
    """The document's label code; None where it does not fit the code's bits (over 256 classes or 8
    datasets): such an image carries no code, and only the test server's answers need one."""
    try:
        return LabelCode.for_document(doc, index)
    except ValueError:
        return None


def make_fixture(root: str | Path, benchmark: str, per_dataset: int = 2, subset: str | None = None, size: int = 32) -> list[dict]:
    """Write the images and the document file; return the documents. They are the first
    ``per_dataset`` of each dataset of a released subset (default: the ReGuide default), or, for a
    benchmark without one, of its image lists (a user's file names them; OpenOOD's under ``root``)."""
    root = Path(root)
    bench = get_benchmark(benchmark)
    subset = subset or bench.default_subset["reguide"]
    source = subset_documents(benchmark, subset) if subset in bench.subsets else full_documents(benchmark, bench.default_imglist_dir(root))
    taken: dict[str, list[dict]] = defaultdict(list)
    for doc in source:
        if len(taken[doc["dataset"]]) < per_dataset:
            taken[doc["dataset"]].append(doc)
    docs = [doc for group in taken.values() for doc in group]
    for index, doc in enumerate(docs):
        path = root / doc["image"]
        path.parent.mkdir(parents=True, exist_ok=True)
        image_format = FORMATS.get(path.suffix.lower(), "PNG")
        code = _code_of(doc, index) if size >= MIN_SIDE else None  # too small to carry one
        fixture_image(index, size, code).save(path, format=image_format)
    write_documents(docs, custom_documents_file(root, benchmark))
    return docs


def make_train_fixture(root: str | Path, benchmark: str, per_class: int = 4, size: int = 32) -> Path:
    """Write ``per_class`` label-coded training images of every ID class and OpenOOD's training list
    for them (``benchmark_imglist/<benchmark>/train_<id dataset>.txt``); return the list's path.

    Images go to ``<image root>/<id dataset>/train/<class index>/<n>.png``. Their codes carry the
    class index like the test images'; their gradients have one colour per class (noise differs per
    image), so even a random-weight CLIP sees the classes apart and a prompt learner has something
    to learn.
    """
    from reguide_tasks.data.train_lists import train_list_path

    bench = get_benchmark(benchmark)
    root = Path(root)
    image_root = bench.image_roots[bench.id_dataset]
    lines = []
    for label in range(len(bench.classes)):
        for n in range(per_class):
            relative = f"{bench.id_dataset}/train/{label:03d}/{n:04d}.png"
            path = root / image_root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            index = label * per_class + n
            fits = size >= MIN_SIDE and label < 2 ** FIELD_BITS["label"]  # ImageNet-1K's classes past 255: colour only
            code = LabelCode("id", 0, label, n % 256) if fits else None
            fixture_image(1_000_003 + index, size, code, colour_seed=label).save(path, format="PNG")
            lines.append(f"{relative} {label}")
    list_path = train_list_path(bench, root)
    list_path.parent.mkdir(parents=True, exist_ok=True)
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list_path
