"""lmms-eval models shipped with reguide-tasks (exposed through the ``lmms_eval.models`` entry points)."""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest

SCRIPTED_MANIFEST = ModelManifest(model_id="reguide_scripted", simple_class_path="reguide_tasks.models.scripted.ScriptedOoDModel")

CLIP_OOD_CLASS_PATH = "reguide_tasks.models.clip_ood.ClipOoD"
CLIP_OOD_MANIFEST = ModelManifest(model_id="clip_ood", simple_class_path=CLIP_OOD_CLASS_PATH)
