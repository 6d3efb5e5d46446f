"""Runs compared on the same images: which stage a run is, which document set it evaluated, and two
runs' scores of the documents both kept, for a paired test of one dataset or one near / far group."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reguide_tasks.lmms.task_yamls import task_variants
from reguide_tasks.metrics.paired import PairedAUROCTest, delong_mean_test, delong_test
from reguide_tasks.report.runs import Run
from reguide_tasks.report.samples import RunScores
from reguide_tasks.report.tables import config_value


def run_stage(run: Run) -> str:
    """'reguide' (two-stage) or 'baseline': our task's stage, else a task of your own's output type
    (``generate_until_agentic`` is ReGuide), else its name."""
    ours = {variant.name: variant.stage for variant in task_variants()}
    if run.task in ours:
        return ours[run.task]
    output_type = config_value(run.task_config, "output_type")
    if output_type:
        return "reguide" if output_type == "generate_until_agentic" else "baseline"
    return "baseline" if "baseline" in run.task else "reguide"


def document_set_id(scores: RunScores | None) -> str:
    """A short fingerprint of the documents a run was given ("" without samples)."""
    if scores is None or not scores.documents:
        return ""
    digest = hashlib.sha256("\n".join(sorted(scores.documents)).encode("utf-8")).hexdigest()
    return digest[:8]


def target_datasets(scores: RunScores, target: str | tuple[str, ...]) -> list[str]:
    """The OoD datasets a metric target stands for: itself, or the group's datasets the run has; a
    tuple of datasets stands for the mean over those the run has."""
    if isinstance(target, tuple):
        return [d for d in target if d in scores.scores]
    if target in ("near", "far"):
        group = scores.benchmark.near if target == "near" else scores.benchmark.far
        return [d for d in group if d in scores.scores]
    return [target] if target in scores.scores else []


@dataclass(frozen=True)
class PairedTarget:
    """Two runs' scores of the documents both kept: the ID images and, per OoD dataset, its images."""

    id_a: np.ndarray
    id_b: np.ndarray
    ood: dict[str, tuple[np.ndarray, np.ndarray]]
    n_unpaired: int  # documents kept by only one of the runs (left out of the test)


def _paired(keys_a: np.ndarray, a: np.ndarray, keys_b: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    where_b = {key: i for i, key in enumerate(keys_b)}
    pick_a = [i for i, key in enumerate(keys_a) if key in where_b]
    pick_b = [where_b[keys_a[i]] for i in pick_a]
    unpaired = (len(keys_a) - len(pick_a)) + (len(keys_b) - len(pick_b))
    return a[pick_a], b[pick_b], unpaired


def paired_target(a: RunScores, b: RunScores, datasets: Sequence[str]) -> PairedTarget:
    """Pair two runs' kept scores by document, for the ID images and each of ``datasets``."""
    id_a, id_b, unpaired = _paired(a.id_keys, a.id_scores, b.id_keys, b.id_scores)
    ood = {}
    for dataset in datasets:
        ood_a, ood_b, missed = _paired(a.keys.get(dataset, np.empty(0)), a.scores.get(dataset, np.empty(0)), b.keys.get(dataset, np.empty(0)), b.scores.get(dataset, np.empty(0)))
        ood[dataset] = (ood_a, ood_b)
        unpaired += missed
    return PairedTarget(id_a, id_b, ood, unpaired)


def paired_auroc_test(a: RunScores, b: RunScores, target: str | tuple[str, ...]) -> tuple[PairedAUROCTest | None, int]:
    """DeLong's paired test of AUROC(a) - AUROC(b) on the shared documents of a dataset, or of the
    near / far mean (or the mean over a tuple of datasets) over the datasets both runs have; (None, 0)
    when there is nothing to pair.
    """
    datasets = [d for d in target_datasets(a, target) if d in b.scores]
    if not datasets:
        return None, 0
    pairs = paired_target(a, b, datasets)
    if len(datasets) == 1 and target not in ("near", "far"):
        ood_a, ood_b = pairs.ood[datasets[0]]
        is_id = np.r_[np.ones(pairs.id_a.size, bool), np.zeros(ood_a.size, bool)]
        result = delong_test(is_id, np.r_[pairs.id_a, ood_a], np.r_[pairs.id_b, ood_b])
    else:
        result = delong_mean_test(pairs.id_a, pairs.id_b, pairs.ood)
    return result, pairs.n_unpaired


def fmt_delta(result: PairedAUROCTest | None, p_adjusted: float, alpha: float = 0.05) -> str:
    """``+3.1 [1.0, 5.2]*``: the difference in percentage points, its 95% CI, ``*`` if the Holm-adjusted
    p-value is at most ``alpha``."""
    if result is None or math.isnan(result.delta):
        return "n/a"
    text = f"{result.delta:+.1f}"
    if not (math.isnan(result.ci_low) or math.isnan(result.ci_high)):
        text += f" [{result.ci_low:+.1f}, {result.ci_high:+.1f}]"
    return text + ("*" if not math.isnan(p_adjusted) and p_adjusted <= alpha else "")
