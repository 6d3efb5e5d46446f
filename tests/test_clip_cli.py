"""clip_ood through the real CLI on fixture images, zero-shot and with a learned CoOp context, beside
an LVLM-style run in one reguide-report (rows labelled zero-shot / CoOp and the score rule).

The checkpoint is a tiny random-weight CLIP built from a config with a tokenizer trained in memory
(no download can happen here); the images are synthetic fixtures (the benchmarks' images cannot be
shipped). What is tested is the path: the metrics in the results JSON are scikit-learn's on the
per-document scores clip_ood returned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runs import run_cli
from sklearn.metrics import roc_auc_score

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.models.clip_ood import ENSEMBLE_TEMPLATES
from reguide_tasks.models.clip_train import TrainConfig, train
from reguide_tasks.testing.fixtures import make_train_fixture
from reguide_tasks.testing.tiny_clip import build_tiny_clip

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
TASK = "reguide_baseline_cifar10_custom"


def _eval(fixture_data, out: Path, model: str, model_args: str) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = run_cli("reguide-eval", ["--model", model, "--model_args", model_args, "--tasks", TASK, "--data_root", str(fixture_data.root),
                                    "--output_path", str(out), "--log_samples", "--batch_size", "4"], env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def test_clip_ood_runs_through_the_cli_and_sits_beside_lvlm_runs_in_the_report(fixture_data, tmp_path):
    clip = build_tiny_clip(tmp_path / "clip", [*get_benchmark("cifar10").classes, *ENSEMBLE_TEMPLATES, "a photo of a {}"])
    _eval(fixture_data, tmp_path / "runs" / "clip", "clip_ood", f"pretrained={clip},score=mcm")
    # a CoOp context learned on training fixtures plugs in by model arg (and is labelled as such below)
    make_train_fixture(tmp_path / "train_data", "cifar10", 2)
    coop = train(TrainConfig(str(clip), "cifar10", shots=2, n_ctx=4, class_specific=True, epochs=2, batch_size=8, warmup_epochs=0, augment="none"),
                 tmp_path / "coop", data_root=tmp_path / "train_data", device="cpu", progress=False)
    _eval(fixture_data, tmp_path / "runs" / "coop", "clip_ood", f"pretrained={clip},score=msp,prompt_context={coop.context_path}")
    _eval(fixture_data, tmp_path / "runs" / "scripted", "reguide_scripted", "fail_every=0")

    results_file = next((tmp_path / "runs" / "clip").rglob("*_results.json"))
    metrics = {k.split(",")[0]: v for k, v in json.loads(results_file.read_text())["results"][TASK].items()}
    records = [json.loads(line)["oodd"] for f in (tmp_path / "runs" / "clip").rglob(f"*_samples_{TASK}.jsonl") for line in f.read_text().splitlines()]
    assert not any(r["failed"] for r in records)  # every clip_ood answer parses
    id_scores = [r["ood_score"] for r in records if r["role"] == "id"]
    for dataset in get_benchmark("cifar10").ood_datasets:
        ood = [r["ood_score"] for r in records if r["dataset"] == dataset]
        expected = 100 * roc_auc_score(np.r_[np.ones(len(id_scores)), np.zeros(len(ood))], np.r_[id_scores, ood])
        assert metrics[f"auroc_{dataset}"] == pytest.approx(expected, abs=1e-9)
    assert all(0.0 <= s <= 1.0 for s in id_scores)  # MCM: a softmax probability

    report = run_cli("reguide-report", [str(tmp_path / "runs"), "--out", str(tmp_path / "report"), "--no-plots"], timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    table = (tmp_path / "report" / "report.md").read_text()
    assert "clip_ood" in table and "reguide_scripted" in table
    assert "clip_ood (clip, zero-shot, MCM)" in table and "clip_ood (clip, CoOp-CSC 2-shot, MSP)" in table
