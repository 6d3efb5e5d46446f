"""A user's own benchmark from one file, end to end through the commands a user types:
reguide-make-fixtures (label-coded images at the paths of the file's image lists), reguide-eval
--benchmark (baseline, ReGuide and the full-spectrum task with reguide_scripted; the baseline task with
clip_ood on a tiny random CLIP), reguide-report (the benchmark's own dataset columns), and a malformed
file stopping reguide-eval before any model loads.

The images are synthetic fixtures and the CLIP checkpoint a tiny random one built here (no benchmark
image or hub weight can be fetched); what is tested is the path, with metrics checked against
scikit-learn on the scores the model gave.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_runs import (
    FORKED_PROGRAMS,
    console_script,
    offline_env,
    read_metrics,
    read_samples,
    run_cli,
    run_logging_imports,
)
from sklearn.metrics import roc_auc_score
from test_e2e_llava import expected_scripted_baseline

from reguide_tasks.data.benchmarks import (
    BENCHMARKS,
    ID_ROLES,
    BenchmarkError,
    load_benchmark_file,
    register_benchmark_file,
)
from reguide_tasks.data.documents import stratified_documents
from reguide_tasks.models.clip_ood import ENSEMBLE_TEMPLATES
from reguide_tasks.models.scripted import scripted_score
from reguide_tasks.testing.label_code import read_label_code
from reguide_tasks.testing.tiny_clip import build_tiny_clip

pytestmark = pytest.mark.e2e
CLASSES = ["bolt", "nut", "washer"]
TASKS = ("reguide_baseline_mybench", "reguide_mybench_full", "reguide_baseline_mybench_fsood", "reguide_baseline_mybench_5pct")


def write_user_benchmark(folder: Path) -> Path:
    """The example of docs/benchmarks.md, shrunk: image lists next to the file, classes inline."""
    lists = folder / "lists"
    lists.mkdir(parents=True)
    (lists / "test_parts.txt").write_text("".join(f"parts/{c}_{i}.png {c}\n" for c in range(3) for i in range(8)), encoding="utf-8")
    (lists / "test_scrap.txt").write_text("".join(f"scrap/{i}.png -1\n" for i in range(16)), encoding="utf-8")
    (lists / "test_sky.txt").write_text("".join(f"sky/{i}.jpg -1\n" for i in range(12)), encoding="utf-8")
    (lists / "worn_parts.txt").write_text("".join(f"worn/{c}_{i}.png {c}\n" for c in range(3) for i in range(3)), encoding="utf-8")
    spec = {
        "name": "mybench",
        "description": "machine parts",
        "classes": CLASSES,
        "imglist_dir": "lists",
        "datasets": {
            "parts": {"role": "id"},
            "scrap": {"role": "near"},
            "sky": {"role": "far"},
            "worn": {"role": "csid", "imglist": "worn_parts.txt"},
        },
    }
    path = folder / "my_bench.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _run(program: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The program's run (a fork of this process for reguide-eval / reguide-report: tests/cli_runs.py)."""
    if program in FORKED_PROGRAMS:
        return run_cli(program, list(args), cwd=cwd, env=offline_env(cwd))
    return subprocess.run([console_script(program), *args], cwd=cwd, env=offline_env(cwd), capture_output=True, text=True, timeout=600, check=False)


def _describe(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def user_run(tmp_path_factory: pytest.TempPathFactory):
    """The fixtures and one reguide-eval run of the three tasks; (work folder, output folder)."""
    work = tmp_path_factory.mktemp("user_benchmark")
    bench_file = write_user_benchmark(work)
    made = _run("reguide-make-fixtures", "--data_root", "data", "--benchmark", str(bench_file), "--per-dataset", "100", cwd=work)
    assert made.returncode == 0, _describe(made)
    assert "mybench: 52 images" in made.stdout and "mybench_fsood: 61 images" in made.stdout
    done = _run("reguide-eval", "--benchmark", str(bench_file), "--model", "reguide_scripted", "--tasks", ",".join(TASKS),
                "--data_root", "data", "--output_path", "out", "--log_samples", cwd=work)
    assert done.returncode == 0, _describe(done)
    register_benchmark_file(bench_file)  # this process computes the expected metrics from it
    yield work, work / "out"
    BENCHMARKS.pop("mybench", None)
    BENCHMARKS.pop("mybench_fsood", None)


def test_fixture_images_carry_their_label_code(user_run) -> None:
    from PIL import Image

    work, _ = user_run
    code = read_label_code(Image.open(work / "data" / "parts" / "2_1.png"))
    assert code is not None and (code.role, code.label) == ("id", 2)
    assert read_label_code(Image.open(work / "data" / "worn" / "1_0.png")).role == "id"  # a shifted ID image
    assert read_label_code(Image.open(work / "data" / "sky" / "3.jpg")).role == "far"
    checked = _run("reguide-check-data", "--benchmark", "my_bench.yaml", "--tasks", "reguide_baseline_mybench,reguide_mybench_fsood", "--data_root", "data", cwd=work)
    assert checked.returncode == 0 and "reguide_mybench_fsood: all 61 images present" in checked.stdout, _describe(checked)


def test_baseline_and_reguide_tasks_score_the_users_datasets(user_run) -> None:
    _, out = user_run
    records = [row["oodd"] for row in read_samples(out, TASKS[0])]
    docs = [{"doc_key": r["image"], "role": r["role"], "dataset": r["dataset"]} for r in records]
    assert {r["dataset"] for r in records} == {"parts", "scrap", "sky"} and len(records) == 52
    metrics = read_metrics(out, TASKS[0])
    for key, value in expected_scripted_baseline(docs, "mybench").items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
    reguide = read_metrics(out, TASKS[1])
    assert {"auroc_scrap", "auroc_sky", "mean_kept_parts", "aux_pred_rate_sky"} <= set(reguide) and reguide["id_acc"] == 100.0
    assert reguide["mean_kept_scrap"] == 37.0  # the scripted model's 40 suggestions, 3 filtered out


def test_the_full_spectrum_task_counts_shifted_images_as_id(user_run) -> None:
    _, out = user_run
    records = [row["oodd"] for row in read_samples(out, TASKS[2])]
    assert sum(r["dataset"] == "worn" for r in records) == 9 and {r["role"] for r in records if r["dataset"] == "worn"} == {"csid"}
    score = {r["image"]: scripted_score(r["image"], r["role"]) for r in records}
    id_side = [score[r["image"]] for r in records if r["role"] in ID_ROLES]
    metrics = read_metrics(out, TASKS[2])
    for dataset in ("scrap", "sky"):
        ood = [score[r["image"]] for r in records if r["dataset"] == dataset]
        expected = 100 * roc_auc_score(np.r_[np.ones(len(id_side)), np.zeros(len(ood))], np.r_[id_side, ood])
        assert metrics[f"auroc_{dataset}"] == pytest.approx(expected, abs=1e-9)
    assert metrics["id_acc"] == 100.0 and metrics["id_acc_worn"] == 100.0 and metrics["fail_rate_worn"] == 0.0
    assert "auroc_worn" not in metrics


def test_a_stratified_subset_is_written_next_to_the_results(user_run) -> None:
    work, out = user_run
    written = [json.loads(line) for line in (out / "document_lists" / f"{TASKS[3]}.jsonl").read_text(encoding="utf-8").splitlines()]
    expected = stratified_documents("mybench", 5, work / "lists")
    assert [d["doc_key"] for d in written] == [d["doc_key"] for d in expected]
    # one per ID class (3 x 8 images: round(0.4) -> at least 1), round(5% of 16) = 1 scrap, round(5% of 12) = 1 sky
    assert [d["dataset"] for d in written] == ["parts"] * 3 + ["scrap", "sky"]
    assert {row["oodd"]["image"] for row in read_samples(out, TASKS[3])} == {d["image"] for d in written}


def test_the_report_has_the_benchmarks_own_columns(user_run) -> None:
    work, out = user_run
    assert (out / "benchmarks" / "mybench.yaml").is_file()  # what the report reads the benchmark from
    done = _run("reguide-report", str(out), "--out", "report", "--no-plots", cwd=work)
    assert done.returncode == 0, _describe(done)
    text = (work / "report" / "report.md").read_text(encoding="utf-8")
    assert "## mybench\n" in text and "## mybench_fsood\n" in text
    assert "ID: parts; near-OoD: scrap; far-OoD: sky" in text
    assert "AUROC scrap" in text and "AUROC sky" in text
    fsood = text.split("## mybench_fsood\n", 1)[1]
    assert "covariate-shifted ID (on the ID side of every OoD metric): worn" in fsood
    assert "| Model | ID acc parts | ID acc worn |" in fsood and "AUROC worn" not in fsood
    assert (work / "report" / "mybench.csv").is_file()


def test_an_include_path_folder_runs_like_the_file_and_is_reported(user_run, tmp_path: Path) -> None:
    """reguide-new-benchmark's folder on reguide-eval --include_path (no --benchmark): the tasks run
    on the same documents with the same figures, the stratified list and the benchmark copy are
    written next to the results, and reguide-report names the benchmark's own columns; so it does for
    a plain lmms-eval run of the folder. The programs run as processes of their own: this one has the
    benchmark registered already."""
    work, first_out = user_run
    made = _run("reguide-new-benchmark", "my_bench.yaml", "--out", str(tmp_path / "tasks"), cwd=work)
    assert made.returncode == 0, _describe(made)
    out, tasks = tmp_path / "out", f"{TASKS[0]},{TASKS[3]}"
    args = ["--include_path", str(tmp_path / "tasks"), "--model", "reguide_scripted", "--tasks", tasks, "--data_root", "data", "--output_path", str(out), "--log_samples"]
    done = subprocess.run([console_script("reguide-eval"), *args], cwd=work, env=offline_env(tmp_path), capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, _describe(done)
    assert (out / "benchmarks" / "mybench.yaml").is_file() and not (out / "benchmark_tasks").exists()  # the folder's own tasks ran
    assert read_metrics(out, TASKS[0]) == read_metrics(first_out, TASKS[0])
    written = (out / "document_lists" / f"{TASKS[3]}.jsonl").read_text(encoding="utf-8")
    assert written == (first_out / "document_lists" / f"{TASKS[3]}.jsonl").read_text(encoding="utf-8")
    report = subprocess.run([console_script("reguide-report"), str(out), "--out", str(tmp_path / "report"), "--no-plots"],
                            cwd=work, env=offline_env(tmp_path), capture_output=True, text=True, timeout=600, check=False)
    assert report.returncode == 0, _describe(report)
    text = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "## mybench\n" in text and "ID: parts; near-OoD: scrap; far-OoD: sky" in text and "AUROC scrap" in text
    # Plain lmms-eval on the folder: no copy next to its results; the report finds the file the task's metadata names.
    plain = tmp_path / "plain"
    done = subprocess.run([console_script("lmms-eval"), "--include_path", str(tmp_path / "tasks"), "--model", "reguide_scripted", "--tasks", TASKS[0],
                           "--output_path", str(plain), "--log_samples"],
                          cwd=work, env=offline_env(tmp_path, REGUIDE_DATA_ROOT=str(work / "data")), capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, _describe(done)
    assert not (plain / "benchmarks").exists() and read_metrics(plain, TASKS[0]) == read_metrics(first_out, TASKS[0])
    report = subprocess.run([console_script("reguide-report"), str(plain), "--out", str(tmp_path / "plain_report"), "--no-plots"],
                            cwd=work, env=offline_env(tmp_path), capture_output=True, text=True, timeout=600, check=False)
    assert report.returncode == 0, _describe(report)
    text = (tmp_path / "plain_report" / "report.md").read_text(encoding="utf-8")
    assert "## mybench\n" in text and "ID: parts; near-OoD: scrap; far-OoD: sky" in text and "AUROC scrap" in text


def test_an_include_path_folder_gets_the_image_check_before_lmms_eval(user_run, tmp_path: Path) -> None:
    work, _ = user_run
    made = _run("reguide-new-benchmark", "my_bench.yaml", "--out", str(tmp_path / "tasks"), cwd=work)
    assert made.returncode == 0, _describe(made)
    done, lmms_eval_modules, stderr = run_logging_imports(
        "--include_path", str(tmp_path / "tasks"), "--model", "reguide_scripted", "--tasks", TASKS[0], "--data_root", str(tmp_path / "no_images"),
        env=offline_env(tmp_path), cwd=work)
    assert done.returncode == 1
    assert stderr[-1].startswith(f"reguide-eval: error: task {TASKS[0]}:"), stderr[-3:]
    assert lmms_eval_modules == [], "the images should be checked before lmms-eval is imported"
    # A folder whose benchmark file is gone: said before anything runs.
    (work / "moved.yaml").write_text((work / "my_bench.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    made = _run("reguide-new-benchmark", "moved.yaml", "--out", str(tmp_path / "gone"), cwd=work)
    assert made.returncode == 0, _describe(made)
    (work / "moved.yaml").unlink()
    done, lmms_eval_modules, stderr = run_logging_imports(
        "--include_path", str(tmp_path / "gone"), "--model", "reguide_scripted", "--tasks", TASKS[0], env=offline_env(tmp_path), cwd=work)
    assert done.returncode == 1 and "moved.yaml, which is not found: run reguide-new-benchmark FILE --out" in stderr[-1], stderr[-3:]
    assert lmms_eval_modules == []


def test_clip_ood_runs_the_users_baseline_task(user_run, tmp_path: Path) -> None:
    work, _ = user_run
    clip = build_tiny_clip(tmp_path / "clip", [*CLASSES, *ENSEMBLE_TEMPLATES, "a photo of a {}"])
    done = _run("reguide-eval", "--benchmark", "my_bench.yaml", "--model", "clip_ood", "--model_args", f"pretrained={clip},score=mcm",
                "--tasks", TASKS[0], "--data_root", "data", "--output_path", str(tmp_path / "clip_out"), "--log_samples", "--batch_size", "8", cwd=work)
    assert done.returncode == 0, _describe(done)
    records = [row["oodd"] for row in read_samples(tmp_path / "clip_out", TASKS[0])]
    assert not any(r["failed"] for r in records)
    id_scores = [r["ood_score"] for r in records if r["role"] == "id"]
    metrics = read_metrics(tmp_path / "clip_out", TASKS[0])
    for dataset in ("scrap", "sky"):
        ood = [r["ood_score"] for r in records if r["dataset"] == dataset]
        expected = 100 * roc_auc_score(np.r_[np.ones(len(id_scores)), np.zeros(len(ood))], np.r_[id_scores, ood])
        assert metrics[f"auroc_{dataset}"] == pytest.approx(expected, abs=1e-9)


def test_a_malformed_file_stops_reguide_eval_before_any_model(tmp_path: Path) -> None:
    bench_file = write_user_benchmark(tmp_path)
    spec = yaml.safe_load(bench_file.read_text(encoding="utf-8"))
    spec["datasets"]["sky"]["role"] = "distant"
    bench_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    done, lmms_eval_modules, stderr = run_logging_imports(
        "--benchmark", str(bench_file), "--model", "reguide_scripted", "--tasks", "reguide_baseline_mybench", env=offline_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert stderr[-1].startswith("reguide-eval: error:") and "datasets.sky.role: unknown dataset role 'distant'" in stderr[-1]
    assert lmms_eval_modules == [], "the file should be refused before lmms-eval (and any model) is imported"
    with pytest.raises(BenchmarkError):
        load_benchmark_file(bench_file)


def test_reguide_new_benchmark_writes_an_include_path_folder(tmp_path: Path) -> None:
    bench_file = write_user_benchmark(tmp_path)
    done = _run("reguide-new-benchmark", str(bench_file), "--out", "tasks", cwd=tmp_path)
    assert done.returncode == 0, _describe(done)
    docset = json.loads((tmp_path / "tasks" / "reguide_mybench" / "docsets" / "full.jsonl").read_text(encoding="utf-8"))
    assert docset["benchmark_file"] == str(bench_file.resolve())  # a plain lmms-eval run registers it from here
    names = {p.stem for p in (tmp_path / "tasks").rglob("*.yaml")}
    assert {"reguide_baseline_mybench", "reguide_mybench_full", "reguide_mybench_custom", "reguide_mybench_5pct", "reguide_baseline_mybench_25pct",
            "reguide_baseline_mybench_fsood", "reguide_mybench_fsood_5pct"} <= names  # stratified 5% / 25%: no released subset
