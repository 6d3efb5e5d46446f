"""The committed task YAMLs are what reguide_tasks.lmms.task_yamls generates, and name real hooks."""

from __future__ import annotations

from reguide_tasks.lmms import hooks as task_hooks
from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.lmms.records import metric_keys
from reguide_tasks.paths import TASKS_DIR
from reguide_tasks.lmms.task_yamls import render_task_yamls, task_variants, write_task_yamls


def test_committed_yamls_are_up_to_date():
    assert write_task_yamls(TASKS_DIR, check=True) == [], "run: python utils/generate_task_yamls.py"


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
    for bench in ("cifar10", "imagenet200"):
        for key in metric_keys(get_benchmark(bench)):
            assert f"utils.aggregate_{key}\n" in text
            assert callable(task_hooks.resolve_hook(f"aggregate_{key}"))
    assert callable(task_hooks.resolve_hook("baseline_process_results_msp_most_ood"))


def test_only_our_tasks_decides_the_process_docs_parallel_default():
    from reguide_tasks.lmms.cli import only_our_tasks

    assert only_our_tasks("reguide_imagenet200,reguide_baseline_cifar10_25pct")
    assert only_our_tasks("reguide_all")
    assert not only_our_tasks("reguide_imagenet200,mme")
    assert not only_our_tasks(None) and not only_our_tasks("")
