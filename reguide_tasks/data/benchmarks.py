"""What a benchmark is: OpenOOD v1.5 ID / near-OoD / far-OoD datasets, class names, document sets.

Dataset names follow OpenOOD v1.5 (``tin``, ``textures`` for ImageNet200, ``openimage_o``); the
authors' released lists use a few other names (``tiny_imagenet``, ``texture``), mapped here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from reguide_tasks.data.release import RELEASE_DIR

_CLASSES_DIR = Path(__file__).resolve().parent / "classes"


@dataclass(frozen=True)
class Benchmark:
    """One OpenOOD v1.5 benchmark.

    ``image_roots`` gives, per dataset, the folder under the data root its OpenOOD imglist paths are
    relative to (``images_classic`` or ``images_largescale``).
    ``subsets`` maps a document-set name to the authors' released image list (package data).
    ``release_names`` maps the names used in the authors' lists to ours.
    """

    name: str
    id_dataset: str
    near: tuple[str, ...]
    far: tuple[str, ...]
    image_roots: dict[str, str]
    subsets: dict[str, str]
    release_names: dict[str, str] = field(default_factory=dict)

    @property
    def ood_datasets(self) -> tuple[str, ...]:
        return self.near + self.far

    @property
    def datasets(self) -> tuple[str, ...]:
        return (self.id_dataset,) + self.ood_datasets

    @property
    def classes(self) -> tuple[str, ...]:
        return id_classes(self.name)

    def role(self, dataset: str) -> str:
        """'id', 'near' or 'far'; ValueError for a dataset not in the benchmark."""
        if dataset == self.id_dataset:
            return "id"
        if dataset in self.near:
            return "near"
        if dataset in self.far:
            return "far"
        raise ValueError(f"{dataset!r} is not a dataset of {self.name} (known: {', '.join(self.datasets)})")

    def subset_path(self, subset: str) -> Path:
        try:
            return RELEASE_DIR / self.subsets[subset]
        except KeyError:
            raise ValueError(f"{self.name} has no released subset {subset!r} (known: {', '.join(self.subsets)}, or 'full')") from None

    def imglist_name(self, dataset: str) -> str:
        """File name of the dataset's list in OpenOOD's ``benchmark_imglist/<benchmark>/``."""
        return f"test_{dataset}.txt"


CIFAR10 = Benchmark(
    name="cifar10",
    id_dataset="cifar10",
    near=("cifar100", "tin"),
    far=("mnist", "svhn", "texture", "places365"),
    image_roots={d: "images_classic" for d in ("cifar10", "cifar100", "tin", "mnist", "svhn", "texture", "places365")},
    subsets={"subset25": "dataset/cifar10/subset25.jsonl.gz"},
    release_names={"tiny_imagenet": "tin"},
)

IMAGENET200 = Benchmark(
    name="imagenet200",
    id_dataset="imagenet200",
    near=("ssb_hard", "ninco"),
    far=("inaturalist", "textures", "openimage_o"),
    image_roots={
        "imagenet200": "images_largescale",
        "ssb_hard": "images_largescale",
        "ninco": "images_largescale",
        "inaturalist": "images_largescale",
        "textures": "images_classic",
        "openimage_o": "images_largescale",
    },
    subsets={"subset25": "dataset/imagenet200/subset25.jsonl.gz", "subset5": "dataset/imagenet200/subset5.jsonl.gz"},
    release_names={"texture": "textures"},
)

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (CIFAR10, IMAGENET200)}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})") from None


@cache
def id_classes(benchmark: str) -> tuple[str, ...]:
    """The ID class names, in the order (and spelling) of the authors' prompts."""
    path = _CLASSES_DIR / f"{benchmark}.txt"
    if not path.exists():
        raise ValueError(f"unknown benchmark {benchmark!r} (known: {', '.join(BENCHMARKS)})")
    return tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line)
