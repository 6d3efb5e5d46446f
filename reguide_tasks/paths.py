"""Filesystem locations the package relies on.

``REPO_TASKS_DIR`` is the repository's top-level ``tasks_yaml/`` folder (task YAMLs and prompt
templates). It is found relative to this file, which holds for a source checkout or an editable
install; a regular install will ship ``tasks_yaml/`` as package data and this is the one place to
change.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_TASKS_DIR = PACKAGE_DIR.parent / "tasks_yaml"
TEMPLATES_DIR = REPO_TASKS_DIR / "templates"
