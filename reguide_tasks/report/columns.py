"""The report's column vocabulary: metric families, OoD groups, the summary columns, metric
headers, and which direction of a column is best.

Column keys: ``id_acc``, ``fail_rate_id`` (the ID dataset's), ``fail_rate_all`` (all documents),
``<metric>_<d>`` for ``metric`` in ``auroc`` / ``fpr95`` (OpenOOD rule) / ``fpr95tpr`` (classic) /
``aupr_in`` / ``aupr_out`` and ``d`` an OoD dataset or ``near`` / ``far``; ``fail_rate_<d>``;
``auroc_<d>_lo`` / ``auroc_<d>_hi`` for the bootstrap CI; ``repaired_rate_<d>`` (% of answers whose
score used a repaired key) and ``not_in_release_<d>`` (documents without a released answer, a
count); ``key_reading`` (``repair`` or ``strict``). Values are percentages unless named a count.
"""

from __future__ import annotations

import re

from reguide_tasks.vocab import HIGHER_IS_BETTER as _FAMILY_HIGHER_IS_BETTER
from reguide_tasks.vocab import split_metric_key

DETAIL_METRICS = ("auroc", "fpr95", "fpr95tpr")
SUMMARY_KEYS = (
    "id_acc",
    "fail_rate_id",
    "fail_rate_all",
    "auroc_near",
    "auroc_far",
    "fpr95_near",
    "fpr95_far",
    "fpr95tpr_near",
    "fpr95tpr_far",
)

METRIC_LABELS = {"auroc": "AUROC", "fpr95": "FPR@95", "fpr95tpr": "FPR@95TPR", "aupr_in": "AUPR-In", "aupr_out": "AUPR-Out"}


def higher_is_better(key: str) -> bool | None:
    """Whether a column's best value is its highest (None for non-metric columns); ``fail_rate_all``
    and the ``_lo`` / ``_hi`` ends of a CI go the way of their metric family."""
    try:
        family, _ = split_metric_key(re.sub(r"_(lo|hi)$", "", key))
    except ValueError:
        return None
    return _FAMILY_HIGHER_IS_BETTER[family]
