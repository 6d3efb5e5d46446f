"""Filesystem locations the package relies on.

``TASKS_DIR`` holds the task YAMLs and the prompt templates. In the repository it is the top-level
``tasks_yaml/`` folder; installed (wheel or editable) it is the package ``reguide_tasks.tasks``,
which setup.cfg maps onto that folder. The package is looked up first, so a wheel reads its own
copy; a source tree put on ``sys.path`` without an install falls back to ``tasks_yaml/``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _tasks_dir() -> Path:
    try:
        spec = importlib.util.find_spec("reguide_tasks.tasks")
    except ImportError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    return PACKAGE_DIR.parent / "tasks_yaml"


TASKS_DIR = _tasks_dir()
TEMPLATES_DIR = TASKS_DIR / "templates"
