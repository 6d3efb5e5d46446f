"""Documents: one row per image of a benchmark, as lmms-eval loads them.

A document is a flat dict (see :data:`DOCUMENT_FIELDS`). Images are NOT stored in documents: they are
opened lazily from the data root (``REGUIDE_DATA_ROOT``, default ``./data`` as in OpenOOD and the
release), so a document set of the full OpenOOD lists is paths only.
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reguide_tasks.data.benchmarks import ID_ROLES, Benchmark, get_benchmark
from reguide_tasks.data.release import normalize_image_path, read_release_file

DATA_ROOT_ENV = "REGUIDE_DATA_ROOT"
BAD_IMAGES_ENV = "REGUIDE_BAD_IMAGES"
BAD_IMAGE_POLICIES = ("fail", "exclude")
DEFAULT_DATA_ROOT = "./data"
DOCUMENT_FIELDS = ("doc_key", "image", "benchmark", "dataset", "role", "label", "label_name")


class DataError(RuntimeError):
    """Documents or images are not where they should be; the message says what to do."""


def data_root(override: str | os.PathLike | None = None) -> Path:
    """The folder holding ``images_classic/`` and ``images_largescale/`` (OpenOOD layout)."""
    return Path(override or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT).expanduser()


def make_document(benchmark: Benchmark, dataset: str, image_id: str, label_name: str = "") -> dict:
    path = normalize_image_path(image_id)
    root = benchmark.image_roots.get(dataset, "")
    if root and not path.startswith(("images_classic/", "images_largescale/")):
        path = f"{root}/{path}"
    role = benchmark.role(dataset)
    label = benchmark.classes.index(label_name) if role in ID_ROLES else -1
    return {
        "doc_key": path,
        "image": path,
        "benchmark": benchmark.name,
        "dataset": dataset,
        "role": role,
        "label": label,
        "label_name": label_name,
    }


def _ordered(benchmark: Benchmark, docs: Iterable[dict]) -> list[dict]:
    """ID first, then near, then far, each in the benchmark's dataset order; stable within."""
    order = {name: i for i, name in enumerate(benchmark.datasets)}
    return sorted(docs, key=lambda doc: order[doc["dataset"]])


# Bumped when the task-level order changes: lmms-eval's answer cache keys an answer by the document's
# position (doc_id) and the task's config, not by its image, so the order is part of the task config.
DOCUMENT_ORDER = "stratified-v1"
# Each document's index in its document set's own list (ID, near, far; each in its list's order),
# kept through the interleaving: the report restores that order, so per-document resampling (the
# bootstrap CIs) does not depend on the order a run asked in.
LIST_POSITION = "list_position"


def _classes_interleaved(docs: Sequence[Mapping]) -> list:
    """One dataset's documents with its classes (``label_name``) spread evenly, each class's own order
    kept: the ``j``-th of a class of ``n`` sits at ``(j + 0.5) / n`` (first class seen wins a tie)."""
    position: dict[str, int] = {}
    size = Counter(doc["label_name"] for doc in docs)
    rank = {name: i for i, name in enumerate(size)}
    keyed = []
    for doc in docs:
        name = doc["label_name"]
        j = position[name] = position.get(name, -1) + 1
        keyed.append(((j + 0.5) / size[name], rank[name], doc))
    keyed.sort(key=lambda item: item[:2])
    return [doc for _, _, doc in keyed]


def interleave_by_dataset(docs: Sequence[Mapping]) -> list:
    """The documents in task order, stratified: every prefix holds each dataset in proportion to its
    size (within one document), and within a dataset its classes in proportion too.

    Tijdeman's chairman assignment (1980): with ``D`` datasets and ``delta = 1 - 1 / (2 (D - 1))``,
    position ``k`` (from 1) goes, among the datasets at least ``1 - delta`` below their share
    ``k * n / N``, to the one whose next document is due first (smallest ``(taken + delta) / share``).
    Every prefix of ``k`` documents then holds ``k * n / N`` +- ``delta`` (< 1) documents of every
    dataset of ``n``: ``--limit k`` gives ID and every OoD set their share instead of the first ``k`` ID
    images. Within a dataset its classes are spread evenly (:func:`_classes_interleaved`; the
    authors' lists are grouped by class; a dataset without labels keeps its order). Deterministic (no random draw, so no seed to
    record): the same documents give the same order on every machine and route. The same set of
    documents, so a full run's figures do not change.

    >>> order = interleave_by_dataset([{"dataset": "id", "label_name": c} for c in "aabb"]
    ...                               + [{"dataset": "x", "label_name": ""}] * 2 + [{"dataset": "y", "label_name": ""}] * 2)
    >>> [(d["dataset"], d["label_name"]) for d in order]
    [('id', 'a'), ('x', ''), ('y', ''), ('id', 'b'), ('id', 'a'), ('x', ''), ('y', ''), ('id', 'b')]
    """
    by_dataset: dict[str, list] = {}
    for doc in docs:
        by_dataset.setdefault(doc["dataset"], []).append(doc)
    queues = [_classes_interleaved(members) for members in by_dataset.values()]
    total = len(docs)
    delta = 1 - 1 / (2 * (len(queues) - 1)) if len(queues) > 1 else 0.5
    taken = [0] * len(queues)
    order = []
    for k in range(1, total + 1):
        best, due = -1, math.inf
        for d, queue in enumerate(queues):
            share = len(queue) / total
            if taken[d] < len(queue) and k * share - taken[d] >= 1 - delta - 1e-9 and (taken[d] + delta) / share < due - 1e-12:
                best, due = d, (taken[d] + delta) / share
        if best < 0:  # never met (the theorem), but never lose a document over rounding
            best = next(d for d, queue in enumerate(queues) if taken[d] < len(queue))
        order.append(queues[best][taken[best]])
        taken[best] += 1
    return order


def subset_documents(benchmark_name: str, subset: str) -> list[dict]:
    """Documents of one of the authors' released subsets (``subset25``, ``subset5``)."""
    benchmark = get_benchmark(benchmark_name)
    released = read_release_file(benchmark.subset_path(subset))
    docs = []
    for released_name, images in released.items():
        dataset = benchmark.release_names.get(released_name, released_name)
        if isinstance(images, dict):
            for label_name, ids in images.items():
                docs.extend(make_document(benchmark, dataset, image_id, str(label_name)) for image_id in ids)
        else:
            docs.extend(make_document(benchmark, dataset, image_id) for image_id in images)
    return _ordered(benchmark, docs)


def parse_imglist_line(line: str) -> tuple[str, str] | None:
    """``'<path> <label>'`` -> (path, label); a blank line -> None. Paths may not contain spaces."""
    parts = line.split()
    if not parts:
        return None
    return parts[0], (parts[1] if len(parts) > 1 else "")


def full_documents(benchmark_name: str, imglist_dir: str | os.PathLike) -> list[dict]:
    """Documents of the benchmark's full test lists, e.g. OpenOOD v1.5's ``benchmark_imglist/<benchmark>/``.

    ``imglist_dir`` is the folder holding the image list of every dataset of the benchmark
    (:meth:`Benchmark.imglist_name`, ``test_<dataset>.txt`` by default; OpenOOD's download script
    puts them at ``data/benchmark_imglist/<benchmark>``). ID labels in the lists (the ID test set and
    covariate-shifted sets) are class indices in the same order as :attr:`Benchmark.classes`.
    """
    benchmark = get_benchmark(benchmark_name)
    imglist_dir = Path(imglist_dir)
    missing = [benchmark.imglist_name(d) for d in benchmark.datasets if not (imglist_dir / benchmark.imglist_name(d)).is_file()]
    if missing:
        where = f"the folder {benchmark.source} names" if benchmark.imglist_dir else "OpenOOD's download script (it writes data/benchmark_imglist/)"
        raise DataError(
            f"image lists of {benchmark.name} missing in {imglist_dir}: {', '.join(missing)}. "
            f"Put them there ({where}), or pass the folder that holds them."
        )
    classes = benchmark.classes
    docs = []
    for dataset in benchmark.datasets:
        lines = (imglist_dir / benchmark.imglist_name(dataset)).read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            parsed = parse_imglist_line(line)
            if parsed is None:
                continue
            path, label = parsed
            label_name = ""
            if dataset in benchmark.id_datasets:
                try:
                    label_name = classes[int(label)]
                except (ValueError, IndexError):
                    raise DataError(f"{imglist_dir / benchmark.imglist_name(dataset)}:{number}: ID label {label!r} is not a class index 0..{len(classes) - 1}") from None
            docs.append(make_document(benchmark, dataset, path, label_name))
    return _ordered(benchmark, docs)


def stratum_share(size: int, percent: int) -> int:
    """How many of a stratum's ``size`` documents a seeded stratified ``percent``% keeps: ``size *
    percent / 100`` rounded half up, at least one."""
    return max(1, math.floor(size * percent / 100 + 0.5))


def stratified_documents(benchmark_name: str, percent: int, imglist_dir: str | os.PathLike) -> list[dict]:
    """A seeded stratified ``percent``% of :func:`full_documents`: per dataset, and per class within the
    ID sets, the documents whose ``sha256("<seed>:<doc_key>")`` is smallest, ``round(n * percent / 100)``
    of each stratum of ``n`` (at least one). Independent of the lists' line order and of the machine:
    the same lists give everyone the same subset."""
    import hashlib
    from collections import defaultdict

    benchmark = get_benchmark(benchmark_name)
    docs = full_documents(benchmark_name, imglist_dir)
    strata: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for doc in docs:
        strata[(doc["dataset"], doc["label"])].append(doc)

    def rank(doc: Mapping) -> str:
        return hashlib.sha256(f"{benchmark.seed}:{doc['doc_key']}".encode("utf-8")).hexdigest()

    chosen: set[str] = set()
    for members in strata.values():
        take = stratum_share(len(members), percent)
        chosen.update(doc["doc_key"] for doc in sorted(members, key=rank)[:take])
    return [doc for doc in docs if doc["doc_key"] in chosen]  # in the lists' order


def check_unique(docs: Sequence[Mapping]) -> None:
    """Duplicated documents would count an image twice in every metric: refuse them."""
    counts = Counter(doc["doc_key"] for doc in docs)
    duplicated = [key for key, n in counts.items() if n > 1]
    if duplicated:
        raise DataError(f"{len(duplicated)} duplicated documents, e.g. {duplicated[0]}: fix the document list (each image once).")


@dataclass(frozen=True)
class MissingImages:
    root: Path
    total: int
    missing_by_dataset: dict[str, int]
    examples: tuple[str, ...]

    @property
    def missing(self) -> int:
        return sum(self.missing_by_dataset.values())

    def message(self) -> str:
        if not self.root.is_dir():
            head = f"data root {self.root.resolve()} does not exist"
        else:
            head = f"{self.missing} of {self.total} images missing under data root {self.root.resolve()}"
        per_dataset = ", ".join(f"{name}: {n}" for name, n in self.missing_by_dataset.items())
        return (
            f"{head} ({per_dataset}); e.g. {', '.join(self.examples)}. "
            f"Set {DATA_ROOT_ENV} (or reguide-eval --data_root) to the folder holding images_classic/ and images_largescale/ "
            "(OpenOOD v1.5 layout), or write test images with reguide-make-fixtures."
        )


@functools.lru_cache(maxsize=4096)
def _real(path: str) -> str:
    return os.path.realpath(path)


def image_file(root: Path, doc: Mapping) -> Path:
    """``root / doc["image"]``; :class:`DataError` when that path leaves the data root: absolute, with
    a '..' part or a NUL, or through a link below the root's top-level folders that leads out of its
    folder (a top-level folder itself, ``images_classic`` say, may be a link to another disk)."""
    image = str(doc["image"])
    parts = image.replace("\\", "/").split("/")
    path = root / image
    escapes = not image or image.startswith(("/", "\\")) or os.path.isabs(image) or ".." in parts or "\0" in image
    if not escapes and len(parts) > 1:
        top = _real(str(root / parts[0]))
        # the folder, resolved once per folder; the file itself only when it is a link (one lstat)
        real = os.path.realpath(path) if os.path.islink(path) else os.path.join(_real(os.path.dirname(path)), parts[-1])
        escapes = not real.startswith(top + os.sep)
    if escapes:
        raise DataError(
            f"document {doc.get('doc_key', image)!r} ({doc.get('dataset', '?')}): its image path {image!r} leaves the data root {root} "
            "(an absolute path, a '..' or a link out of its folder): refused. Fix that entry of the image list or document file."
        )
    return path


def find_missing_images(docs: Sequence[Mapping], root: Path | None = None) -> MissingImages:
    root = data_root(root)
    missing: Counter[str] = Counter()
    examples: list[str] = []
    root_exists = root.is_dir()
    for doc in docs:
        if not root_exists or not image_file(root, doc).is_file():
            missing[doc["dataset"]] += 1
            if len(examples) < 3:
                examples.append(str(root / doc["image"]))
    return MissingImages(root, len(docs), dict(missing), tuple(examples))


def require_images(docs: Sequence[Mapping], root: Path | None = None) -> None:
    """Raise :class:`DataError` naming how many images of which dataset are missing, and where."""
    report = find_missing_images(docs, root)
    if report.missing:
        raise DataError(report.message())


def load_image(doc: Mapping, root: Path | None = None):
    """Open the document's image as RGB; a missing or corrupt file raises DataError naming the doc."""
    from PIL import Image, UnidentifiedImageError

    path = image_file(data_root(root or doc.get("data_root") or None), doc)
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image of document {doc['doc_key']} not found at {path}; check {DATA_ROOT_ENV}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image of document {doc['doc_key']} at {path} is unreadable ({exc}); replace the file or remove the document") from None


def write_documents(docs: Iterable[Mapping], path: str | os.PathLike) -> Path:
    """Write documents as JSON lines (gzipped when the name ends in .gz); the file is replaced whole."""
    import gzip
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")  # renamed over path when complete
    try:
        with opener(partial, "wt", encoding="utf-8") as handle:
            for doc in docs:
                handle.write(json.dumps({field: doc[field] for field in DOCUMENT_FIELDS}, ensure_ascii=False) + "\n")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


MAX_DOCUMENT_LINE = 1024 * 1024


def read_documents(path: str | os.PathLike, root: Path | None = None) -> list[dict]:
    """Read a JSON-lines document file; a relative path is taken under the data root."""
    import gzip
    import zlib

    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = data_root(root) / path
    if not path.is_file():
        root_dir = data_root(root)
        where = f"the data root {root_dir} does not exist" if not root_dir.is_dir() else f"data root {root_dir}"
        raise DataError(
            f"document file {path} not found ({where}; set it with REGUIDE_DATA_ROOT or reguide-eval --data_root). "
            f"It holds one JSON document per line with the fields {', '.join(DOCUMENT_FIELDS)}: write your own, "
            f"or reguide-make-fixtures --data_root {root_dir} (synthetic test images and this file), "
            f"or reguide-build-documents --data_root {root_dir} --out {path} (OpenOOD's full lists)"
        )
    opener = gzip.open if path.name.endswith(".gz") else open
    docs: list[dict] = []
    number = 0
    redo = "write it again (reguide-build-documents or reguide-make-fixtures), or copy it again if it came from elsewhere"
    try:
        with opener(path, "rb") as handle:
            # lines read with a length limit: a document is a few hundred bytes, and a file with a
            # 200 MB line is refused without holding it in memory
            for raw in iter(lambda: handle.readline(MAX_DOCUMENT_LINE + 1), b""):
                number += 1
                if len(raw) > MAX_DOCUMENT_LINE:
                    raise DataError(f"{path}:{number}: over {MAX_DOCUMENT_LINE // 2**20} MB, not one document: is this a document file?")
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{path}:{number}: not UTF-8 text ({exc.reason} at byte {exc.start + 1} of the line): save it as UTF-8, or {redo}") from None
                if line.strip():
                    docs.append(_document_of(line, f"{path}:{number}"))
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read after line {number} ({exc or type(exc).__name__}): a truncated or corrupt file? {redo}") from None
    return docs


def _document_of(line: str, where: str) -> dict:
    """One line of a document file as a document, or a DataError naming ``where`` (file:line)."""
    import json

    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise DataError(f"{where}: not a JSON document ({exc}): fix or remove this line") from None
    if not isinstance(doc, dict):
        raise DataError(f"{where}: a JSON {type(doc).__name__}, not a document (an object with the fields {', '.join(DOCUMENT_FIELDS)}): fix or remove this line")
    absent = [f for f in DOCUMENT_FIELDS if f not in doc]
    if absent:
        raise DataError(f"{where}: document lacks {', '.join(absent)}: fix this line")
    wrong = [f"'{f}' is {type(doc[f]).__name__}" for f, kind in _FIELD_TYPES.items()
             if not isinstance(doc[f], kind) or isinstance(doc[f], bool)]
    if wrong:
        raise DataError(f"{where}: {', '.join(wrong)} ('label' is an integer, the other fields text): fix this line")
    return doc


_FIELD_TYPES = {**{f: str for f in DOCUMENT_FIELDS if f != "label"}, "label": int}


def bad_image_policy() -> str:
    """``fail`` (default: an unreadable image stops the run naming the document) or ``exclude``."""
    policy = os.environ.get(BAD_IMAGES_ENV, "fail")
    if policy not in BAD_IMAGE_POLICIES:
        raise DataError(f"{BAD_IMAGES_ENV}={policy!r}; choose one of {', '.join(BAD_IMAGE_POLICIES)}")
    return policy


def load_image_or_stand_in(doc: Mapping, root: Path | None = None) -> tuple[Any, str | None]:
    """``(image, None)`` from :func:`load_image`; under the ``exclude`` policy an unreadable image gives
    ``(1x1 stand-in, reason)`` so the caller can leave the document out of every metric."""
    try:
        return load_image(doc, root), None
    except DataError as exc:
        if bad_image_policy() != "exclude":
            raise
        from PIL import Image

        return Image.new("RGB", (1, 1)), str(exc)
