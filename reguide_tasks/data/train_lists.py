"""OpenOOD's ID training lists and the k-shot draw that prompt learning (``reguide-clip-train``) trains on.

OpenOOD v1.5 lists a benchmark's ID training images in
``<data root>/benchmark_imglist/<benchmark>/train_<id dataset>.txt`` (``cifar10/train_cifar10.txt``,
``imagenet200/train_imagenet200.txt``, ``imagenet/train_imagenet.txt``; the folder is the
benchmark's image-list folder, :meth:`~reguide_tasks.data.benchmarks.Benchmark.default_imglist_dir`): one ``<path> <class index>`` per line, the path relative to the ID
dataset's image root (``images_classic/`` or ``images_largescale/``), the index in the order of
:attr:`~reguide_tasks.data.benchmarks.Benchmark.classes`. Training images become documents like the
test images (role ``id``), so the image checks and loaders of :mod:`reguide_tasks.data.documents`
apply to them unchanged.

The k-shot draw: per class, ``shots`` images drawn without replacement by ``random.Random(seed)``
from that class's images in list order, classes taken in class order; the same list, shots and seed
give the same images on every machine.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

from reguide_tasks.data.benchmarks import Benchmark, get_benchmark
from reguide_tasks.data.documents import (
    DataError,
    data_root,
    image_file,
    make_document,
    parse_imglist_line,
)


def train_list_path(benchmark: Benchmark, root: str | os.PathLike | None = None) -> Path:
    """Where OpenOOD keeps the benchmark's ID training list under the data root."""
    return benchmark.default_imglist_dir(data_root(root)) / f"train_{benchmark.id_dataset}.txt"


def train_documents(benchmark_name: str, root: str | os.PathLike | None = None, list_path: str | os.PathLike | None = None) -> list[dict]:
    """Documents of every image in the training list (``list_path``, default :func:`train_list_path`)."""
    benchmark = get_benchmark(benchmark_name)
    path = Path(list_path) if list_path else train_list_path(benchmark, root)
    if not path.is_file():
        raise DataError(
            f"training list {path} not found. It is OpenOOD v1.5's {path.parent.name}/{path.name} "
            "('<path> <class index>' per line, in benchmark_imglist/): run OpenOOD's download script "
            "into the data root, pass --train_list, or write synthetic training images with "
            "reguide-make-fixtures --train-per-class N"
        )
    classes = benchmark.classes
    docs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parsed = parse_imglist_line(line)
        if parsed is None:
            continue
        image, label = parsed
        try:
            index = int(label)
            if not 0 <= index < len(classes):
                raise ValueError(label)
        except ValueError:
            raise DataError(f"{path}:{number}: label {label!r} is not a class index 0..{len(classes) - 1} of {benchmark.name}") from None
        docs.append(make_document(benchmark, benchmark.id_dataset, image, classes[index]))
    if not docs:
        raise DataError(f"training list {path} lists no images")
    return docs


def sample_k_shot(docs: Sequence[dict], classes: Sequence[str], shots: int, seed: int) -> list[dict]:
    """``shots`` documents per class (see the module docstring); DataError when a class has fewer."""
    if shots < 1:
        raise DataError(f"shots must be >= 1, not {shots}")
    per_class: list[list[dict]] = [[] for _ in classes]
    for doc in docs:
        per_class[doc["label"]].append(doc)
    smallest = min(range(len(classes)), key=lambda k: len(per_class[k]))
    if len(per_class[smallest]) < shots:
        short = sum(len(images) < shots for images in per_class)
        raise DataError(
            f"{shots}-shot training needs {shots} images of every class; {short} of the {len(classes)} classes have fewer, "
            f"the smallest ({classes[smallest]!r}) has {len(per_class[smallest])}. "
            f"Choose --shots {len(per_class[smallest])} or fewer, or complete the training list"
        )
    rng = random.Random(seed)
    return [doc for images in per_class for doc in rng.sample(images, shots)]


def require_readable(docs: Sequence[dict], root: str | os.PathLike | None = None) -> None:
    """Decode every image of ``docs`` (the k-shot draw: few); DataError naming each file that fails.

    Run before training, so a corrupt or truncated file is one clear error, not a crash mid-epoch.
    Truncated files count as unreadable even where PIL was told to pad them (lmms-eval sets
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` on import): a half-grey image is no training image.
    """
    from PIL import Image, ImageFile

    base = data_root(root)
    bad = []
    tolerant, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        for doc in docs:
            path = image_file(base, doc)
            try:
                with Image.open(path) as image:
                    image.convert("RGB")  # a full decode: a truncated file opens fine and fails here
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                bad.append(f"{path} ({exc})")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
    if bad:
        shown = "; ".join(bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise DataError(f"{len(bad)} of {len(docs)} k-shot training images cannot be read: {shown}. "
                        "Replace these files, or take them off the training list (the draw then picks others)")
