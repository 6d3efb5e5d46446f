"""Every function a task YAML may name as ``!function utils.<name>``, in one place.

Each task folder's ``utils.py`` (and the ``utils.py`` beside a task file of your own) is the one line
``from reguide_tasks.lmms.yaml_functions import *``. The names come from three modules:

- :mod:`reguide_tasks.lmms.hooks`: ``expand_document_sets`` (process_docs), ``doc_to_visual``,
  ``baseline_doc_to_text`` / ``reguide_doc_to_text``, ``baseline_process_results`` /
  ``reguide_process_results``;
- :mod:`reguide_tasks.lmms.aggregations`: ``aggregate_<metric family>``;
- :mod:`reguide_tasks.lmms.process_results_variants`: ``<stage>_process_results_<score rule>_<failure
  policy>[_strict]``.
"""

from reguide_tasks.lmms import aggregations, process_results_variants
from reguide_tasks.lmms.aggregations import *
from reguide_tasks.lmms.hooks import (
    baseline_doc_to_text,
    baseline_process_results,
    doc_to_visual,
    expand_document_sets,
    reguide_doc_to_text,
    reguide_process_results,
)
from reguide_tasks.lmms.process_results_variants import *

__all__ = [
    "baseline_doc_to_text",
    "baseline_process_results",
    "doc_to_visual",
    "expand_document_sets",
    "reguide_doc_to_text",
    "reguide_process_results",
]
__all__ += aggregations.__all__
__all__ += process_results_variants.__all__
