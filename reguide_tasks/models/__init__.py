"""lmms-eval models shipped with reguide-tasks, registered through the ``lmms_eval.models`` entry points.

Each entry point names a function here that returns the model's manifest. lmms-eval calls it while
``lmms_eval.models`` initializes, so lmms-eval is imported inside the function, never at import time
(importing it here first would make ``import reguide_tasks.models`` re-enter a half-initialized
``lmms_eval.models``).
"""

from __future__ import annotations

import os
from typing import Any

# Our models that never open an image: reguide-eval skips the image check for them (by name, before
# lmms-eval is imported). Each has ``needs_images = False`` on its class too.
MODELS_WITHOUT_IMAGES = ("reguide_replay",)


def _manifest(model_id: str, class_path: str) -> Any:
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=model_id, simple_class_path=class_path)


def scripted_manifest() -> Any:
    """``reguide_scripted``: deterministic answers in the released format (tests, demos, benchmarks)."""
    return _manifest("reguide_scripted", "reguide_tasks.models.scripted.ScriptedOoDModel")


def replay_manifest() -> Any:
    """``reguide_replay``: the authors' released answers, looked up per document."""
    return _manifest("reguide_replay", "reguide_tasks.models.replay.ReplayModel")


def clip_ood_manifest() -> Any:
    """``clip_ood``: the CLIP zero-shot reference (MCM and friends) answering the same tasks."""
    return _manifest("clip_ood", "reguide_tasks.models.clip_ood.ClipOoD")


# What lmms-eval's LMMS_EVAL_PLUGINS route reads from ``<plugin>.models`` (module name -> class name,
# as ``<plugin>.models.<model>.<Class>``). Empty on purpose: our models are registered through the
# entry points above; this table only has to exist for LMMS_EVAL_PLUGINS=reguide_tasks to import.
AVAILABLE_MODELS: dict[str, str] = {}

# lmms-eval 0.7.3 imports this module before it builds its task index; when LMMS_EVAL_PLUGINS names
# us, make that index include our tasks (see reguide_tasks.lmms.runtime for why lmms-eval alone does not).
if "LMMS_EVAL_PLUGINS" in os.environ:
    from reguide_tasks.lmms.runtime import (
        install_plugin_task_index as _install_plugin_tasks,
    )

    _install_plugin_tasks()

