"""lmms-eval's ``LMMS_EVAL_PLUGINS`` task route, made to work on lmms-eval 0.7.3.

``LMMS_EVAL_PLUGINS=reguide_tasks lmms-eval --tasks reguide_imagenet200 ...`` is meant to add the
folder of the package ``reguide_tasks.tasks`` (our ``tasks_yaml/``, installed there by setup.cfg)
to the task include path. lmms-eval 0.7.3's ``cli_evaluate_single`` builds its ``TaskManager``
first and extends ``args.include_path`` afterwards, so plugin tasks are never indexed ("Tasks were
not found"). When our package is named in ``LMMS_EVAL_PLUGINS``, lmms-eval imports
``reguide_tasks.models`` while it starts (its model registry reads ``AVAILABLE_MODELS`` there),
before any ``TaskManager`` exists; that import calls :func:`install`, which makes
``TaskManager.__init__`` add every named plugin's task folder to its include path, as lmms-eval
intends. Only for the lmms-eval versions this was written for; other versions are left untouched.
"""

from __future__ import annotations

import functools
import importlib.util
import os

WRITTEN_FOR_LMMS_EVAL = ("0.7.3",)
PLUGINS_VARIABLE = "LMMS_EVAL_PLUGINS"


def lmms_eval_version() -> str:
    """The installed lmms-eval's version (its ``__version__``, else the distribution's)."""
    import lmms_eval

    version = getattr(lmms_eval, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("lmms_eval")
    return version


def named_plugins() -> list[str]:
    """The packages listed in ``LMMS_EVAL_PLUGINS`` (comma-separated), in order."""
    return [name.strip() for name in os.environ.get(PLUGINS_VARIABLE, "").split(",") if name.strip()]


def plugin_task_folders(plugins: list[str]) -> list[str]:
    """Each plugin's ``<plugin>.tasks`` folder, located the way lmms-eval locates it."""
    folders = []
    for plugin in plugins:
        try:
            spec = importlib.util.find_spec(f"{plugin}.tasks")
        except ModuleNotFoundError:  # no such package: lmms-eval reports it itself
            continue
        if spec is not None and spec.submodule_search_locations:
            folders.append(next(iter(spec.submodule_search_locations)))
    return folders


def with_plugin_folders(include_path: str | list[str] | None, folders: list[str]) -> list[str] | str | None:
    """``include_path`` (None, one path or a list, as TaskManager takes it) plus the missing ``folders``."""
    paths = [] if include_path is None else [include_path] if isinstance(include_path, str) else list(include_path)
    missing = [folder for folder in folders if folder not in paths]
    if not missing:
        return include_path
    return paths + missing


def install() -> bool:
    """Make ``TaskManager`` index the ``LMMS_EVAL_PLUGINS`` task folders; False when not applied."""
    if __package__.partition(".")[0] not in named_plugins() or lmms_eval_version() not in WRITTEN_FOR_LMMS_EVAL:
        return False
    from lmms_eval.tasks import TaskManager

    original = TaskManager.__init__
    if getattr(original, "reguide_plugin_folders", False):
        return True

    @functools.wraps(original)
    def __init__(self, verbosity="INFO", include_path=None, *args, **kwargs):
        include_path = with_plugin_folders(include_path, plugin_task_folders(named_plugins()))
        original(self, verbosity, include_path, *args, **kwargs)

    __init__.reguide_plugin_folders = True
    TaskManager.__init__ = __init__
    return True
