"""The rooms' rules: the pure rooms import neither lmms_eval nor torch, and no module reaches the
package's structure through a module ``__getattr__``."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import reguide_tasks

PACKAGE = Path(reguide_tasks.__file__).resolve().parent
PURE_ROOMS = ("reguide_tasks.vocab", "reguide_tasks.data", "reguide_tasks.prompts", "reguide_tasks.answers", "reguide_tasks.metrics")


def _modules_of(room: str) -> list[str]:
    path = PACKAGE.joinpath(*room.split(".")[1:])
    if path.with_suffix(".py").is_file():
        return [room]
    return [room] + sorted(f"{room}.{p.stem}" for p in path.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("room", PURE_ROOMS)
def test_pure_rooms_import_neither_lmms_eval_nor_torch(room):
    modules = _modules_of(room)
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('lmms_eval', 'torch'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [], f"importing {room} pulled in lmms_eval / torch"


def test_no_module_getattr_in_the_package_or_the_task_folders():
    roots = [PACKAGE, PACKAGE.parent / "tasks_yaml"]
    offenders = []
    for root in roots:
        for path in root.rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
            names |= {alias.asname for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names if alias.asname}
            if "__getattr__" in names:
                offenders.append(str(path))
    assert offenders == []


def test_long_modules_say_why_they_are_long():
    """A module above ~400 lines says in its docstring why it is one module."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 420:
            doc = ast.get_docstring(ast.parse(text)) or ""
            assert "one module" in doc, f"{path.relative_to(PACKAGE)} has {text.count(chr(10))} lines and no word on why"
