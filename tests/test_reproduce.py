"""``reguide-reproduce``: finding the release's runs, replaying them through reguide-eval, resuming,
a failed run among good ones, bad arguments."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from reguide_tasks.data.release import RELEASE_DIR
from reguide_tasks.lmms.result_files import samples_overhead
from reguide_tasks.report.reproduce import (
    ReleaseRun,
    discover_release_runs,
    main,
)

# The smallest released run (4,170 documents; CIFAR10 25% has 40,568): CI time.
TASK = "reguide_baseline_imagenet200_5pct"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _reported(out: Path) -> tuple[str, set[tuple[str, str]]]:
    """report.md's text and the (model, task) rows of the report's per-benchmark CSVs."""
    rows = set()
    for table in (out / "report").glob("*.csv"):
        with open(table, newline="", encoding="utf-8") as handle:
            rows |= {(row["model"], row["task"]) for row in csv.DictReader(handle)}
    return (out / "report" / "report.md").read_text(encoding="utf-8"), rows


def _dirs(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).mkdir(parents=True)


def test_discovers_the_shipped_sample():
    runs = discover_release_runs(RELEASE_DIR)
    assert runs == [
        ReleaseRun("baseline", "cifar10", "25", "gpt", "reguide_baseline_cifar10_25pct"),
        ReleaseRun("baseline", "imagenet200", "5", "gpt", "reguide_baseline_imagenet200_5pct"),
        ReleaseRun("baseline", "imagenet200", "25", "qwen", "reguide_baseline_imagenet200_25pct"),
        ReleaseRun("reguide", "imagenet200", "5", "gpt", "reguide_imagenet200_5pct"),
    ]
    assert runs.notes == []
    assert [r.slug for r in runs][-1] == "reguide_imagenet200-5_gpt" and runs[-1].run == "imagenet200-5%"


def test_a_reguide_run_needs_both_stages(tmp_path):
    _dirs(tmp_path, "response/baseline/cifar10-25%/qwen", "response/baseline/cifar10-10%/gpt",
          "response/reguide/imagenet200-5%/stage1/gpt", "response/reguide/imagenet200-5%/stage1/qwen",
          "response/reguide/imagenet200-5%/stage2/gpt")
    runs = discover_release_runs(tmp_path)
    assert runs == [
        ReleaseRun("baseline", "cifar10", "25", "qwen", "reguide_baseline_cifar10_25pct"),
        ReleaseRun("reguide", "imagenet200", "5", "gpt", "reguide_imagenet200_5pct"),
    ]
    assert runs.notes == [
        "Baseline cifar10-10%: no task of ours replays this run folder (expected <benchmark>-25% or <benchmark>-5%)",
        "ReGuide imagenet200-5% qwen: stage2 not in release",
    ]
    assert discover_release_runs(tmp_path / "response") == runs  # the response/ folder itself is accepted


def test_bad_arguments_exit_2_before_any_run(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().endswith("release root " + str(tmp_path / "nowhere") + ": no such directory")
    _dirs(tmp_path, "release/response/other")
    assert main([str(tmp_path / "release"), "--out", str(tmp_path / "out")]) == 2
    assert "not a ReGuide release (expected response/baseline/ or response/reguide/ inside)" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert main(["--out", str(tmp_path / "a_file"), "--tasks", TASK]) == 2
    assert f"output folder {tmp_path / 'a_file'} is not writable" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "out"), "--tasks", "reguide_nope"]) == 2
    assert "--tasks: not a task of ours: reguide_nope" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "out"), "--models", "llava"]) == 2
    assert "no released run matches --models / --tasks" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_reproduces_the_release_resumes_and_records_a_failed_run(tmp_path, capsys, offline):
    """One replay of the smallest released run (CI time) beside a broken run folder: the broken run is
    recorded and the others still run; the report, reguide-eval's summary and the result files are
    checked on the good one; the second call resumes (the good run is not run again)."""
    release = tmp_path / "release"
    run = release / "response" / "baseline" / "imagenet200-5%"
    _dirs(run, "bad")
    (run / "bad" / "imagenet200.jsonl").write_text("{not json", encoding="utf-8")
    shutil.copytree(RELEASE_DIR / "response" / "baseline" / "imagenet200-5%" / "gpt", run / "gpt")
    out = tmp_path / "out"
    assert main([str(release), "--out", str(out), "--tasks", TASK]) == 1
    printed = capsys.readouterr().out
    run_dir = out / "runs" / "baseline_imagenet200-5_gpt"
    (results,) = run_dir.rglob("*_results.json")
    assert len(list(run_dir.rglob(f"*_samples_{TASK}.jsonl"))) == 1
    log, bad_log = out / "logs" / "baseline_imagenet200-5_gpt.log", out / "logs" / "baseline_imagenet200-5_bad.log"
    assert f"FAILED Baseline imagenet200-5% bad ({TASK}): exit status 1, log {bad_log}" in printed
    assert "reguide-eval: error:" in bad_log.read_text(encoding="utf-8")
    assert f"ok Baseline imagenet200-5% gpt ({TASK}): exit status 0, log {log}" in printed and log.is_file()
    assert "2 runs: 1 ran, 0 skipped (results already there), 1 failed" in printed
    assert f"failed: Baseline imagenet200-5% bad ({TASK}), exit status 1; see {bad_log}" in printed
    markdown, rows = _reported(out)
    assert rows == {("reguide_replay (gpt)", TASK)}
    assert "\n| reguide_replay (gpt) | 85.0 | 5.2 |" in markdown  # ID acc, fail ID of the released answers
    # reguide-eval's own summary row agrees with the report (ID acc, near, far, FPR near / far, failed %).
    summary_row = next(line.split() for line in log.read_text(encoding="utf-8").splitlines() if line.startswith(TASK + " "))
    assert summary_row == [TASK, "4170", "85.0", "n/a", "96.4", "n/a", "9.1", "6.4"]
    # Small result files (the demo's run): no "N/A" stderr entries, samples under 2 KB a document
    # beyond the model's answers (the shared 13 KB prompt is written once, per-key items not at all).
    assert "N/A" not in results.read_text(encoding="utf-8")
    (samples,) = run_dir.rglob(f"*_samples_{TASK}.jsonl")
    documents, overhead = samples_overhead(str(samples))
    assert documents == 4170 and overhead < 2048, overhead

    assert main([str(release), "--out", str(out), "--tasks", TASK, "--models", "gpt"]) == 0  # resume: not run again
    printed = capsys.readouterr().out
    assert f"skip Baseline imagenet200-5% gpt ({TASK}): results already in {results.parent} (resume)" in printed
    assert "1 runs: 0 ran, 1 skipped (results already there), 0 failed" in printed
    assert list(run_dir.rglob("*_results.json")) == [results]
    assert (out / "report" / "report.md").is_file()
