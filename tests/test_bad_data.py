"""Bad data: every failing run of reguide-eval exits non-zero with one line saying why, before the
model loads where possible; an unreadable image found mid-run names its document, or is recorded and
left out of every metric under --bad_images exclude. Real CLI, scripted model (no weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import run_cli

from reguide_tasks.testing.fixtures import make_fixture

pytestmark = pytest.mark.e2e
REGUIDE_EVAL = str(Path(sys.executable).with_name("reguide-eval"))
TASK = "reguide_baseline_cifar10_custom"


def _run(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = ["--model", "reguide_scripted", "--tasks", TASK, "--data_root", str(root), "--output_path", str(out), "--log_samples", *extra]
    return run_cli("reguide-eval", command)


def _last_line(done: subprocess.CompletedProcess) -> str:
    return done.stderr.strip().splitlines()[-1]


@pytest.fixture()
def data(tmp_path):
    docs = make_fixture(tmp_path / "data", "cifar10", per_dataset=2)
    return tmp_path / "data", docs


def test_missing_images_stop_before_the_model_loads(data, tmp_path):
    root, docs = data
    (root / docs[3]["image"]).unlink()
    done = _run(root, tmp_path / "out", "--model_args", "call_latency=not-a-number")  # would fail if the model loaded
    assert done.returncode == 1
    assert _last_line(done).startswith("reguide-eval: error: task reguide_baseline_cifar10_custom: 1 of 14 images missing")
    assert not list((tmp_path / "out").rglob("*_results.json"))


def test_a_document_list_with_duplicates_is_refused(data, tmp_path):
    root, docs = data
    listing = root / "reguide_documents" / "cifar10.jsonl"
    listing.write_text(listing.read_text() + listing.read_text().splitlines()[0] + "\n")
    done = _run(root, tmp_path / "out")
    assert done.returncode == 1 and "duplicated documents" in _last_line(done)


def test_a_broken_document_list_is_named(data, tmp_path):
    root, _ = data
    (root / "reguide_documents" / "cifar10.jsonl").write_text('{"doc_key": "x"}\n')
    done = _run(root, tmp_path / "out")
    assert done.returncode == 1 and "cifar10.jsonl:1: document lacks" in _last_line(done)


def test_a_corrupt_image_stops_the_run_naming_the_document(data, tmp_path):
    root, docs = data
    (root / docs[5]["image"]).write_bytes(b"\x89PNG truncated")
    done = _run(root, tmp_path / "out")
    assert done.returncode == 1
    assert docs[5]["doc_key"] in _last_line(done) and "unreadable" in _last_line(done)


def test_a_corrupt_image_can_be_recorded_and_excluded(data, tmp_path):
    root, docs = data
    (root / docs[5]["image"]).write_bytes(b"\x89PNG truncated")
    done = _run(root, tmp_path / "out", "--bad_images", "exclude")
    assert done.returncode == 0, done.stderr[-2000:]
    samples = [json.loads(line) for f in (tmp_path / "out").rglob("*_samples_*.jsonl") for line in f.read_text().splitlines()]
    excluded = [s["oodd"] for s in samples if s["oodd"].get("excluded")]
    assert [r["image"] for r in excluded] == [docs[5]["image"]] and "unreadable" in excluded[0]["reason"]
    results = json.loads(next((tmp_path / "out").rglob("*_results.json")).read_text())["results"][TASK]
    assert results["oodd,none"] == 13  # the excluded document is in the samples, in no metric


def test_an_unknown_task_and_an_unknown_model_exit_non_zero(data, tmp_path):
    root, _ = data
    done = run_cli("reguide-eval", ["--model", "reguide_scripted", "--tasks", "reguide_no_such_task", "--data_root", str(root)], timeout=300)
    assert done.returncode == 1 and _last_line(done).startswith("reguide-eval: error:")
    done = run_cli("reguide-eval", ["--model", "no_such_model", "--tasks", TASK, "--data_root", str(root)], timeout=300)
    assert done.returncode == 1 and _last_line(done).startswith("reguide-eval: error:")


def test_lmms_eval_dummy_model_runs_end_to_end(data, tmp_path):
    """lmms-eval's own `dummy` model answers 'A' to everything: the run completes, writes its results
    JSON, and every answer is an honest failure (counted, not a crash and not a fake number)."""
    root, _ = data
    done = run_cli("reguide-eval", ["--model", "dummy", "--tasks", TASK, "--data_root", str(root), "--output_path", str(tmp_path / "out")])
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(next((tmp_path / "out").rglob("*_results.json")).read_text())["results"][TASK]
    assert results["fail_rate_cifar10,none"] == 100.0 and results["oodd,none"] == 0
