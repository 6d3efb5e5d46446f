"""Benchmark specs and document sets: counts of the shipped subsets, paths, full lists, data checks."""

from __future__ import annotations

from collections import Counter

import pytest

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.data.documents import (
    DataError,
    check_unique,
    find_missing_images,
    full_documents,
    load_image,
    read_documents,
    require_images,
    subset_documents,
    write_documents,
)
from reguide_tasks.testing.fixtures import make_fixture
from reguide_tasks.data.release import normalize_image_path

# Counts of the authors' released lists (their README and the paper's appendix).
EXPECTED = {
    ("cifar10", "subset25"): {"cifar10": 2250, "cifar100": 2214, "tin": 1948, "mnist": 17497, "svhn": 6504, "texture": 1410, "places365": 8745},
    ("imagenet200", "subset5"): {"imagenet200": 400, "ssb_hard": 1970, "ninco": 249, "inaturalist": 500, "textures": 258, "openimage_o": 793},
    ("imagenet200", "subset25"): {"imagenet200": 2200, "ssb_hard": 11770, "ninco": 1304, "inaturalist": 2500, "textures": 1290, "openimage_o": 3967},
}


@pytest.mark.parametrize("benchmark,subset", sorted(EXPECTED))
def test_shipped_subset_counts_equal_the_release(benchmark, subset):
    docs = subset_documents(benchmark, subset)
    assert Counter(d["dataset"] for d in docs) == EXPECTED[(benchmark, subset)]
    check_unique(docs)
    bench = get_benchmark(benchmark)
    assert [d["dataset"] for d in docs] == sorted((d["dataset"] for d in docs), key=bench.datasets.index)
    for doc in docs:
        assert doc["image"].startswith(("images_classic/", "images_largescale/"))
        assert doc["role"] == bench.role(doc["dataset"])
        if doc["role"] == "id":
            assert bench.classes[doc["label"]] == doc["label_name"]
        else:
            assert doc["label"] == -1


def test_mixed_release_prefixes_are_normalized():
    assert normalize_image_path("./data/images_classic/cifar10/test/airplane/0529.png") == "images_classic/cifar10/test/airplane/0529.png"
    assert normalize_image_path("/data/openood/images_classic/svhn/test/004489_0.jpg") == "images_classic/svhn/test/004489_0.jpg"
    assert normalize_image_path("images_largescale//ninco/x.jpg") == "images_largescale/ninco/x.jpg"
    docs = subset_documents("cifar10", "subset25")
    assert not any("openood" in d["image"] or d["image"].startswith(".") for d in docs)


def _write_imglists(folder, benchmark):
    bench = get_benchmark(benchmark)
    folder.mkdir(parents=True)
    for dataset in bench.datasets:
        if dataset == bench.id_dataset:
            lines = [f"{benchmark}/val/img{i}.JPEG {i % len(bench.classes)}" for i in range(5)]
        else:
            lines = [f"{dataset}/images/img{i}.jpg -1" for i in range(3)]
        (folder / bench.imglist_name(dataset)).write_text("\n".join(lines) + "\n\n")


def test_full_documents_from_openood_imglists(tmp_path):
    _write_imglists(tmp_path / "imagenet200", "imagenet200")
    docs = full_documents("imagenet200", tmp_path / "imagenet200")
    counts = Counter(d["dataset"] for d in docs)
    assert counts["imagenet200"] == 5 and all(counts[d] == 3 for d in get_benchmark("imagenet200").ood_datasets)
    by_dataset = {d["dataset"]: d for d in reversed(docs)}  # first of each dataset
    assert by_dataset["imagenet200"]["image"] == "images_largescale/imagenet200/val/img0.JPEG"
    assert by_dataset["imagenet200"]["label_name"] == "goldfish"
    assert by_dataset["textures"]["image"].startswith("images_classic/textures/")  # OpenOOD keeps textures in images_classic
    assert by_dataset["ninco"]["image"].startswith("images_largescale/ninco/")


def test_full_documents_say_which_lists_are_missing(tmp_path):
    with pytest.raises(DataError, match="test_imagenet200.txt.*download script"):
        full_documents("imagenet200", tmp_path)


def test_missing_images_message_counts_per_dataset(tmp_path):
    docs = subset_documents("imagenet200", "subset5")
    report = find_missing_images(docs, tmp_path / "nowhere")
    assert report.missing == len(docs)
    message = report.message()
    assert "does not exist" in message and "ninco: 249" in message and "REGUIDE_DATA_ROOT" in message
    make_fixture(tmp_path / "data", "imagenet200", per_dataset=2)
    partial = find_missing_images(docs, tmp_path / "data")
    assert partial.missing == len(docs) - 12
    with pytest.raises(DataError, match=f"{len(docs) - 12} of {len(docs)} images missing"):
        require_images(docs, tmp_path / "data")


def test_fixture_images_open_and_documents_round_trip(tmp_path):
    docs = make_fixture(tmp_path, "cifar10", per_dataset=2)
    assert len(docs) == 14
    require_images(docs, tmp_path)
    image = load_image(docs[0], tmp_path)
    assert image.mode == "RGB" and image.size == (32, 32)
    assert read_documents(tmp_path / "reguide_documents" / "cifar10.jsonl") == docs
    write_documents(docs, tmp_path / "docs.jsonl.gz")
    assert read_documents(tmp_path / "docs.jsonl.gz") == docs


def test_corrupt_image_names_the_document(tmp_path):
    docs = make_fixture(tmp_path, "cifar10", per_dataset=1)
    (tmp_path / docs[0]["image"]).write_bytes(b"not an image")
    with pytest.raises(DataError, match="unreadable"):
        load_image(docs[0], tmp_path)


def test_duplicated_documents_are_refused():
    docs = subset_documents("imagenet200", "subset5")[:3]
    with pytest.raises(DataError, match="duplicated"):
        check_unique(docs + docs[:1])


def test_check_data_and_build_documents_commands(tmp_path, capsys):
    from reguide_tasks.data import build_documents as build_full_documents
    from reguide_tasks.lmms import check_data

    make_fixture(tmp_path, "imagenet200", per_dataset=1)
    assert check_data.main(["--tasks", "reguide_imagenet200_custom", "--data-root", str(tmp_path)]) == 0
    assert check_data.main(["--tasks", "reguide_imagenet200", "--data-root", str(tmp_path)]) == 1
    assert "4164 of 4170 images missing" in capsys.readouterr().out
    assert build_full_documents.main(["--data-root", str(tmp_path), "--benchmark", "imagenet200"]) == 1
    _write_imglists(tmp_path / "benchmark_imglist" / "imagenet200", "imagenet200")
    assert build_full_documents.main(["--data-root", str(tmp_path), "--benchmark", "imagenet200"]) == 0
    assert len(read_documents(tmp_path / "reguide_documents" / "imagenet200_full.jsonl")) == 5 + 5 * 3


def test_a_task_can_name_its_own_data_root(tmp_path, monkeypatch):
    import datasets

    from reguide_tasks.lmms.hooks import doc_to_visual, expand_document_sets

    make_fixture(tmp_path / "elsewhere", "cifar10", per_dataset=1)
    monkeypatch.setenv("REGUIDE_DATA_ROOT", str(tmp_path / "nowhere"))
    spec = {"benchmark": "cifar10", "subset": "file", "path": "reguide_documents/cifar10.jsonl", "data_root": str(tmp_path / "elsewhere")}
    docs = expand_document_sets(datasets.Dataset.from_list([spec]))
    assert len(docs) == 7 and docs[0]["data_root"] == str(tmp_path / "elsewhere")
    assert doc_to_visual(docs[0])[0].size == (32, 32)
    with pytest.raises(DataError, match="nowhere"):
        expand_document_sets(datasets.Dataset.from_list([dict(spec, data_root="")]))
