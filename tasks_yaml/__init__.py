"""The task YAMLs, document sets and prompt templates of reguide-tasks, as data.

This folder is the repository's ``tasks_yaml/`` and is installed as the package
``reguide_tasks.tasks`` (``package_dir`` in setup.cfg), so a wheel carries it and lmms-eval's
``LMMS_EVAL_PLUGINS=reguide_tasks`` route finds it. Nothing here is imported for its code: each
task folder's ``utils.py`` is loaded by lmms-eval from the path of the YAML that names it.
"""
