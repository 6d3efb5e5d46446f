"""Hostile inputs, group 3 (docs/security.md): paths.

- Image-list / document entries with '..', an absolute path, a NUL or a link below the data root's
  top-level folders that leads out of it are refused, naming the document, before any model loads
  (``reguide-eval``'s pre-flight check) and when an image is opened. Released answers keyed by such
  paths never become a document's answer (tests/test_hostile_files.py).
- Names derived from model or task names cannot write outside the output folder: the report's file
  names (``/``, ``..``, NUL, 5000 characters), the samples file a task name would name, and the folder
  lmms-eval names after the model (``reguide-eval`` refuses ``model=..`` and over-long names).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cli_runs import console_script, offline_env, run_cli

from reguide_tasks.data.documents import (
    DataError,
    find_missing_images,
    image_file,
    load_image,
    read_documents,
    require_images,
    write_documents,
)
from reguide_tasks.lmms.output_guard import OutputGuardError, check_output_names
from reguide_tasks.report.escape import FILE_PART_MAX, file_part
from reguide_tasks.report.files import samples_path_for
from reguide_tasks.testing.fixtures import make_fixture

pytestmark = [pytest.mark.hostile, pytest.mark.hostile_paths]


def _doc(image: str) -> dict:
    return {"doc_key": image, "image": image, "benchmark": "cifar10", "dataset": "cifar100", "role": "near", "label": -1, "label_name": ""}


@pytest.fixture
def root(tmp_path) -> Path:
    """A data root with one image, a link out of its folder, and a top-level folder that is a link."""
    data = tmp_path / "data"
    (data / "images_classic" / "cifar100").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"not an image")
    (data / "images_classic" / "cifar100" / "ok.png").write_bytes(b"x")
    os.symlink(outside / "secret.png", data / "images_classic" / "cifar100" / "link.png")
    os.symlink(outside, data / "images_classic" / "escape")
    other_disk = tmp_path / "big_disk" / "images_largescale"
    (other_disk / "ninco").mkdir(parents=True)
    (other_disk / "ninco" / "a.png").write_bytes(b"x")
    os.symlink(other_disk, data / "images_largescale")
    return data


@pytest.mark.parametrize(
    "image",
    ["../outside/secret.png", "images_classic/../../outside/secret.png", "/etc/passwd", "images_classic/cifar100/link.png",
     "images_classic/escape/secret.png", "images_classic/cifar100/a\0b.png", "\\\\server\\share\\x.png", ""],
)
def test_image_paths_that_leave_the_data_root_are_refused(root, image) -> None:
    with pytest.raises(DataError) as caught:
        image_file(root, _doc(image))
    assert "leaves the data root" in str(caught.value) and "Fix that entry" in str(caught.value)
    with pytest.raises(DataError, match="leaves the data root"):
        find_missing_images([_doc("images_classic/cifar100/ok.png"), _doc(image)], root)  # the pre-flight check
    with pytest.raises(DataError, match="leaves the data root"):
        load_image(_doc(image), root)


def test_paths_inside_the_root_and_linked_top_level_folders_are_read(root) -> None:
    assert image_file(root, _doc("images_classic/cifar100/ok.png")) == root / "images_classic/cifar100/ok.png"
    assert image_file(root, _doc("images_largescale/ninco/a.png")).is_file()  # images_largescale -> another disk
    assert find_missing_images([_doc("images_classic/cifar100/ok.png"), _doc("images_largescale/ninco/a.png")], root).missing == 0


def test_a_document_file_naming_a_path_outside_stops_before_any_model(root, tmp_path) -> None:
    listed = write_documents([_doc("images_classic/cifar100/ok.png"), _doc("../../../../etc/hostname")], tmp_path / "docs.jsonl")
    docs = read_documents(listed, root)
    with pytest.raises(DataError, match=r"'../../../../etc/hostname' \(cifar100\)|../../../../etc/hostname"):
        require_images(docs, root)


@pytest.mark.parametrize("name", ["../../etc/x", "/abs/path", "a\0b", "..", ".", "x" * 5000, "模型/../../" * 300, ""])
def test_report_file_names_stay_one_plain_part(name) -> None:
    part = file_part(name)
    assert part and len(part) <= FILE_PART_MAX and "/" not in part and "\0" not in part and not part.startswith(".")
    assert Path(part).name == part
    assert file_part(name + "x") != part or name in ("..", ".", "")  # long names keep a hash: still distinct


def test_task_names_with_a_path_name_no_samples_file(tmp_path) -> None:
    results = tmp_path / "model" / "20250301_101500_results.json"
    results.parent.mkdir()
    results.write_text("{}")
    (tmp_path / "20250301_101500_samples_x.jsonl").write_text("{}")  # what '../' would reach
    assert samples_path_for(results, "../x") is None and samples_path_for(results, "a\0b") is None
    assert samples_path_for(results, "t" * 300) is None


def test_output_names_from_model_args_and_tasks() -> None:
    check_output_names("pretrained=Qwen/Qwen2.5-VL-7B-Instruct,max_pixels=5", ["reguide_cifar10"])  # fine
    check_output_names("", ["reguide_cifar10"])  # no name: lmms-eval's own default folder
    check_output_names("pretrained=org/..", ["t"])  # lmms-eval makes that one folder, org__..
    for model_args in ("model=..", "model=.", "model=" + "m" * 300):
        with pytest.raises(OutputGuardError, match="not one folder inside it"):
            check_output_names(model_args, ["reguide_cifar10"])
    with pytest.raises(OutputGuardError, match="cannot name a samples file"):
        check_output_names("model=m", ["../../x"])


@pytest.mark.e2e
def test_reguide_eval_refuses_a_model_name_that_leaves_the_output_folder(tmp_path) -> None:
    data = tmp_path / "data"
    make_fixture(data, "cifar10", 1)
    output = tmp_path / "deep" / "output"
    argv = [console_script("reguide-eval"), "--model", "openai", "--model_args", "model=..,base_url=http://127.0.0.1:9/v1",
            "--tasks", "reguide_baseline_cifar10_custom", "--data_root", str(data), "--output_path", str(output), "--log_samples"]
    done = run_cli(argv[0], argv[1:], cwd=tmp_path, env=offline_env(tmp_path, drop=("REGUIDE_", "OPENAI_"), OPENAI_API_KEY="x"), timeout=180)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith("reguide-eval: error: lmms-eval would write this run's results into the folder '..'")
    assert not list((tmp_path / "deep").rglob("*.json"))  # nothing written beside or inside the output folder
