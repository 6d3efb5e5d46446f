"""The task YAML files under ``tasks_yaml/`` and the ``process_results`` variants module, written from
the benchmark files (:mod:`reguide_tasks.data.benchmarks`); a user's benchmark gets a task folder of
its own the same way (:func:`write_benchmark_tasks`, used by ``reguide-eval --benchmark`` and
``reguide-new-benchmark``).

The YAMLs are data that lmms-eval reads; their metric lists must match
:func:`reguide_tasks.lmms.records.metric_keys`, so they are generated here and a test checks that the
committed files are up to date (``python utils/generate_task_yamls.py`` rewrites them). Every name a
YAML gives lmms-eval is a real function: the hooks of :mod:`reguide_tasks.lmms.hooks`, one aggregation
per metric family (:mod:`reguide_tasks.lmms.aggregations`) and the ``process_results`` variants
written out in :mod:`reguide_tasks.lmms.process_results_variants`.

Per benchmark, ``_default_template_yaml`` holds what both stages share; ``_baseline_template_yaml`` and
``_reguide_template_yaml`` include it and add the stage's prompts, scoring and metric list (one line
per metric key: lmms-eval needs an entry for every key, and the two stages' lists differ).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reguide_tasks.answers.key_matching import READINGS
from reguide_tasks.answers.scoring import FAILURE_POLICIES, SCORE_RULES
from reguide_tasks.data.benchmarks import BENCHMARKS, STAGES, Benchmark, stratified_percent
from reguide_tasks.data.documents import DOCUMENT_ORDER
from reguide_tasks.lmms.records import metric_keys
from reguide_tasks.vocab import (
    custom_documents_path,
    higher_is_better,
    split_metric_key,
)


# max_new_tokens and the default document set per stage come from each benchmark's file.
SUBSET_SUFFIX = {"subset25": "25pct", "subset5": "5pct", "full": "full", "file": "custom"}
# The tags reguide_all / reguide_baseline_all hold the default task of the paper's two benchmarks.
TAGGED_BENCHMARKS = ("cifar10", "imagenet200")


def header(bench: Benchmark) -> str:
    """The first line of a generated file: which benchmark file it comes from and what rewrites it."""
    if bench.shipped:
        source = f"reguide_tasks/data/benchmark_files/{Path(bench.source).name}"
        return f"# Generated from {source} by utils/generate_task_yamls.py: edit that file and rerun it, not this file.\n"
    return f"# Generated from {bench.source} by reguide-eval --benchmark / reguide-new-benchmark: edit that file, not this one.\n"



def subset_suffix(subset: str) -> str:
    """The task-name ending of a document set: a released or stratified ``N``% subset -> ``Npct``."""
    pct = stratified_percent(subset)
    return f"{pct}pct" if pct is not None else SUBSET_SUFFIX[subset]


@dataclass(frozen=True)
class TaskVariant:
    stage: str  # baseline | reguide
    benchmark: str
    subset: str  # subset25 | subset5 | stratified<pct> | full | file
    default: bool

    @property
    def name(self) -> str:
        base = f"reguide_baseline_{self.benchmark}" if self.stage == "baseline" else f"reguide_{self.benchmark}"
        return base if self.default else f"{base}_{subset_suffix(self.subset)}"

    @property
    def docset_file(self) -> str:
        return f"docsets/{self.subset}.jsonl"


def task_variants(benchmarks: list[Benchmark] | None = None) -> list[TaskVariant]:
    """Every task of ``benchmarks`` (default: every registered one, a user's own included)."""
    variants = []
    for stage in STAGES:
        for bench in BENCHMARKS.values() if benchmarks is None else benchmarks:
            variants.append(TaskVariant(stage, bench.name, bench.default_subset[stage], True))
            variants.extend(TaskVariant(stage, bench.name, s, False) for s in bench.subset_names())
    return variants


def task_benchmark(task: str) -> str | None:
    """The benchmark of one of our task names, None for any other name."""
    return next((v.benchmark for v in task_variants() if v.name == task), None)


def _metric_list(bench: Benchmark, stage: str) -> str:
    lines = ["metric_list:"]
    for key in metric_keys(bench, stage):
        family, _ = split_metric_key(key)
        direction = higher_is_better(key)
        better = "null" if direction is None else str(direction).lower()  # null: no arrow in lmms-eval's table
        lines.append(f"  - {{metric: {key}, aggregation: !function utils.aggregate_{family}, higher_is_better: {better}}}")
    return "\n".join(lines) + "\n"


def _default_template(bench: Benchmark) -> str:
    return (
        header(bench)
        + "dataset_path: json\n"
        + "test_split: test\n"
        + "process_docs: !function utils.expand_document_sets\n"
        + "doc_to_visual: !function utils.doc_to_visual\n"
        + "doc_to_target: label_name\n"
        + "lmms_eval_specific_kwargs:\n"
        + "  default:\n"
        + '    pre_prompt: ""\n'
        + '    post_prompt: ""\n'
        + "metadata:\n"
        + "  version: 0.1\n"
        # In the task config, so lmms-eval's answer cache (keyed by document position) never hands
        # an answer cached under another order to a different image.
        + f"  document_order: {DOCUMENT_ORDER}\n"
        # A user's benchmark: its file, for a report of a plain lmms-eval run (no copy next to the
        # results); lmms-eval writes a task's metadata into the results file. A JSON string is YAML.
        + ("" if bench.shipped else f"  benchmark_file: {json.dumps(bench.source)}\n")
    )


def _stage_template(stage: str, bench: Benchmark) -> str:
    output_type = "generate_until" if stage == "baseline" else "generate_until_agentic"
    steps = "" if stage == "baseline" else "  max_agentic_steps: 2\n"
    return (
        header(bench)
        + "include: _default_template_yaml\n"
        + f"output_type: {output_type}\n"
        + f"doc_to_text: !function utils.{stage}_doc_to_text\n"
        + f"process_results: !function utils.{stage}_process_results\n"
        + "generation_kwargs:\n"
        + f"  max_new_tokens: {bench.max_new_tokens}\n"
        + "  temperature: 0\n"
        + "  do_sample: false\n"
        + "  until: []\n"
        + steps
        + _metric_list(bench, stage)
    )


def _task_yaml(variant: TaskVariant, bench: Benchmark) -> str:
    tags = ""
    if variant.default and variant.benchmark in TAGGED_BENCHMARKS:
        tags = 'tag:\n  - ' + ('reguide_baseline_all' if variant.stage == 'baseline' else 'reguide_all') + '\n'
    return (
        header(bench)
        + f"include: _{variant.stage}_template_yaml\n"
        + f"task: {variant.name}\n"
        + tags
        + "dataset_kwargs:\n"
        + "  data_files:\n"
        + f"    test: {variant.docset_file}\n"
    )


def _docset(variant: TaskVariant, bench: Benchmark) -> str:
    row = {"benchmark": variant.benchmark, "subset": variant.subset, "path": custom_documents_path(variant.benchmark) if variant.subset == "file" else "", "data_root": ""}
    if not bench.shipped:  # the process that reads the documents registers the file (plain lmms-eval too)
        row["benchmark_file"] = bench.source
    return json.dumps(row, ensure_ascii=False) + "\n"


def render_task_yamls(benchmarks: list[Benchmark] | None = None) -> dict[str, str]:
    """Relative path -> file text, for every generated file of ``benchmarks`` (default: the shipped
    ones, i.e. everything under ``tasks_yaml/`` but the templates)."""
    files: dict[str, str] = {}
    chosen = [b for b in BENCHMARKS.values() if b.shipped] if benchmarks is None else benchmarks
    for variant in task_variants(chosen):
        folder = f"reguide_{variant.benchmark}"
        bench = BENCHMARKS[variant.benchmark]
        files[f"{folder}/_default_template_yaml"] = _default_template(bench)
        files[f"{folder}/_{variant.stage}_template_yaml"] = _stage_template(variant.stage, bench)
        files[f"{folder}/{variant.name}.yaml"] = _task_yaml(variant, bench)
        files[f"{folder}/{variant.docset_file}"] = _docset(variant, bench)
        files[f"{folder}/utils.py"] = UTILS_PY
    return files


def process_results_variant_names() -> list[tuple[str, str, str, str, str]]:
    """``(name, stage, score rule, failure policy, key reading)`` of every ``process_results`` variant."""
    variants = []
    for stage in ("baseline", "reguide"):
        for rule in SCORE_RULES:
            for policy in FAILURE_POLICIES:
                for reading in READINGS:
                    suffix = "_strict" if reading == "strict" else ""
                    variants.append((f"{stage}_process_results_{rule}_{policy}{suffix}", stage, rule, policy, reading))
    return variants


def render_process_results_variants() -> str:
    """The text of :mod:`reguide_tasks.lmms.process_results_variants`."""
    names = process_results_variant_names()
    lines = [
        "# Generated by utils/generate_task_yamls.py from reguide_tasks/answers/scoring.py (SCORE_RULES, FAILURE_POLICIES): edit those, not this file.\n",
        '"""Every ``process_results`` a task YAML can name: ``<stage>_process_results_<score rule>_<failure',
        "policy>``, and the same ending in ``_strict`` for the key reading without repair (see",
        ':func:`reguide_tasks.lmms.hooks.make_process_results`). Generated so that each name is a line to',
        'grep for; ``tests/test_task_yamls.py`` checks the file is up to date."""',
        "",
        "from reguide_tasks.lmms.hooks import make_process_results",
        "",
    ]
    lines += [f'{name} = make_process_results("{stage}", "{rule}", "{policy}", "{reading}")' for name, stage, rule, policy, reading in names]
    lines += ["", "__all__ = ["] + [f'    "{name}",' for name in sorted(name for name, *_ in names)] + ["]"]
    return "\n".join(lines) + "\n"


UTILS_PY = '''"""The functions this folder's task YAMLs name (``!function utils.<name>``); see reguide_tasks.lmms.yaml_functions."""

from reguide_tasks.lmms.yaml_functions import *
'''


def write_task_yamls(root: Path, check: bool = False) -> list[str]:
    """Write (or with ``check`` only compare) the generated files; return the paths that differ."""
    stale = []
    for rel, text in render_task_yamls().items():
        path = root / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(rel)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    return stale


def write_benchmark_tasks(bench: Benchmark, out: Path) -> list[Path]:
    """Write the task folders of a (user's) benchmark and its full-spectrum view under ``out``, for
    lmms-eval's ``--include_path``; return the folders."""
    views = [one for one in (bench, bench.fsood_view()) if one is not None]
    for rel, text in render_task_yamls(views).items():
        path = Path(out) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return [Path(out) / f"reguide_{one.name}" for one in views]


VARIANTS_MODULE = Path(__file__).resolve().parent / "process_results_variants.py"


def write_process_results_variants(path: Path = VARIANTS_MODULE, check: bool = False) -> bool:
    """Write (or with ``check`` only compare) the variants module; return whether it differed."""
    text = render_process_results_variants()
    stale = not path.exists() or path.read_text(encoding="utf-8") != text
    if stale and not check:
        path.write_text(text, encoding="utf-8")
    return stale
