"""The committed task YAMLs are what reguide_tasks.lmms.task_yamls generates, and name real hooks."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from reguide_tasks.data.benchmarks import (
    BENCHMARKS,
    get_benchmark,
    load_benchmark_file,
    register_benchmark,
)
from reguide_tasks.lmms import hooks as task_hooks
from reguide_tasks.lmms.records import metric_keys
from reguide_tasks.lmms.task_yamls import (
    process_results_variant_names,
    render_task_yamls,
    task_variants,
    write_process_results_variants,
    write_task_yamls,
)
from reguide_tasks.paths import TASKS_DIR
from reguide_tasks.vocab import split_metric_key


def test_committed_yamls_are_up_to_date():
    assert write_task_yamls(TASKS_DIR, check=True) == [], "run: python utils/generate_task_yamls.py"


def test_every_generated_file_names_the_benchmark_file_to_edit(tmp_path):
    """The first line of a generated task file points at the benchmark file it comes from (a
    full-spectrum folder: its benchmark's), not at the module that reads those files."""
    folders = sorted(p for p in TASKS_DIR.glob("reguide_*") if p.is_dir())
    assert len(folders) == 8
    for folder in folders:
        home = get_benchmark(folder.name.removeprefix("reguide_")).prompt_name
        for path in [*folder.glob("*.yaml"), *folder.glob("_*_template_yaml")]:
            first = path.read_text(encoding="utf-8").splitlines()[0]
            named = re.search(r"from (\S+\.yaml) ", first)
            assert named and named.group(1) == f"reguide_tasks/data/benchmark_files/{home}.yaml", (path, first)
            assert (TASKS_DIR.parent / named.group(1)).is_file()
    # A user's benchmark: its own file, wherever it is.
    from test_benchmark_files import write_bench

    bench = load_benchmark_file(write_bench(tmp_path))
    register_benchmark(bench)
    try:
        written = render_task_yamls([bench])
        assert {text.splitlines()[0] for rel, text in written.items() if rel.endswith(("yaml", "_yaml"))} == {
            f"# Generated from {bench.source} by reguide-eval --benchmark / reguide-new-benchmark: edit that file, not this one."}
    finally:
        BENCHMARKS.pop("mybench", None)


def test_task_names_are_guessable_and_unique():
    names = [v.name for v in task_variants()]
    assert len(names) == len(set(names))
    for expected in ("reguide_baseline_cifar10", "reguide_baseline_imagenet200", "reguide_baseline_imagenet200_5pct",
                     "reguide_baseline_imagenet200_full", "reguide_imagenet200", "reguide_cifar10", "reguide_cifar10_full"):
        assert expected in names
    defaults = {v.name: v.subset for v in task_variants() if v.default}
    assert defaults["reguide_imagenet200"] == "subset5" and defaults["reguide_baseline_imagenet200"] == "subset25"


def test_every_aggregation_named_in_yaml_resolves():
    text = "".join(render_task_yamls().values())
    utils = _task_utils("reguide_cifar10")
    for bench in ("cifar10", "imagenet200"):
        for stage in ("baseline", "reguide"):
            for key in metric_keys(get_benchmark(bench), stage):
                family, _ = split_metric_key(key)
                assert f"{{metric: {key}, aggregation: !function utils.aggregate_{family}," in text
                assert callable(getattr(utils, f"aggregate_{family}"))
    assert callable(utils.baseline_process_results_msp_most_ood)


def _task_utils(folder: str):
    spec = importlib.util.spec_from_file_location(f"{folder}_utils", TASKS_DIR / folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_function_a_yaml_names_is_defined_in_code_you_can_grep():
    """No module __getattr__: each ``!function utils.<name>`` is a def or an assignment in reguide_tasks."""
    named = set(re.findall(r"!function utils\.(\w+)", "".join(render_task_yamls().values())))
    package = Path(task_hooks.__file__).resolve().parents[1]
    sources = "".join(path.read_text(encoding="utf-8") for path in package.rglob("*.py"))
    for folder in ("reguide_cifar10", "reguide_imagenet200"):
        utils = _task_utils(folder)
        assert not hasattr(utils, "__getattr__")
        for name in named:
            assert callable(getattr(utils, name)), name
            assert re.search(rf"^(def {name}\(|{name} = )", sources, re.MULTILINE), f"{name} is not defined by name anywhere"
    for name, *_ in process_results_variant_names():
        assert re.search(rf"^{name} = make_process_results\(", sources, re.MULTILINE)


def test_the_process_results_variants_module_is_up_to_date():
    assert not write_process_results_variants(check=True), "run: python utils/generate_task_yamls.py"


def test_only_our_tasks_decides_the_process_docs_parallel_default():
    from reguide_tasks.lmms.cli import only_our_tasks

    assert only_our_tasks("reguide_imagenet200,reguide_baseline_cifar10_25pct")
    assert only_our_tasks("reguide_all")
    assert not only_our_tasks("reguide_imagenet200,mme")
    assert not only_our_tasks(None) and not only_our_tasks("")
