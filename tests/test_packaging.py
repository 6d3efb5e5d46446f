"""A regular install, as a user without our checkout gets it: the wheel, and lmms-eval's plugin route.

The wheel is built from a copy of the repository's files (what a clone holds) and installed into a
throwaway virtual environment outside the source tree. That environment borrows ``.venv``'s
third-party packages through a ``.pth`` line (so no torch is installed twice) but not its editable
install of this package, whose import hook lives in a ``.pth`` file that a borrowed folder does not
run: ``reguide_tasks`` there is the wheel's copy, which the first test checks.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from cli_runs import offline_env, read_metrics, read_samples
from test_e2e_llava import expected_scripted_baseline

from reguide_tasks.data.documents import interleave_by_dataset
from reguide_tasks.lmms.task_yamls import task_variants

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_TASK = "reguide_baseline_imagenet200_5pct"
FIXTURE_TASK = "reguide_baseline_imagenet200_custom"


def _repository_files() -> list[str]:
    """The files a clone of the working tree would hold: tracked, plus untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode()
    return sorted(name for name in listed.split("\0") if name and (REPO_ROOT / name).is_file())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built (with .venv's locked setuptools) from a fresh copy of the repository's files."""
    source = tmp_path_factory.mktemp("source")
    for name in _repository_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (built,) = dist.glob("reguide_tasks-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A throwaway venv holding the wheel, with .venv's third-party packages borrowed (see module doc)."""
    root = tmp_path_factory.mktemp("wheel_venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = Path(subprocess.run([str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "borrowed_from_dot_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install", "-q", "--no-deps", "--no-index", str(wheel)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


def _run(venv: Path, run_dir: Path, program: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """A program of the wheel's venv, started from a folder outside the source tree."""
    run_dir.mkdir(parents=True, exist_ok=True)
    environment = offline_env(run_dir, ("REGUIDE_", "PYTHONPATH", "LMMS_EVAL_PLUGINS"), **env)
    return subprocess.run([str(venv / "bin" / program), *args], check=False, cwd=run_dir, env=environment,
                          capture_output=True, text=True, timeout=600)


def _describe(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"


def test_wheel_carries_every_task_file_and_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    files = _repository_files()
    tasks = [name for name in files if name.startswith("tasks_yaml/")]
    assert len(tasks) > 30  # yamls, templates, docsets, the hook modules
    wanted = {"reguide_tasks/tasks/" + name.removeprefix("tasks_yaml/") for name in tasks}
    wanted |= {name for name in files if name.startswith("reguide_tasks/") and "__pycache__" not in name}
    assert not wanted - names, f"missing from the wheel: {sorted(wanted - names)[:20]}"


def test_installed_package_reads_only_its_own_files(venv: Path, tmp_path: Path) -> None:
    probe = "import reguide_tasks, reguide_tasks.paths as p, reguide_tasks.data.release as r; print(reguide_tasks.__file__); print(p.TASKS_DIR); print(r.RELEASE_DIR)"
    done = _run(venv, tmp_path, "python", "-c", probe)
    assert done.returncode == 0, _describe(done)
    locations = [Path(line) for line in done.stdout.split()]
    assert len(locations) == 3 and all(venv in path.parents for path in locations), locations
    assert locations[1].name == "tasks" and (locations[1] / "templates" / "baseline.yaml").is_file()


@pytest.mark.e2e
def test_installed_reguide_eval_lists_our_tasks(venv: Path, tmp_path: Path) -> None:
    ours = _run(venv, tmp_path, "reguide-eval", "--tasks", "list")  # our own listing, from the package
    assert ours.returncode == 0, _describe(ours)
    described = {line.split()[0] for line in ours.stdout.splitlines() if line.strip()}
    # lmms-eval's index, built from the installed task folder (what a run resolves names with).
    done = _run(venv, tmp_path, "reguide-eval", "--tasks", "list_subtasks")
    assert done.returncode == 0, _describe(done)
    listed = done.stdout + done.stderr
    missing = [variant.name for variant in task_variants() if f"|{variant.name} " not in listed or variant.name not in described]
    assert not missing, f"not listed: {missing}\n{_describe(done)}"


@pytest.mark.e2e
def test_installed_demo_replays_the_release_and_reports(venv: Path, tmp_path: Path) -> None:
    """The README demo (released GPT-4o answers, ImageNet200 5%) from the wheel alone."""
    out = tmp_path / "out"
    done = _run(venv, tmp_path, "reguide-eval", "--model", "reguide_replay", "--model_args", "model=gpt,missing=skip",
                "--tasks", DEMO_TASK, "--output_path", str(out), "--log_samples")
    assert done.returncode == 0, _describe(done)
    metrics = read_metrics(out, DEMO_TASK)
    assert metrics["auroc_inaturalist"] == pytest.approx(97.7, abs=0.1)
    assert metrics["auroc_ninco"] == pytest.approx(94.2, abs=0.1)
    report = _run(venv, tmp_path, "reguide-report", str(out), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, _describe(report)
    assert "reguide_replay (gpt)" in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")


@pytest.mark.e2e
def test_plain_lmms_eval_finds_our_tasks_through_lmms_eval_plugins(venv: Path, tmp_path: Path, fixture_data) -> None:
    """``LMMS_EVAL_PLUGINS=reguide_tasks python -m lmms_eval ...``: no include path, no checkout, no reguide-eval.

    ``python -m lmms_eval``: lmms-eval's console script lives in .venv's bin, not in the borrowing venv.
    """
    out = tmp_path / "out"
    done = _run(venv, tmp_path, "python", "-m", "lmms_eval", "--model", "reguide_scripted", "--tasks", FIXTURE_TASK,
                "--output_path", str(out), "--log_samples",
                LMMS_EVAL_PLUGINS="reguide_tasks", REGUIDE_DATA_ROOT=str(fixture_data.root))
    assert done.returncode == 0 and "Tasks were not found" not in done.stderr, _describe(done)
    docs = fixture_data.documents["imagenet200"]
    samples = read_samples(out, FIXTURE_TASK, _describe(done))
    assert sorted(s["oodd"]["image"] for s in samples) == sorted(d["image"] for d in docs)
    # in the task's interleaved order on this route too (what a --limit prefix takes)
    assert [s["oodd"]["image"] for s in samples] == [d["image"] for d in interleave_by_dataset(docs)]
    metrics = read_metrics(out, FIXTURE_TASK)
    expected = expected_scripted_baseline(docs, "imagenet200")
    wrong = {key: (metrics.get(key), value) for key, value in expected.items() if metrics.get(key) != pytest.approx(value, abs=1e-9)}
    assert not wrong, f"(got, sklearn): {wrong}"


def test_plugin_folders_join_any_include_path_once() -> None:
    from reguide_tasks.lmms.runtime import with_plugin_folders

    assert with_plugin_folders(None, ["/p"]) == ["/p"]
    assert with_plugin_folders("/mine", ["/p"]) == ["/mine", "/p"]
    assert with_plugin_folders(["/mine", "/p"], ["/p"]) == ["/mine", "/p"]
    assert with_plugin_folders("/mine", []) == "/mine"


def test_our_task_folder_is_indexed_once_when_the_user_names_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """``reguide-eval --include_path tasks_yaml`` from a checkout: TaskManager would parse every YAML twice."""
    from reguide_tasks.lmms.cli import _include_path
    from reguide_tasks.paths import TASKS_DIR

    monkeypatch.chdir(TASKS_DIR.parent)
    assert _include_path(None) == [str(TASKS_DIR)]
    assert _include_path("/mine") == ["/mine", str(TASKS_DIR)]
    assert _include_path(TASKS_DIR.name) == TASKS_DIR.name
    assert _include_path(["/mine", f"{TASKS_DIR}/"]) == ["/mine", f"{TASKS_DIR}/"]
    # only the folders of the tasks of ours that --tasks names (lmms-eval parses every YAML it is given)
    tasks = "reguide_baseline_cifar10,mme,reguide_imagenet200_5pct"
    assert _include_path(None, task_arg=tasks) == [str(TASKS_DIR / "reguide_cifar10"), str(TASKS_DIR / "reguide_imagenet200")]
    assert _include_path(None, task_arg="reguide_all") == [str(TASKS_DIR / "reguide_cifar10"), str(TASKS_DIR / "reguide_imagenet200")]
    assert _include_path(None, task_arg="mme") == [str(TASKS_DIR)]
    assert _include_path(TASKS_DIR.name, task_arg=tasks) == TASKS_DIR.name  # a folder inside one given is not added


def test_plugin_task_folder_is_the_shipped_task_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    from reguide_tasks.paths import TASKS_DIR
    from reguide_tasks.lmms.runtime import install_plugin_task_index, named_plugins, plugin_task_folders

    monkeypatch.setenv("LMMS_EVAL_PLUGINS", "someone_else")
    assert named_plugins() == ["someone_else"] and install_plugin_task_index() is False  # not named: lmms-eval left alone
    monkeypatch.setenv("LMMS_EVAL_PLUGINS", "someone_else, reguide_tasks")
    assert named_plugins() == ["someone_else", "reguide_tasks"]
    assert [Path(p).resolve() for p in plugin_task_folders(["not_installed_pkg", "reguide_tasks"])] == [TASKS_DIR]
