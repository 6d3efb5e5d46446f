"""What a benchmark is, read from its declarative file: ID / near-OoD / far-OoD datasets, class names,
image lists, document sets.

A benchmark is one YAML file (``reguide_tasks/data/benchmark_files/<name>.yaml`` for the shipped ones:
OpenOOD v1.5's CIFAR10, CIFAR100, ImageNet200 and ImageNet-1K); this module loads and validates them
(:func:`load_benchmark_file`, every error naming the field) and keeps the registry
(:data:`BENCHMARKS`, :func:`get_benchmark`). A user's own file is registered by
``reguide-eval --benchmark FILE``, by the environment variable :data:`BENCHMARK_FILES_ENV` (files
separated by ``os.pathsep``) or by :func:`register_benchmark_file`. docs/benchmarks.md describes
every field. It is one module: the dataclass, the file format that fills it and the registry of what
was read change together.

A benchmark with covariate-shifted ID sets (role ``csid``) also gets its full-spectrum view,
``<name>_fsood`` (:meth:`Benchmark.fsood_view`): the same classes, with the shifted sets counted as
ID for AUROC / FPR (OpenOOD v1.5's FSOOD) and an ID accuracy of their own.

Dataset names follow OpenOOD v1.5 (``tin``, ``textures`` for ImageNet, ``openimage_o``); the
authors' released lists use a few other names (``tiny_imagenet``, ``texture``), mapped by a file's
``aliases``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from reguide_tasks.data.release import RELEASE_DIR

BENCHMARK_FILES_DIR = Path(__file__).resolve().parent / "benchmark_files"
BENCHMARK_FILES_ENV = "REGUIDE_BENCHMARKS"
ROLES = ("id", "near", "far", "csid")
ID_ROLES = ("id", "csid")  # the ID side of every OoD metric
STAGES = ("baseline", "reguide")
FSOOD_SUFFIX = "_fsood"
DEFAULT_STRATIFIED = (5, 25)
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_RESERVED_DATASETS = ("near", "far", "all", "id")  # metric targets of their own (auroc_near, fail_rate_all, ...)


class BenchmarkError(ValueError):
    """A benchmark file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark, as its file declares it.

    ``image_roots`` gives, per dataset, the folder under the data root its image-list paths are
    relative to (``images_classic`` or ``images_largescale`` for OpenOOD; "" for paths relative to the
    data root itself). ``subsets`` maps a released document-set name to the authors' image list
    (package data); ``stratified`` lists the percentages offered as seeded stratified subsets
    (``stratified<pct>``, for benchmarks without a released one). ``release_names`` maps other names
    of a dataset (the authors' lists) to ours. ``shifted`` are the covariate-shifted ID sets the
    full-spectrum view adds; in that view they are ``csid`` and ``fsood_of`` names the benchmark.
    """

    name: str
    id_dataset: str
    near: tuple[str, ...]
    far: tuple[str, ...]
    image_roots: dict[str, str]
    subsets: dict[str, str]
    release_names: dict[str, str] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    csid: tuple[str, ...] = ()
    shifted: tuple[str, ...] = ()
    imglists: dict[str, str] = field(default_factory=dict)
    imglist_folder: str = ""
    imglist_dir: str = ""  # absolute: the file named the folder of its lists ("" = OpenOOD's, under the data root)
    sizes: dict[str, int] = field(default_factory=dict)
    stratified: tuple[int, ...] = ()
    seed: int = 0
    default_subset: dict[str, str] = field(default_factory=dict)
    max_new_tokens: int = 1024
    examples: str = ""  # "released" | a file path | "" (generated, seeded by the name)
    description: str = ""
    source: str = ""  # the file it was read from
    fsood_of: str = ""
    shipped: bool = False

    @property
    def ood_datasets(self) -> tuple[str, ...]:
        return self.near + self.far

    @property
    def id_datasets(self) -> tuple[str, ...]:
        """The ID side: the ID test set, then (full-spectrum view) the covariate-shifted sets."""
        return (self.id_dataset,) + self.csid

    @property
    def datasets(self) -> tuple[str, ...]:
        return self.id_datasets + self.ood_datasets

    @property
    def classes(self) -> tuple[str, ...]:
        return self.class_names

    @property
    def prompt_name(self) -> str:
        """The benchmark whose prompt examples this one uses (a full-spectrum view: its benchmark's)."""
        return self.fsood_of or self.name

    def role(self, dataset: str) -> str:
        """'id', 'csid', 'near' or 'far'; ValueError for a dataset not in the benchmark."""
        if dataset == self.id_dataset:
            return "id"
        if dataset in self.csid:
            return "csid"
        if dataset in self.near:
            return "near"
        if dataset in self.far:
            return "far"
        raise ValueError(f"{dataset!r} is not a dataset of {self.name} (known: {', '.join(self.datasets)})")

    def subset_path(self, subset: str) -> Path:
        try:
            return RELEASE_DIR / self.subsets[subset]
        except KeyError:
            raise ValueError(f"{self.name} has no released subset {subset!r} (known: {', '.join(self.subsets) or 'none'}, or 'full')") from None

    def imglist_name(self, dataset: str) -> str:
        """File name of the dataset's image list (OpenOOD: ``test_<dataset>.txt`` in ``benchmark_imglist/<folder>/``)."""
        return self.imglists.get(dataset, f"test_{dataset}.txt")

    def default_imglist_dir(self, data_root: Path) -> Path:
        """Where the image lists are: the folder the file named, else OpenOOD's under the data root."""
        if self.imglist_dir:
            return Path(self.imglist_dir)
        return Path(data_root) / "benchmark_imglist" / (self.imglist_folder or self.name)

    def subset_names(self) -> list[str]:
        """Every document set of the benchmark's tasks: released, stratified, full, file."""
        return [*self.subsets, *(f"stratified{pct}" for pct in self.stratified), "full", "file"]

    def fsood_view(self) -> Benchmark | None:
        """The full-spectrum view (``<name>_fsood``), or None without covariate-shifted sets."""
        if not self.shifted:
            return None
        return replace(
            self,
            name=self.name + FSOOD_SUFFIX,
            csid=self.shifted,
            shifted=(),
            subsets={},
            stratified=self.stratified or DEFAULT_STRATIFIED,
            default_subset=dict.fromkeys(STAGES, "full"),
            fsood_of=self.name,
            description=f"{self.description or self.name}: full-spectrum (covariate-shifted {', '.join(self.shifted)} counted as ID)",
        )


def stratified_percent(subset: str) -> int | None:
    """``"stratified5"`` -> 5; None for any other document-set name."""
    match = re.fullmatch(r"stratified(\d+)", subset)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------- reading a file
_TOP_FIELDS = {
    "name", "description", "classes", "datasets", "imglist_folder", "imglist_dir", "released_subsets",
    "aliases", "stratified_subsets", "subset_seed", "default_subset", "max_new_tokens", "examples",
}
_DATASET_FIELDS = {"role", "root", "imglist", "images"}


def _fail(source: Path | str, where: str, problem: str) -> BenchmarkError:
    return BenchmarkError(f"benchmark file {source}: {where}: {problem}")


def _read_yaml(path: Path) -> Mapping:
    if not path.is_file():
        raise BenchmarkError(f"benchmark file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"benchmark file {path}: not valid YAML ({exc})") from None
    if not isinstance(data, Mapping):
        raise BenchmarkError(f"benchmark file {path}: must be a mapping of fields (name, classes, datasets, ...), not {type(data).__name__}")
    return data


def _read_classes(path: Path, value: Any) -> tuple[str, ...]:
    """``classes``: an inline list or a text file (one name per line) relative to the benchmark file."""
    if value is None:
        raise _fail(path, "classes", "missing: give the class list, inline (a YAML list) or a text file with one name per line")
    if isinstance(value, str):
        class_file = (path.parent / value).resolve()
        if not class_file.is_file():
            raise _fail(path, "classes", f"class list {class_file} not found")
        names = [line.strip() for line in class_file.read_text(encoding="utf-8").splitlines()]
        names = [name for name in names if name]
        origin = str(class_file)
    elif isinstance(value, list):
        if not all(isinstance(name, str) and name.strip() for name in value):
            raise _fail(path, "classes", "every class name must be a non-empty string")
        names = [name.strip() for name in value]
        origin = "the inline list"
    else:
        raise _fail(path, "classes", f"a list of names or a file name, not {type(value).__name__}")
    if not names:
        raise _fail(path, "classes", f"{origin} holds no class name")
    seen: dict[str, int] = {}
    for number, name in enumerate(names, 1):
        if name in seen:
            raise _fail(path, "classes", f"duplicate class {name!r} (entries {seen[name]} and {number} of {origin}): each class once")
        seen[name] = number
    from reguide_tasks.vocab import REJECTION_CLASS

    if REJECTION_CLASS in seen:
        raise _fail(path, "classes", f"{REJECTION_CLASS!r} is the rejection class every prompt adds; it cannot be an ID class")
    return tuple(names)


def _check_name(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise _fail(path, where, f"{value!r} is not a name (lower-case letters, digits and '_', starting with a letter)")
    return value


def _read_datasets(path: Path, value: Any) -> dict[str, dict]:
    if not isinstance(value, Mapping) or not value:
        raise _fail(path, "datasets", "missing: a mapping of dataset name -> {role: id | near | far | csid, root, imglist}")
    out = {}
    for name, spec in value.items():
        where = f"datasets.{name}"
        _check_name(path, where, name)
        if name in _RESERVED_DATASETS:
            raise _fail(path, where, f"{name!r} is a metric target of its own (auroc_near, fail_rate_all, ...): rename the dataset")
        if isinstance(spec, str):  # shorthand: `mnist: far`
            spec = {"role": spec}
        if not isinstance(spec, Mapping):
            raise _fail(path, where, "must be a mapping with at least a role")
        unknown = sorted(set(spec) - _DATASET_FIELDS)
        if unknown:
            raise _fail(path, f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(_DATASET_FIELDS))})")
        role = spec.get("role")
        if role not in ROLES:
            raise _fail(path, f"{where}.role", f"unknown dataset role {role!r} (one of {', '.join(ROLES)})")
        for key in ("root", "imglist"):
            if key in spec and not isinstance(spec[key], str):
                raise _fail(path, f"{where}.{key}", "must be a string")
        if "images" in spec and (isinstance(spec["images"], bool) or not isinstance(spec["images"], int) or spec["images"] < 1):
            raise _fail(path, f"{where}.images", "must be a positive number of images")
        out[name] = dict(spec)
    roles = [spec["role"] for spec in out.values()]
    if roles.count("id") != 1:
        raise _fail(path, "datasets", f"exactly one dataset has role id (found {roles.count('id')})")
    if not any(role in ("near", "far") for role in roles):
        raise _fail(path, "datasets", "no OoD dataset: give at least one dataset with role near or far")
    return out


def _read_mapping(path: Path, data: Mapping, key: str) -> dict[str, str]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _fail(path, key, "must be a mapping of names to names")
    return dict(value)


def _read_percentages(path: Path, value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, int) and not isinstance(p, bool) and 0 < p < 100 for p in value):
        raise _fail(path, "stratified_subsets", "a list of percentages between 1 and 99, e.g. [5, 25]")
    if len(set(value)) != len(value):
        raise _fail(path, "stratified_subsets", "a percentage appears twice")
    return tuple(value)


def load_benchmark_file(path: str | os.PathLike, *, shipped: bool = False, check_lists: bool | None = None) -> Benchmark:
    """Read and validate one benchmark file; :class:`BenchmarkError` names the field of any problem.

    ``check_lists`` (default: when the file names its own ``imglist_dir``) requires every dataset's
    image list to exist now, before any model loads; OpenOOD's lists under the data root are checked
    when a task needs them.
    """
    path = Path(path).expanduser().resolve()
    data = _read_yaml(path)
    unknown = sorted(set(data) - _TOP_FIELDS)
    if unknown:
        raise _fail(path, unknown[0], f"unknown field (known: {', '.join(sorted(_TOP_FIELDS))})")
    name = _check_name(path, "name", data.get("name"))
    if name.endswith(FSOOD_SUFFIX):
        raise _fail(path, "name", f"names ending in {FSOOD_SUFFIX!r} are the full-spectrum views: choose another")
    classes = _read_classes(path, data.get("classes"))
    datasets = _read_datasets(path, data.get("datasets"))
    by_role = {role: tuple(d for d, spec in datasets.items() if spec["role"] == role) for role in ROLES}

    subsets = _read_mapping(path, data, "released_subsets")
    for subset, rel in subsets.items():
        if not (RELEASE_DIR / rel).is_file():
            raise _fail(path, f"released_subsets.{subset}", f"{RELEASE_DIR / rel} not found (released subsets are the authors' files under {RELEASE_DIR})")
    aliases = _read_mapping(path, data, "aliases")
    for other, ours in aliases.items():
        if ours not in datasets:
            raise _fail(path, f"aliases.{other}", f"{ours!r} is not one of the datasets ({', '.join(datasets)})")
    stratified = _read_percentages(path, data.get("stratified_subsets"))
    if "stratified_subsets" not in data and not subsets:  # no released subset: offer the seeded ones
        stratified = DEFAULT_STRATIFIED
    seed = data.get("subset_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _fail(path, "subset_seed", "must be an integer")
    tokens = data.get("max_new_tokens", 1024)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise _fail(path, "max_new_tokens", "must be a positive integer")

    offered = [*subsets, *(f"stratified{pct}" for pct in stratified), "full"]
    default = data.get("default_subset") or {}
    if isinstance(default, str):
        default = dict.fromkeys(STAGES, default)
    if not isinstance(default, Mapping) or set(default) - set(STAGES):
        raise _fail(path, "default_subset", f"a document set, or a mapping of {' / '.join(STAGES)} to one")
    default = {stage: str(default.get(stage, "full")) for stage in STAGES}
    for stage, subset in default.items():
        if subset not in offered:
            raise _fail(path, f"default_subset.{stage}", f"{subset!r} is none of the benchmark's document sets ({', '.join(offered)})")

    examples = data.get("examples") or ""
    if not isinstance(examples, str):
        raise _fail(path, "examples", "'released' or a file of example answers")
    if examples and examples != "released":
        example_file = (path.parent / examples).resolve()
        if not example_file.is_file():
            raise _fail(path, "examples", f"{example_file} not found")
        examples = str(example_file)

    imglist_dir = data.get("imglist_dir") or ""
    if not isinstance(imglist_dir, str):
        raise _fail(path, "imglist_dir", "must be a folder name")
    imglist_dir = str((path.parent / imglist_dir).resolve()) if imglist_dir else ""
    folder = data.get("imglist_folder") or name
    if not isinstance(folder, str):
        raise _fail(path, "imglist_folder", "must be a folder name")

    bench = Benchmark(
        name=name,
        id_dataset=by_role["id"][0],
        near=by_role["near"],
        far=by_role["far"],
        image_roots={d: str(spec.get("root", "")).strip("/") for d, spec in datasets.items()},
        subsets=subsets,
        release_names=aliases,
        class_names=classes,
        shifted=by_role["csid"],
        imglists={d: spec["imglist"] for d, spec in datasets.items() if "imglist" in spec},
        imglist_folder=folder,
        imglist_dir=imglist_dir,
        sizes={d: spec["images"] for d, spec in datasets.items() if "images" in spec},
        stratified=stratified,
        seed=seed,
        default_subset=default,
        max_new_tokens=tokens,
        examples=examples,
        description=str(data.get("description") or ""),
        source=str(path),
        shipped=shipped,
    )
    if check_lists if check_lists is not None else bool(imglist_dir):
        for dataset in bench.id_datasets + bench.shifted + bench.ood_datasets:
            listed = Path(bench.default_imglist_dir(Path("."))) / bench.imglist_name(dataset)
            if not listed.is_file():
                where = f"datasets.{dataset}.imglist" if dataset in bench.imglists else "imglist_dir"
                raise _fail(path, where, f"image list not found: {listed} (one line per image: '<path> <label>', the label a class index for ID sets)")
    return bench


# ---------------------------------------------------------------- the registry
# The order of tables, listings and task folders: the paper's two benchmarks first, as before; a file
# added to benchmark_files/ and not named here comes after these.
SHIPPED_ORDER = ("cifar10", "imagenet200", "cifar100", "imagenet1k")


def _shipped() -> dict[str, Benchmark]:
    """The shipped benchmark files, each followed by its full-spectrum view."""
    rank = {name: i for i, name in enumerate(SHIPPED_ORDER)}
    found: dict[str, Benchmark] = {}
    for path in sorted(BENCHMARK_FILES_DIR.glob("*.yaml"), key=lambda p: (rank.get(p.stem, len(rank)), p.stem)):
        bench = load_benchmark_file(path, shipped=True)
        found.update({one.name: one for one in (bench, bench.fsood_view()) if one is not None})
    return found


BENCHMARKS: dict[str, Benchmark] = _shipped()
CIFAR10 = BENCHMARKS["cifar10"]
IMAGENET200 = BENCHMARKS["imagenet200"]


def register_benchmark(bench: Benchmark) -> list[Benchmark]:
    """Add a benchmark (and its full-spectrum view) to :data:`BENCHMARKS`; return what was added.
    The same file registered twice is fine; another benchmark under a taken name is an error."""
    added = []
    for one in (bench, bench.fsood_view()):
        if one is None:
            continue
        known = BENCHMARKS.get(one.name)
        if known is not None and replace(known, source="") != replace(one, source=""):  # the same, copied elsewhere: fine
            what = "a shipped benchmark" if known.shipped else f"the benchmark of {known.source}"
            raise _fail(bench.source, "name", f"{one.name!r} is already {what}: choose another name")
        BENCHMARKS[one.name] = one
        added.append(one)
    return added


def register_benchmark_file(path: str | os.PathLike) -> Benchmark:
    """Load, validate and register a user's benchmark file; return the benchmark."""
    bench = load_benchmark_file(path)
    register_benchmark(bench)
    return bench


def register_from_env() -> list[Benchmark]:
    """Register the files named in :data:`BENCHMARK_FILES_ENV` (set by ``reguide-eval --benchmark``,
    so that every process of a run knows them)."""
    return [register_benchmark_file(p) for p in os.environ.get(BENCHMARK_FILES_ENV, "").split(os.pathsep) if p.strip()]


def ensure_benchmark(name: str, file: str = "") -> Benchmark:
    """The benchmark ``name``, registering ``file`` (a task's docset names it) when it is not known yet."""
    if name not in BENCHMARKS and file:
        register_benchmark_file(file)
    return get_benchmark(name)


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(
            f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)}); a benchmark of your own: "
            f"reguide-eval --benchmark FILE, or {BENCHMARK_FILES_ENV}=FILE"
        ) from None


def id_classes(benchmark: str) -> tuple[str, ...]:
    """The ID class names, in the order (and spelling) of the prompts."""
    return get_benchmark(benchmark).classes


def user_benchmarks() -> list[Benchmark]:
    """The registered benchmarks that are not shipped (full-spectrum views included)."""
    return [b for b in BENCHMARKS.values() if not b.shipped]


WRITTEN_FOLDER = "benchmarks"  # <output_path>/benchmarks/<name>.yaml: what a run's report reads


def resolved_benchmark_yaml(bench: Benchmark) -> str:
    """The benchmark as a self-contained file (classes inline, absolute paths), written next to a
    run's results so that its report knows the benchmark wherever the results are read."""
    datasets: dict[str, dict] = {}
    for dataset in bench.id_datasets + bench.shifted + bench.ood_datasets:
        spec: dict[str, Any] = {"role": bench.role(dataset) if dataset not in bench.shifted else "csid", "root": bench.image_roots.get(dataset, "")}
        if dataset in bench.imglists:
            spec["imglist"] = bench.imglists[dataset]
        if dataset in bench.sizes:
            spec["images"] = bench.sizes[dataset]
        datasets[dataset] = spec
    data = {
        "name": bench.name, "description": bench.description, "classes": list(bench.classes), "datasets": datasets,
        "imglist_folder": bench.imglist_folder, "imglist_dir": bench.imglist_dir, "released_subsets": dict(bench.subsets), "aliases": dict(bench.release_names),
        "stratified_subsets": list(bench.stratified), "subset_seed": bench.seed, "default_subset": dict(bench.default_subset),
        "max_new_tokens": bench.max_new_tokens, "examples": bench.examples,
    }
    header = f"# {bench.name} as reguide-eval read it from {bench.source}; the report of these results reads this copy.\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def register_written_benchmarks(paths: Iterable[str | os.PathLike]) -> list[Benchmark]:
    """Register the benchmark files ``reguide-eval`` wrote under ``paths`` (``benchmarks/*.yaml``)."""
    found = []
    for root in map(Path, paths):
        if root.is_dir():
            for path in sorted(root.rglob(f"{WRITTEN_FOLDER}/*.yaml")):
                bench = load_benchmark_file(path, check_lists=False)
                register_benchmark(bench)
                found.append(bench)
    return found


register_from_env()
