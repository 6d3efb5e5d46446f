"""reguide-eval's own help (fast, before lmms-eval is imported) and its result timestamps in this
machine's time zone instead of lmms-eval's Asia/Singapore default."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytz
from cli_runs import run_cli, run_logging_imports

from reguide_tasks.data.benchmarks import BENCHMARKS
from reguide_tasks.data.release import RELEASE_DIR, read_release_file
from reguide_tasks.lmms.cli import local_timezone_name


def test_help_lists_our_options_first_and_is_fast():
    done, lmms_eval_modules, stderr = run_logging_imports("--help")
    assert done.returncode == 0, stderr[-20:]
    text = " ".join(done.stdout.split())  # argparse wraps lines
    for flag in ("--data_root", "--sequential", "--bad_images"):
        assert flag in text
    assert text.index("--data_root") < text.index("Every other option is lmms-eval's")
    assert "forwarded unchanged (lmms-eval --help lists them)" in text
    assert "reguide-report" in text and "--timezone" in text
    assert lmms_eval_modules == []  # lmms-eval's own help imports all of it: ~11 s


def test_tasks_list_shows_ours_only_with_a_description_each_and_is_fast():
    done, lmms_eval_modules, stderr = run_logging_imports("--tasks", "list")
    assert done.returncode == 0, stderr[-20:]
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("reguide_")}
    assert len(rows) == 80  # 78 tasks (docs/benchmarks.md), 2 tags; no prompt template shows up as a task
    assert "baseline (one prompt); authors' 5% subset, 4,170 documents" in rows["reguide_baseline_imagenet200_5pct"]
    assert "ReGuide (two stages); full image lists (<data root>/benchmark_imglist/imagenet200/)" in rows["reguide_imagenet200_full"]
    assert "seeded stratified 5% of the full lists" in rows["reguide_imagenet1k_5pct"]
    assert "reguide_documents/cifar10.jsonl" in rows["reguide_cifar10_custom"]
    assert rows["reguide_imagenet200"].split()[1:] == ["=", "reguide_imagenet200_5pct"]
    assert "near ssb_hard, ninco; far inaturalist, textures, openimage_o" in done.stdout
    assert lmms_eval_modules == []  # lmms-eval's own listing indexes ~3,300 task YAMLs first


def test_tasks_list_gives_every_shipped_benchmark_its_sizes_per_document_set():
    """Per benchmark, the images of each dataset in each document set: the full lists (the counts a
    file gives, else "size of your imglist"), each released subset (counted here straight from the
    shipped release file) and the seeded stratified subsets."""
    done, _, stderr = run_logging_imports("--tasks", "list")
    assert done.returncode == 0, stderr[-20:]
    blocks: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("  ") and not line.startswith("    "):
            name = line.split(":")[0].strip()
            blocks[name] = []
        elif line.startswith("    "):
            blocks[name].append(line.strip())
    shipped = [name for name, bench in BENCHMARKS.items() if bench.shipped]
    assert set(shipped) <= set(blocks) and len(shipped) == 8
    for name in shipped:
        bench, lines = BENCHMARKS[name], blocks[name]
        full = next(line for line in lines if line.startswith("full lists"))
        for dataset in bench.datasets:
            assert (f"{dataset} {bench.sizes[dataset]:,}" if dataset in bench.sizes else "size of your imglist") in full, (name, dataset, full)
        for subset, rel in bench.subsets.items():
            released = read_release_file(RELEASE_DIR / rel)
            counts = {bench.release_names.get(k, k): sum(map(len, v.values())) if isinstance(v, dict) else len(v) for k, v in released.items()}
            line = next(line for line in lines if line.startswith(f"authors' {subset.removeprefix('subset')}% subset: "))
            assert line.endswith(f"{sum(counts.values()):,} = " + ", ".join(f"{d} {counts[d]:,}" for d in bench.datasets)), line
        for pct in bench.stratified or ():
            assert any(line.startswith("seeded stratified") and f"{pct}%" in line for line in lines), (name, lines)
    # The figures of docs/benchmarks.md, and OpenOOD v1.5's ImageNet-1K lists as imagenet1k.yaml counts them.
    assert "authors' 5% subset: 4,170 = imagenet200 400, ssb_hard 1,970, ninco 249, inaturalist 500, textures 258, openimage_o 793" in blocks["imagenet200"]
    assert blocks["cifar10"][1] == "authors' 25% subset: 40,568 = cifar10 2,250, cifar100 2,214, tin 1,948, mnist 17,497, svhn 6,504, texture 1,410, places365 8,745"
    assert blocks["imagenet1k"][0] == (
        "full lists (counts of imagenet1k.yaml): 130,908 = imagenet 45,000, ssb_hard 49,000, ninco 5,879, inaturalist 10,000, textures 5,160, openimage_o 15,869")
    assert "ssb_hard 2,450, ninco 294, inaturalist 500" in blocks["imagenet1k"][1]  # 5% of each OoD list, rounded half up
    assert blocks["cifar100"][0].startswith("full lists: size of your imglist for every dataset")


def test_local_timezone_name_reads_tz_and_falls_back_to_a_real_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    assert local_timezone_name() == "America/New_York"
    monkeypatch.setenv("TZ", "Not/AZone")
    assert local_timezone_name() in pytz.all_timezones_set


def test_result_files_are_named_in_local_time(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    before = datetime.datetime.now(pytz.timezone("America/New_York")).replace(tzinfo=None)
    done = run_cli("reguide-eval", ["--model", "reguide_replay", "--model_args", "model=gpt,missing=skip", "--tasks",
                                    "reguide_baseline_imagenet200_5pct", "--limit", "4", "--output_path", str(tmp_path)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"reguide-report {tmp_path} --out {tmp_path}/report" in done.stdout  # what to run next
    (results,) = tmp_path.rglob("*_results.json")
    # The compact summary after lmms-eval's table: one row per task, then where the files are.
    summary = done.stdout[done.stdout.index("reguide-eval summary") :].splitlines()
    assert summary[1].split() == ["task", "docs", "ID", "acc", "AUROC", "near", "AUROC", "far", "FPR@95", "near", "FPR@95", "far", "failed", "%"]
    assert summary[3].split()[:2] == ["reguide_baseline_imagenet200_5pct", "4"] and summary[3].split()[3:7] == ["n/a"] * 4
    assert f"results: {results}" in summary
    stamp = datetime.datetime.strptime(results.name[:15], "%Y%m%d_%H%M%S")
    after = datetime.datetime.now(pytz.timezone("America/New_York")).replace(tzinfo=None)
    assert before - datetime.timedelta(seconds=2) <= stamp <= after + datetime.timedelta(seconds=2), (before, stamp, after)


def _eval(*args: str, env_extra: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return run_cli("reguide-eval", list(args), env=env, cwd=cwd)


def test_a_typo_in_our_models_args_stops_the_run_and_says_what_was_meant(tmp_path):
    done = _eval("--model", "reguide_replay", "--model_args", "modle=gpt,missing=skip", "--tasks",
                 "reguide_baseline_imagenet200_5pct", "--limit", "2", "--output_path", str(tmp_path))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("reguide-eval: error:") and "unknown model args 'modle' (did you mean 'model'?)" in last
    assert not list(tmp_path.rglob("*_results.json"))


def test_an_lmms_eval_model_ignoring_an_argument_stops_the_run_unless_allowed(tmp_path, fixture_data):
    """lmms-eval's openai model only warns "Unknown model_args ignored"; no server is needed to see it
    (the model is built before any request; none is answered here: port 9 refuses)."""
    common = ("--model", "openai", "--tasks", "reguide_baseline_imagenet200_custom", "--data_root", str(fixture_data.root),
              "--output_path", str(tmp_path))
    args = "model_version=reguide-testing,modle=x,base_url=http://127.0.0.1:9/v1,max_retries=1,retry_backoff_s=0"
    done = _eval(*common, "--model_args", args, env_extra={"OPENAI_API_KEY": "EMPTY"})
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "Unknown model_args ignored: ['modle']" in last and "--allow_unknown_model_args" in last, last
    allowed = _eval(*common, "--model_args", args, "--allow_unknown_model_args", "--limit", "1", env_extra={"OPENAI_API_KEY": "EMPTY"})
    assert "Unknown model_args ignored" not in allowed.stderr.strip().splitlines()[-1]  # got past the model: fails later on the server


def test_a_missing_custom_document_file_says_which_root_and_what_writes_it(tmp_path):
    from reguide_tasks.data.documents import DataError, read_documents
    from reguide_tasks.vocab import custom_documents_path

    missing = tmp_path / "dta"
    try:
        read_documents(custom_documents_path("imagenet200"), missing)
    except DataError as err:
        text = str(err)
    else:
        raise AssertionError("no DataError")
    assert f"the data root {missing} does not exist" in text
    assert f"reguide-make-fixtures --data_root {missing}" in text and "--out" in text
    assert "reguide_documents/imagenet200.jsonl" in text


def test_utilities_are_console_scripts_that_take_data_root_and_keep_the_old_spellings(tmp_path):
    from reguide_tasks.lmms import check_data
    from reguide_tasks.testing import make_fixtures

    assert make_fixtures.main(["--data_root", str(tmp_path / "a"), "--benchmark", "cifar10", "--per-dataset", "1"]) == 0
    assert make_fixtures.main(["--root", str(tmp_path / "b"), "--benchmark", "cifar10", "--per-dataset", "1"]) == 0
    for flag in ("--data_root", "--data-root"):
        assert check_data.main(["--tasks", "reguide_cifar10_custom", flag, str(tmp_path / "a")]) == 0
    # Installed as commands: the missing-images case through the real console script, exit 1.
    done = subprocess.run([str(Path(sys.executable).with_name("reguide-check-data")), "--tasks", "reguide_cifar10_custom", "--data_root", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and f"the data root {tmp_path / 'c'} does not exist" in done.stdout + done.stderr
    for name in ("reguide-build-documents", "reguide-make-fixtures"):
        helped = subprocess.run([str(Path(sys.executable).with_name(name)), "--help"], capture_output=True, text=True, timeout=120, check=False)
        assert helped.returncode == 0 and "--data_root" in helped.stdout, name


def test_a_wrong_task_name_gets_our_closest_names_in_a_second():
    done, lmms_eval_modules, stderr = run_logging_imports("--model", "reguide_scripted", "--tasks", "reguide_imagenet_200,reguide_baseline_cifar10")
    assert done.returncode == 1
    assert stderr[-1].startswith("reguide-eval: error: unknown task 'reguide_imagenet_200' (did you mean 'reguide_imagenet200'")
    assert lmms_eval_modules == [], "the check should run before lmms-eval is imported"


def test_a_data_root_error_comes_before_lmms_eval_loads(tmp_path):
    done, lmms_eval_modules, stderr = run_logging_imports("--model", "reguide_scripted", "--tasks", "reguide_baseline_imagenet200", "--data_root", str(tmp_path / "nowhere"))
    assert done.returncode == 1
    assert f"data root {tmp_path / 'nowhere'} does not exist" in stderr[-1]
    assert lmms_eval_modules == []
