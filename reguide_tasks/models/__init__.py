"""lmms-eval models shipped with reguide-tasks (exposed through the ``lmms_eval.models`` entry points).

The manifests are built lazily (module ``__getattr__``): lmms-eval loads these entry points while
``lmms_eval.models`` initializes, and importing lmms-eval from here at import time would make
``import reguide_tasks.models`` (when it comes first) re-enter this half-initialized module.
"""

from __future__ import annotations

import os
from typing import Any

MODEL_CLASS_PATHS = {
    "SCRIPTED_MANIFEST": ("reguide_scripted", "reguide_tasks.models.scripted.ScriptedOoDModel"),
    "REPLAY_MANIFEST": ("reguide_replay", "reguide_tasks.models.replay.ReplayModel"),
    "CLIP_OOD_MANIFEST": ("clip_ood", "reguide_tasks.models.clip_ood.ClipOoD"),
}

# What lmms-eval's LMMS_EVAL_PLUGINS route reads from ``<plugin>.models`` (module name -> class name,
# as ``<plugin>.models.<model>.<Class>``). Empty on purpose: our models are registered through the
# entry points above; this table only has to exist for LMMS_EVAL_PLUGINS=reguide_tasks to import.
AVAILABLE_MODELS: dict[str, str] = {}

# lmms-eval 0.7.3 imports this module before it builds its task index; when LMMS_EVAL_PLUGINS names
# us, make that index include our tasks (see reguide_tasks.lmms.runtime for why lmms-eval alone does not).
if "LMMS_EVAL_PLUGINS" in os.environ:
    from reguide_tasks.lmms.runtime import install_plugin_task_index as _install_plugin_tasks

    _install_plugin_tasks()


def __getattr__(name: str) -> Any:
    if name not in MODEL_CLASS_PATHS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from lmms_eval.models.registry_v2 import ModelManifest

    model_id, class_path = MODEL_CLASS_PATHS[name]
    manifest = ModelManifest(model_id=model_id, simple_class_path=class_path)
    globals()[name] = manifest
    return manifest
