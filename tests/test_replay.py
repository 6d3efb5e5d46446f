"""reguide_replay through the real CLI: the authors' GPT-4o answers scored by our parser and metrics.

No images are needed (the replay model declares it), so these run on the shipped release sample.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import run_cli

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.prompts.render import (
    load_examples,
    render_baseline,
    render_stage1,
    render_stage2,
)
from reguide_tasks.vocab import prompt_stage as request_stage

REGUIDE_EVAL = str(Path(sys.executable).with_name("reguide-eval"))


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("reguide-eval", [*args, "--output_path", str(tmp_path / "out"), "--log_samples", "--data_root", str(tmp_path / "no_images")])


def _results(tmp_path: Path, task: str) -> dict:
    files = sorted((tmp_path / "out").rglob("*_results.json"))
    assert files, "no results file written"
    return {k.split(",")[0]: v for k, v in json.loads(files[-1].read_text())["results"][task].items()}


def _config(tmp_path: Path) -> dict:
    return json.loads(sorted((tmp_path / "out").rglob("*_results.json"))[-1].read_text())["config"]


def _samples(tmp_path: Path, task: str) -> list[dict]:
    files = sorted((tmp_path / "out").rglob(f"*_samples_{task}.jsonl"))
    return [json.loads(line) for line in files[-1].read_text().splitlines()]


def test_stage_of_a_request_is_read_from_its_prompt():
    classes = get_benchmark("cifar10").classes
    assert request_stage(render_baseline(classes, load_examples("cifar10"))) == "baseline"
    assert request_stage(render_stage1(classes)) == "stage1"
    assert request_stage(render_stage2(classes, ["lynx", "bobcat"])) == "stage2"


def test_gpt4o_baseline_replay_reproduces_the_paper_figures(tmp_path):
    task = "reguide_baseline_imagenet200_5pct"
    done = _run(tmp_path, "--model", "reguide_replay", "--model_args", "model=gpt,missing=skip", "--tasks", task)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = _results(tmp_path, task)
    # The figures of the issue (S_max, failures excluded), from the released answers.
    assert metrics["auroc_inaturalist"] == pytest.approx(97.7, abs=0.1)
    assert metrics["auroc_ninco"] == pytest.approx(94.2, abs=0.1)
    assert metrics["auroc_openimage_o"] == pytest.approx(97.2, abs=0.1)
    assert metrics["auroc_textures"] == pytest.approx(94.2, abs=0.1)
    samples = _samples(tmp_path, task)
    records = [s["oodd"] for s in samples]
    assert len(records) == 4170
    # failures = answers without any parsable ID confidence, counted per dataset
    no_id_confidence = sum(r["ood_score"] is None for r in records if r["dataset"] != "ssb_hard")
    assert metrics["oodd"] == 4170 - 1970 - no_id_confidence
    assert metrics["fail_rate_ninco"] == pytest.approx(100 * sum(r["failed"] for r in records if r["dataset"] == "ninco") / 249)
    # SSB-hard has no released answers in the sample: recorded per document, counted as not in release,
    # no failure share, and NaN rather than a fake number (near too: not a mean over NINCO alone)
    ssb = [r for r in records if r["dataset"] == "ssb_hard"]
    assert len(ssb) == 1970 and all(r["reason"] == "no released answer" and r["not_in_release"] and not r["failed"] for r in ssb)
    assert metrics["not_in_release_ssb_hard"] == 1970 and metrics["not_in_release_ninco"] == 0
    assert metrics["fail_rate_ssb_hard"] != metrics["fail_rate_ssb_hard"]  # NaN: no answer to fail
    assert metrics["auroc_ssb_hard"] != metrics["auroc_ssb_hard"] and metrics["auroc_near"] != metrics["auroc_near"]
    assert all(metrics[f"repaired_rate_{d}"] == 0.0 for d in ("imagenet200", "ninco", "inaturalist", "textures", "openimage_o"))
    assert all(r["key_reading"] == "repair" and r["repaired_keys"] == {} for r in records)
    assert "not_in_release_<dataset> (missing=skip)" in done.stdout + done.stderr
    assert _config(tmp_path)["process_docs_parallel"] == 1  # reguide-eval's default for our tasks
    _check_demo_report_and_audit(tmp_path, records)


def _check_demo_report_and_audit(tmp_path: Path, records: list[dict]) -> None:
    """What the README demo prints next: the report has no failure share from missing release files,
    and the audit of the same output says how every answer was read."""
    from test_report import table_rows

    from reguide_tasks.report.audit_cli import main as audit_main
    from reguide_tasks.report.cli import main as report_main

    answered = [r for r in records if not r["not_in_release"]]
    assert report_main([str(tmp_path / "out"), "--out", str(tmp_path / "report"), "--bootstrap", "0", "--no-plots"]) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    (summary,) = table_rows(markdown, "imagenet200")
    assert summary["Fail all"] == f"{100 * sum(r['failed'] for r in answered) / len(answered):.1f}" == "6.4"
    answers = {row["Dataset"]: row for row in table_rows(markdown, "imagenet200", 2)}
    assert answers["ssb_hard"]["Not in release"] == "1970" and answers["ssb_hard"]["Fail"] == "n/a"
    assert answers["ninco"]["Not in release"] == "0" and answers["ninco"]["Repaired"] == "0.0"
    assert audit_main([str(tmp_path / "out"), "--out", str(tmp_path / "audit")]) == 0
    audit = {row["Dataset"]: row for row in table_rows((tmp_path / "audit" / "audit.md").read_text(), "reguide_replay (gpt) on reguide_baseline_imagenet200_5pct")}
    # the per-file pins of tests/test_parsing.py (ok, partial, failed), read back from the records
    assert [audit["imagenet200"][h] for h in ("OK", "Partial", "Failed")] == ["378", "1", "21"]
    assert [audit["ninco"][h] for h in ("OK", "Partial", "Failed")] == ["211", "0", "38"]
    assert audit["ssb_hard"]["Not in release"] == "1970" and audit["textures"]["Top failure reasons"] == "refusal (26)"


def test_missing_released_answers_fail_the_run_by_default(tmp_path):
    done = _run(tmp_path, "--model", "reguide_replay", "--tasks", "reguide_baseline_imagenet200_5pct")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("reguide-eval: error:") and "1970 of 4170" in last and "baseline/ssb_hard: 1970" in last


def test_reguide_replay_of_stage1_and_stage2_runs_end_to_end(tmp_path):
    task = "reguide_imagenet200_5pct"
    done = _run(tmp_path, "--model", "reguide_replay", "--model_args", "model=gpt,missing=skip", "--tasks", task, "--process_docs_parallel", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _config(tmp_path)["process_docs_parallel"] == 2  # a user's value is kept
    metrics = _results(tmp_path, task)
    records = [s["oodd"] for s in _samples(tmp_path, task)]
    ninco = [r for r in records if r["dataset"] == "ninco"]
    assert len(ninco) == 249 and all(r["stage1"].startswith("Class suggested") for r in ninco[:20])
    assert sum(len(r["suggestions_kept"]) for r in ninco) / 249 > 30
    assert sum(not r["failed"] for r in ninco) > 150 and metrics["fail_rate_ninco"] < 40
    assert all(r["suggestions_source"] == "sent" for r in records)  # scored against the list stage 2 showed
    # stage-2 answers were released for NINCO only: the other sets are recorded as not in release
    others = [r for r in records if r["dataset"] != "ninco"]
    assert all(r["not_in_release"] and not r["failed"] and r["reason"] == "no released answer" for r in others)
    assert metrics["not_in_release_imagenet200"] == 400 and metrics["fail_rate_imagenet200"] != metrics["fail_rate_imagenet200"]


def test_a_strict_task_of_your_own_reports_both_readings(tmp_path):
    """The README's recipe: a task file of yours naming the ``_strict`` hook, run beside ours; the
    records and the report say which reading each task used."""
    from test_report import table_rows

    from reguide_tasks.paths import TASKS_DIR
    from reguide_tasks.report.cli import main as report_main

    mine = tmp_path / "my_tasks"
    mine.mkdir()
    (mine / "my_strict.yaml").write_text(
        f"include: {TASKS_DIR / 'reguide_imagenet200' / 'reguide_baseline_imagenet200_5pct.yaml'}\n"
        "task: my_baseline_imagenet200_strict\n"
        "process_results: !function utils.baseline_process_results_max_id_exclude_strict\n"
    )
    (mine / "utils.py").write_text(
        "from reguide_tasks.lmms.yaml_functions import *\n"
    )
    ours, strict = "reguide_baseline_imagenet200_5pct", "my_baseline_imagenet200_strict"
    done = _run(tmp_path, "--model", "reguide_replay", "--model_args", "model=gpt,missing=skip", "--tasks", f"{ours},{strict}",
                "--include_path", str(mine), "--limit", "40")
    assert done.returncode == 0, done.stderr[-2000:]
    assert {r["oodd"]["key_reading"] for r in _samples(tmp_path, strict)} == {"strict"}
    assert {r["oodd"]["key_reading"] for r in _samples(tmp_path, ours)} == {"repair"}
    assert _results(tmp_path, strict)["repaired_rate_imagenet200"] == 0.0
    assert report_main([str(tmp_path / "out"), "--out", str(tmp_path / "report"), "--bootstrap", "0", "--no-plots"]) == 0
    rows = table_rows((tmp_path / "report" / "report.md").read_text(), "imagenet200", 2)
    assert {(row["Task"], row["Key reading"]) for row in rows} == {(ours, "repair"), (strict, "strict")}
