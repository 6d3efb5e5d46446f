"""The functions this folder's task YAMLs name (``!function utils.<name>``); they live in reguide_tasks.lmms."""

from reguide_tasks.lmms.aggregations import (  # one per metric family: aggregate_<family>
    aggregate_aupr_in,
    aggregate_aupr_out,
    aggregate_auroc,
    aggregate_aux_pred_rate,
    aggregate_fail_rate,
    aggregate_filtered_out,
    aggregate_fpr95,
    aggregate_fpr95tpr,
    aggregate_id_acc,
    aggregate_mean_kept,
    aggregate_not_in_release,
    aggregate_oodd,
    aggregate_repaired_rate,
)
from reguide_tasks.lmms.hooks import (
    baseline_doc_to_text,
    baseline_process_results,
    doc_to_visual,
    expand_document_sets,
    reguide_doc_to_text,
    reguide_process_results,
)

# A YAML of your own may name any <stage>_process_results_<score rule>_<failure policy>[_strict].
from reguide_tasks.lmms.process_results_variants import *

__all__ = [
    "aggregate_aupr_in",
    "aggregate_aupr_out",
    "aggregate_auroc",
    "aggregate_aux_pred_rate",
    "aggregate_fail_rate",
    "aggregate_filtered_out",
    "aggregate_fpr95",
    "aggregate_fpr95tpr",
    "aggregate_id_acc",
    "aggregate_mean_kept",
    "aggregate_not_in_release",
    "aggregate_oodd",
    "aggregate_repaired_rate",
    "baseline_doc_to_text",
    "baseline_process_results",
    "doc_to_visual",
    "expand_document_sets",
    "reguide_doc_to_text",
    "reguide_process_results",
]
