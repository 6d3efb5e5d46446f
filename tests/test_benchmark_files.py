"""Benchmark files: every shipped one loads and matches OpenOOD v1.5; a user's file is validated with
an error naming the field; full-spectrum views and seeded stratified subsets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reguide_tasks.data import benchmarks as bm
from reguide_tasks.data.benchmarks import (
    BENCHMARK_FILES_DIR,
    BENCHMARKS,
    BenchmarkError,
    get_benchmark,
    load_benchmark_file,
    register_benchmark,
    resolved_benchmark_yaml,
)
from reguide_tasks.data.documents import full_documents, stratified_documents
from reguide_tasks.lmms.records import keys_of_dataset, metric_keys
from reguide_tasks.lmms.task_yamls import task_variants
from reguide_tasks.prompts.render import load_examples, render_baseline

# OpenOOD v1.5's evaluation API (openood/evaluation_api/datasets.py, DATA_INFO, tag v1.5): ID / near / far / csid.
# CIFAR-100's csid is its fsood config's (that DATA_INFO lists none); ImageNet-ES came to OpenOOD in 2024, after v1.5.
OPENOOD_V15 = {
    "cifar10": ("cifar10", ("cifar100", "tin"), ("mnist", "svhn", "texture", "places365"), ("cifar10c",)),
    "cifar100": ("cifar100", ("cifar10", "tin"), ("mnist", "svhn", "texture", "places365"), ("cifar100c",)),
    "imagenet200": ("imagenet200", ("ssb_hard", "ninco"), ("inaturalist", "textures", "openimage_o"), ("imagenet_v2", "imagenet_c", "imagenet_r")),
    "imagenet1k": ("imagenet", ("ssb_hard", "ninco"), ("inaturalist", "textures", "openimage_o"), ("imagenet_v2", "imagenet_c", "imagenet_r")),
}


@pytest.mark.parametrize("path", sorted(BENCHMARK_FILES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_file_loads(path: Path) -> None:
    bench = load_benchmark_file(path, shipped=True)
    assert bench.name == path.stem and BENCHMARKS[bench.name] == bench
    assert len(set(bench.classes)) == len(bench.classes) > 0
    assert load_examples(bench.name) and render_baseline(bench.classes, load_examples(bench.name))


@pytest.mark.parametrize("name", sorted(OPENOOD_V15))
def test_datasets_match_openood_v15(name: str) -> None:
    bench = get_benchmark(name)
    assert (bench.id_dataset, bench.near, bench.far, bench.shifted) == OPENOOD_V15[name]
    view = get_benchmark(f"{name}_fsood")
    assert view.csid == bench.shifted and view.datasets == (bench.id_dataset, *bench.shifted, *bench.near, *bench.far)


def test_class_lists_have_the_openood_sizes_and_exact_names() -> None:
    cifar100, imagenet = get_benchmark("cifar100").classes, get_benchmark("imagenet1k").classes
    assert len(cifar100) == len(set(cifar100)) == 100 and len(imagenet) == len(set(imagenet)) == 1000
    assert cifar100[:3] == ("apple", "aquarium fish", "baby") and cifar100[-1] == "worm"
    # CLIP's names, in label (WordNet id) order; the two names CLIP repeats are told apart (classes/README.md).
    assert imagenet[:3] == ("tench", "goldfish", "great white shark") and imagenet[-1] == "toilet paper"
    assert (imagenet[657], imagenet[744], imagenet[836], imagenet[837]) == ("missile", "projectile", "sunglass", "sunglasses")


def test_existing_benchmarks_keep_their_definition() -> None:
    cifar10, imagenet200 = get_benchmark("cifar10"), get_benchmark("imagenet200")
    assert cifar10.subsets == {"subset25": "dataset/cifar10/subset25.jsonl.gz"} and cifar10.release_names == {"tiny_imagenet": "tin"}
    assert imagenet200.image_roots["textures"] == "images_classic" and imagenet200.release_names == {"texture": "textures"}
    assert (cifar10.max_new_tokens, imagenet200.max_new_tokens) == (1024, 4096)
    assert imagenet200.default_subset == {"baseline": "subset25", "reguide": "subset5"}
    assert get_benchmark("imagenet1k").imglist_folder == "imagenet" and get_benchmark("imagenet200_fsood").imglist_name("imagenet_v2") == "test_imagenet200_v2.txt"


def test_full_spectrum_keys_put_shifted_sets_on_the_id_side() -> None:
    view = get_benchmark("cifar10_fsood")
    keys = metric_keys(view)
    assert "id_acc" in keys and "id_acc_cifar10c" in keys and "auroc_cifar10c" not in keys
    shifted = keys_of_dataset(view.name, "cifar10c")
    assert "auroc_mnist" in shifted and "auroc_near" in shifted and "id_acc_cifar10c" in shifted and "id_acc" not in shifted
    test_set = keys_of_dataset(view.name, "cifar10")
    assert "id_acc" in test_set and "id_acc_cifar10c" not in test_set
    assert keys_of_dataset("cifar10", "cifar10") == tuple(k for k in test_set if k != "fail_rate_cifar10c" and not k.endswith("_cifar10c"))


# ---------------------------------------------------------------- a user's file
def write_bench(folder: Path, **overrides) -> Path:
    """A valid user benchmark in ``folder`` (lists included); ``overrides`` replace top-level fields (None drops one)."""
    lists = folder / "lists"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "test_parts.txt").write_text("parts/a.png 0\nparts/b.png 1\nparts/c.png 2\nparts/d.png 0\n", encoding="utf-8")
    (lists / "test_scrap.txt").write_text("scrap/a.png -1\nscrap/b.png -1\n", encoding="utf-8")
    (lists / "test_sky.txt").write_text("sky/a.png -1\n", encoding="utf-8")
    data = {
        "name": "mybench",
        "classes": ["bolt", "nut", "washer"],
        "imglist_dir": "lists",
        "datasets": {"parts": {"role": "id"}, "scrap": {"role": "near"}, "sky": {"role": "far"}},
    }
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = folder / "my_bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_a_user_file_loads_with_its_own_lists(tmp_path: Path) -> None:
    bench = load_benchmark_file(write_bench(tmp_path))
    assert (bench.id_dataset, bench.near, bench.far, bench.classes) == ("parts", ("scrap",), ("sky",), ("bolt", "nut", "washer"))
    assert bench.default_subset == {"baseline": "full", "reguide": "full"} and not bench.shipped
    register_benchmark(bench)
    try:
        docs = full_documents("mybench", bench.default_imglist_dir(tmp_path))
        assert [d["image"] for d in docs][:2] == ["parts/a.png", "parts/b.png"] and docs[1]["label_name"] == "nut"
        assert [d["role"] for d in docs] == ["id"] * 4 + ["near"] * 2 + ["far"]
        # a copy written next to results is the same benchmark (registering it again is fine)
        copy = tmp_path / "out" / "benchmarks" / "mybench.yaml"
        copy.parent.mkdir(parents=True)
        copy.write_text(resolved_benchmark_yaml(bench), encoding="utf-8")
        assert bm.register_written_benchmarks([tmp_path / "out"])[0].classes == bench.classes
    finally:
        BENCHMARKS.pop("mybench", None)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"datasets": {"parts": {"role": "id"}, "scrap": {"role": "nearr"}}}, r"datasets\.scrap\.role: unknown dataset role 'nearr'"),
        ({"classes": ["bolt", "nut", "bolt"]}, r"classes: duplicate class 'bolt' \(entries 1 and 3"),
        ({"classes": None}, r"classes: missing"),
        ({"classes": "no_such_classes.txt"}, r"classes: class list .*no_such_classes.txt not found"),
        ({"datasets": {"parts": {"role": "id"}, "scrap": {"role": "near"}, "moon": {"role": "far"}}}, r"imglist_dir: image list not found: .*test_moon.txt"),
        ({"datasets": {"parts": {"role": "id"}, "scrap": {"role": "near", "imglist": "nope.txt"}}}, r"datasets\.scrap\.imglist: image list not found: .*nope.txt"),
        ({"datasets": {"parts": {"role": "id"}, "more": {"role": "id"}, "scrap": {"role": "near"}}}, r"datasets: exactly one dataset has role id \(found 2\)"),
        ({"datasets": {"parts": {"role": "id"}}}, r"datasets: no OoD dataset"),
        ({"datasets": {"parts": {"role": "id"}, "near": {"role": "far"}}}, r"datasets\.near: 'near' is a metric target"),
        ({"name": "My Bench"}, r"name: 'My Bench' is not a name"),
        ({"name": "cifar10"}, r"name: 'cifar10' is already a shipped benchmark"),
        ({"colour": "red"}, r"colour: unknown field"),
        ({"default_subset": "stratified10"}, r"default_subset\.baseline: 'stratified10' is none of the benchmark's document sets"),
    ],
)
def test_malformed_files_name_the_field(tmp_path: Path, overrides: dict, message: str) -> None:
    path = write_bench(tmp_path, **overrides)
    with pytest.raises(BenchmarkError, match=message):
        bm.register_benchmark_file(path)
    assert "mybench" not in BENCHMARKS


def test_classes_from_a_file_and_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "names.txt").write_text("bolt\n\nnut\n", encoding="utf-8")
    assert load_benchmark_file(write_bench(tmp_path, classes="names.txt")).classes == ("bolt", "nut")
    with pytest.raises(BenchmarkError, match=r"benchmark file .*my_bench.yaml.missing not found"):
        load_benchmark_file(tmp_path / "my_bench.yaml.missing")


def test_stratified_subsets_are_seeded_per_dataset_and_class(tmp_path: Path) -> None:
    bench = load_benchmark_file(write_bench(tmp_path, stratified_subsets=[5, 25]))
    lists = tmp_path / "lists"  # larger lists than write_bench's
    (lists / "test_parts.txt").write_text("".join(f"parts/{c}/{i}.png {c}\n" for c in range(3) for i in range(40)), encoding="utf-8")
    (lists / "test_scrap.txt").write_text("".join(f"scrap/{i}.png -1\n" for i in range(200)), encoding="utf-8")
    (lists / "test_sky.txt").write_text("sky/0.png -1\n", encoding="utf-8")
    register_benchmark(bench)
    try:
        five = stratified_documents("mybench", 5, lists)
        counts = {key: sum(1 for d in five if (d["dataset"], d["label"]) == key) for key in {(d["dataset"], d["label"]) for d in five}}
        assert counts == {("parts", 0): 2, ("parts", 1): 2, ("parts", 2): 2, ("scrap", -1): 10, ("sky", -1): 1}
        assert five == stratified_documents("mybench", 5, lists)  # the same every time
        # independent of the lists' line order
        (lists / "test_scrap.txt").write_text("".join(f"scrap/{i}.png -1\n" for i in reversed(range(200))), encoding="utf-8")
        assert {d["doc_key"] for d in stratified_documents("mybench", 5, lists)} == {d["doc_key"] for d in five}
        assert {d["doc_key"] for d in five} <= {d["doc_key"] for d in stratified_documents("mybench", 25, lists)}
        assert {"reguide_baseline_mybench_5pct", "reguide_mybench_25pct", "reguide_mybench"} <= {v.name for v in task_variants()}
    finally:
        BENCHMARKS.pop("mybench", None)


def test_the_example_file_of_the_docs_loads(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    block = docs.split("```yaml\n# my_bench.yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_bench.yaml").write_text(block, encoding="utf-8")
    (tmp_path / "classes.txt").write_text("bolt\nnut\nwasher\n", encoding="utf-8")
    (tmp_path / "lists").mkdir()
    for name in ("test_parts.txt", "test_scrap.txt", "sky_photos.txt", "test_worn_parts.txt"):
        (tmp_path / "lists" / name).write_text("a.png 0\n", encoding="utf-8")
    bench = load_benchmark_file(tmp_path / "my_bench.yaml")
    assert (bench.name, bench.id_dataset, bench.near, bench.far, bench.shifted) == ("mybench", "parts", ("scrap",), ("sky",), ("worn_parts",))
    assert bench.image_roots == {"parts": "parts_images", "scrap": "parts_images", "sky": "other", "worn_parts": "parts_images"}
    assert bench.stratified == (5, 25) and bench.default_subset == {"baseline": "full", "reguide": "full"}
    assert bench.fsood_view().name == "mybench_fsood"


def test_imagenet1k_prompt_lists_every_class_and_answers_with_quotes_are_read() -> None:
    import ast

    from reguide_tasks.lmms import hooks
    from reguide_tasks.models.scripted import _classification_answer, _options_of, scripted_score

    bench = get_benchmark("imagenet1k")
    prompt = hooks.baseline_doc_to_text({"benchmark": "imagenet1k"})
    options = _options_of(prompt)
    assert options == [*bench.classes, "none of these classes"]
    assert ast.literal_eval(prompt.split("Confidence: ", 1)[1].split("\n", 1)[0]) == load_examples("imagenet1k")[0]["confidences"]
    # Three names hold an apostrophe (Python writes them in double quotes): they are read like the others.
    quoted = [name for name in bench.classes if "'" in name]
    assert quoted == ["Geoffroy's spider monkey", "potter's wheel", "yellow lady's slipper"]
    for label in (*quoted, "tench"):
        doc = {"doc_key": f"imagenet/{label}.png", "image": "x.png", "benchmark": "imagenet1k", "dataset": "imagenet", "role": "id", "label": bench.classes.index(label), "label_name": label}
        record = hooks._score_baseline(doc, _classification_answer(doc, options, scripted_score(doc["doc_key"], "id"), []), "max_id", "exclude")
        assert (record["status"], record["correct"], record["ood_score"]) == ("ok", True, scripted_score(doc["doc_key"], "id")), label


def test_the_example_file_of_the_readme_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Your own benchmark", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_bench.yaml").write_text(block, encoding="utf-8")
    (tmp_path / "classes.txt").write_text("bolt\nnut\nwasher\n", encoding="utf-8")
    (tmp_path / "lists").mkdir()
    for name in ("parts", "scrap", "sky", "worn_parts"):
        (tmp_path / "lists" / f"test_{name}.txt").write_text("a.png 0\n", encoding="utf-8")
    bench = load_benchmark_file(tmp_path / "my_bench.yaml")
    assert (bench.name, bench.id_dataset, bench.near, bench.far, bench.shifted) == ("mybench", "parts", ("scrap",), ("sky",), ("worn_parts",))
