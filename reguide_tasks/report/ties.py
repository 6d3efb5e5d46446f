"""Ties at the FPR@95 thresholds: how far a block of tied scores could move each FPR cell, and the
mark a report puts on a cell whose figure rests on such a block.

Verbalised confidences tie a lot (many answers say 100.0). Both FPR rules stop at the first ROC
point reaching 95% TPR and count every image tied at its threshold on the same side, so one block
can carry an FPR from a few percent to 100 (:func:`reguide_tasks.metrics.ood.fpr_tie_range`). The
figure is right by its definition; the mark tells a reader it would move under any other tie-break.

Column keys: ``<fpr key>_tie_low``, the FPR before the block, next to ``<fpr key>`` (the reported
value, the top of the range), for ``fpr95`` / ``fpr95tpr`` of every OoD dataset and of near / far
(the mean of its datasets' lows, where every dataset of the group has scores).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from reguide_tasks.metrics.ood import fpr_tie_range
from reguide_tasks.report.samples import RunScores

# A cell is marked when its tie block spans more than this many percentage points.
TIE_FLAG_POINTS = 5.0
TIE_MARK = "†"
FPR_RULES = {"fpr95": "openood", "fpr95tpr": "classic"}


def tie_columns(scores: RunScores | None) -> dict[str, float]:
    """``<fpr key>_tie_low`` for every FPR cell of the run (none without samples)."""
    if scores is None:
        return {}
    out: dict[str, float] = {}
    id_scores = scores.id_scores
    bench = scores.benchmark
    for dataset in scores.ood_datasets:
        ood = scores.scores[dataset]
        is_id = np.r_[np.ones(id_scores.size, bool), np.zeros(ood.size, bool)]
        values = np.r_[id_scores, ood]
        for family, rule in FPR_RULES.items():
            out[f"{family}_{dataset}_tie_low"] = fpr_tie_range(is_id, values, rule=rule)[0]
    for group, members in (("near", bench.near), ("far", bench.far)):
        for family in FPR_RULES:
            lows = [out.get(f"{family}_{d}_tie_low", math.nan) for d in members]
            out[f"{family}_{group}_tie_low"] = float(np.mean(lows)) if lows and not any(map(math.isnan, lows)) else math.nan
    return out


def tie_flagged(row: Mapping[str, Any], key: str) -> bool:
    """Whether the FPR cell ``key`` of ``row`` rests on a tie block wider than :data:`TIE_FLAG_POINTS`."""
    low, value = row.get(f"{key}_tie_low", math.nan), row.get(key, math.nan)
    try:
        return float(value) - float(low) > TIE_FLAG_POINTS
    except (TypeError, ValueError):
        return False


def tie_legend() -> str:
    return (
        f"{TIE_MARK}: this FPR's 95% threshold falls on a block of tied scores that spans more than "
        f"{TIE_FLAG_POINTS:g} points. The whole block counts on one side, so another tie-break could give any value "
        "from the FPR before the block (in the CSV: the column of the same name ending in _tie_low) up to the one shown."
    )
