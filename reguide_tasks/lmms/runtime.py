"""Every change reguide-tasks makes to lmms-eval's internals, behind one version guard.

The patches were written against lmms-eval 0.7.3 (``SUPPORTED_LMMS_EVAL``). They replace or wrap
these lmms-eval names (``PATCHED_INTERNALS``):

- ``lmms_eval.tasks.TaskManager.__init__`` (wrapped by :func:`install_plugin_task_index`).
  ``LMMS_EVAL_PLUGINS=reguide_tasks lmms-eval --tasks reguide_imagenet200 ...`` is meant to add the
  folder of the package ``reguide_tasks.tasks`` (our ``tasks_yaml/``, installed there by setup.cfg) to
  the task include path, but 0.7.3's ``cli_evaluate_single`` builds its ``TaskManager`` first and
  extends ``args.include_path`` afterwards, so plugin tasks are never indexed ("Tasks were not found").
  lmms-eval imports ``reguide_tasks.models`` while it starts (its model registry reads
  ``AVAILABLE_MODELS`` there), before any ``TaskManager`` exists; when ``LMMS_EVAL_PLUGINS`` names our
  package, that import makes ``TaskManager.__init__`` add every named plugin's task folder.
- ``lmms_eval.evaluator._run_generate_until_agentic`` (replaced by
  :func:`install_batched_agentic_runner`). 0.7.3 runs ``generate_until_agentic`` requests document by
  document, one request per model call; :func:`reguide_tasks.lmms.two_stage.run_agentic_batched`
  sends round k of every document in one call. ``evaluator.evaluate`` looks the function up in its
  module globals at call time, so replacing the module attribute is enough.
- ``lmms_eval.caching.response_cache.ResponseCache._is_valid_response`` (wrapped by
  :func:`install_cache_placeholder_policy`). 0.7.3's response cache stores the placeholders its API
  models return once their retries are spent (``[LMMS_EVAL_REQUEST_FAILED after N retries] ...``,
  ``[LMMS_EVAL_BUDGET_EXCEEDED]``): a run resumed after an outage would replay the outage instead of
  asking again. Wrapped, the cache treats them as misses.
- ``lmms_eval.caching.response_cache.ResponseCache.execute`` (wrapped by
  :func:`install_chunked_cache_saving`). 0.7.3 looks every request up, calls the model once on all
  the misses and stores the answers when that call returns; the baseline is one call for all
  documents and the batched runner one per stage, so a run killed at 90% had kept nothing. Wrapped,
  the requests go through the original ``execute`` a chunk at a time (look-up, model call, store).
- ``lmms_eval.utils.get_lmms_eval_cache_version`` (wrapped by :func:`install_stable_cache_version`).
  0.7.3 stamps every answer-cache key with "its version": ``git describe`` run in the folder that holds
  the installed ``lmms_eval`` package. In a venv inside a git checkout (``.venv`` in a project, as
  ``utils/setup.sh`` makes it) that is the PROJECT's commit, so a commit or a pull between a killed
  run and its restart throws every cached answer away (the full-list soak re-asked all 94,908
  stage-1 answers after one commit). Wrapped, it is lmms-eval's installed version unless that folder
  is itself an lmms-eval checkout (it holds ``.git``), where the commit is what lmms-eval means.
- ``lmms_eval.evaluator.simple_evaluate`` and
  ``lmms_eval.loggers.evaluation_tracker.EvaluationTracker.save_results_samples`` (wrapped by
  :func:`install_result_file_trimming`). Before lmms-eval saves and prints them, the "N/A" stderr
  entries of our metrics leave the results and our sample rows lose the repeated prompt and per-key
  metric items (:mod:`reguide_tasks.lmms.result_files` says why). ``cli_evaluate_single`` looks
  ``simple_evaluate`` up on the module at call time.
- ``lmms_eval.models.model_utils.usage_metrics.get_running_totals`` (replaced by
  :func:`install_running_usage_totals`, with the copies ``lmms_eval.models.chat.openai``,
  ``async_openai`` and ``gemini`` imported by name). 0.7.3's API models call it after every answer to
  show the run's token count; it sums the whole usage history each time, so a run costs O(answers²)
  (about 40 min of one core on the full ImageNet200 lists as ReGuide).
  :class:`reguide_tasks.lmms.usage_totals.IncrementalTotals` returns the same figures in O(new answers).
- ``lmms_eval.__main__.cli_evaluate_single`` (replaced for the duration of a ``with``
  :func:`recording_evaluate_single` block). ``cli_evaluate`` swallows the exception of a failed
  evaluation and returns nothing either way; ``reguide-eval`` records what each call returned or
  raised, through the module global ``cli_evaluate`` calls, to give a run an honest exit code.
- ``lmms_eval.caching.response_cache.ResponseCache._replay_audit_log`` and
  ``lmms_eval.caching.response_cache.ResponseCache._open_local_handles`` (wrapped by :func:`install_cache_audit_check`). 0.7.3 replays
  its audit log into SQLite when a cache opens, skipping an undecodable line silently and inserting
  any other as it is; wrapped, a torn last line is cut off and counted, and a line that fails its
  schema, recomputed cache key or response checksum is set aside, not replayed
  (:mod:`reguide_tasks.lmms.cache_audit`); new lines carry their response's checksum.
- ``lmms_eval.api.model.lmms.create_from_arg_string`` (wrapped by :func:`install_model_arg_secrets`).
  ``reguide-eval`` takes secrets (``api_key=...``) out of ``--model_args`` before lmms-eval sees them
  (:mod:`reguide_tasks.lmms.secrets`: 0.7.3 writes the arguments into the results JSON, the answer
  cache and its logs); wrapped, the model's constructor gets them back, and nothing else does.

and rely on these, unpatched (``RELIED_ON_INTERNALS``): ``lmms_eval.__main__.parse_eval_args`` and
``lmms_eval.__main__.cli_evaluate`` (``reguide-eval`` parses and edits lmms-eval's arguments before it
runs them), ``lmms_eval.evaluator.unwrap_generation_output`` and
``lmms_eval.caching.response_cache.ResponseCache.execute`` (the batched runner unwraps answers and goes
through the response cache as the per-document loop does),
``lmms_eval.models.model_utils.usage_metrics._USAGE_HISTORY`` and
``lmms_eval.models.model_utils.usage_metrics._USAGE_LOCK`` (the history the incremental token totals
read, under lmms-eval's own lock), ``lmms_eval.utils._lmms_eval_repo_root`` (the folder whose git
commit 0.7.3 takes for its version), ``lmms_eval.loggers.evaluation_tracker.GeneralConfigTracker._get_model_name``
and ``lmms_eval.utils.sanitize_model_name`` (the folder name lmms-eval will write results into,
checked by :mod:`reguide_tasks.lmms.output_guard` before the run),
``lmms_eval.caching.response_cache.compute_cache_key`` (an audit line's key, recomputed to check it).

On an lmms-eval version not in ``SUPPORTED_LMMS_EVAL`` (:func:`check_lmms_eval_version` raises
:class:`UnsupportedLmmsEval` naming the installed version, the supported ones and what to do):

- the plugin task index is left alone (a warning when ``LMMS_EVAL_PLUGINS`` names us): it is
  installed while lmms-eval loads its model registry, where an error would break every lmms-eval
  command, and a missing index shows itself as lmms-eval's own "Tasks were not found";
- the batched agentic runner is an optimisation: a warning, and lmms-eval's per-document loop runs;
- the cache placeholder policy is needed for correct resumed runs: :class:`UnsupportedLmmsEval`; so are
  saving answers in chunks (what a killed run keeps) and the stable cache version;
- trimming the result files is cosmetic: a warning, and lmms-eval writes them as it does;
- the incremental token totals are an optimisation: a warning, and lmms-eval's own sum runs;
- the recording of ``cli_evaluate_single`` decides ``reguide-eval``'s exit code: :class:`UnsupportedLmmsEval`;
  so does handing secrets to the model (without it, a model would run without its key), and so does
  the audit log check (a resumed run would replay corrupted lines).

Why one module, though over 400 lines: every patch sits behind the same version guard and is listed
here, so an lmms-eval upgrade is reviewed in one place.

To support a new lmms-eval version, review each name above against it (``tests/test_runtime.py``
checks they all still exist), then add the version to ``SUPPORTED_LMMS_EVAL``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Callable, Iterator
from typing import Any

from reguide_tasks.vocab import is_lmms_eval_placeholder

SUPPORTED_LMMS_EVAL = ("0.7.3",)
PLUGINS_VARIABLE = "LMMS_EVAL_PLUGINS"

# (module, dotted attribute): what the patches replace or wrap, and what the patched code calls.
PATCHED_INTERNALS = (
    ("lmms_eval.tasks", "TaskManager.__init__"),
    ("lmms_eval.evaluator", "_run_generate_until_agentic"),
    ("lmms_eval.caching.response_cache", "ResponseCache._is_valid_response"),
    ("lmms_eval.caching.response_cache", "ResponseCache.execute"),
    ("lmms_eval.utils", "get_lmms_eval_cache_version"),
    ("lmms_eval.evaluator", "simple_evaluate"),
    ("lmms_eval.loggers.evaluation_tracker", "EvaluationTracker.save_results_samples"),
    ("lmms_eval.models.model_utils.usage_metrics", "get_running_totals"),
    ("lmms_eval.__main__", "cli_evaluate_single"),
    ("lmms_eval.api.model", "lmms.create_from_arg_string"),
    ("lmms_eval.caching.response_cache", "ResponseCache._replay_audit_log"),
    ("lmms_eval.caching.response_cache", "ResponseCache._open_local_handles"),
)
RELIED_ON_INTERNALS = (
    ("lmms_eval.__main__", "parse_eval_args"),
    ("lmms_eval.__main__", "cli_evaluate"),
    ("lmms_eval.evaluator", "unwrap_generation_output"),
    ("lmms_eval.models.model_utils.usage_metrics", "_USAGE_HISTORY"),
    ("lmms_eval.models.model_utils.usage_metrics", "_USAGE_LOCK"),
    ("lmms_eval.utils", "_lmms_eval_repo_root"),
    ("lmms_eval.loggers.evaluation_tracker", "GeneralConfigTracker._get_model_name"),
    ("lmms_eval.utils", "sanitize_model_name"),
    ("lmms_eval.caching.response_cache", "compute_cache_key"),
)
_ORIGINAL_AGENTIC_LOOP = "_lmms_eval_run_generate_until_agentic"  # where lmms-eval's loop is kept


class UnsupportedLmmsEval(RuntimeError):
    """The installed lmms-eval is a version the patches in this module were not written for."""


def lmms_eval_version() -> str:
    """The installed lmms-eval's version (its ``__version__``, else the distribution's)."""
    import lmms_eval

    version = getattr(lmms_eval, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("lmms_eval")
    return version


def unsupported_message(version: str) -> str:
    supported = ", ".join(SUPPORTED_LMMS_EVAL)
    return (
        f"lmms-eval {version} is installed, but reguide-tasks patches lmms-eval internals written for lmms-eval "
        f"{supported} only. Install a supported version (pip install 'lmms-eval=={SUPPORTED_LMMS_EVAL[-1]}', the "
        f"version requirements/ locks), or review each patch listed in reguide_tasks/lmms/runtime.py against "
        f"lmms-eval {version} and add it to SUPPORTED_LMMS_EVAL there."
    )


def check_lmms_eval_version() -> str:
    """The installed lmms-eval's version; :class:`UnsupportedLmmsEval` when the patches were not written for it."""
    version = lmms_eval_version()
    if version not in SUPPORTED_LMMS_EVAL:
        raise UnsupportedLmmsEval(unsupported_message(version))
    return version


# --- TaskManager.__init__: index the LMMS_EVAL_PLUGINS task folders ---------------------------------


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
    """``include_path`` (None, one path or a list, as TaskManager takes it) plus the missing ``folders``.

    A folder counts as present when a given path names it or a folder above it (``tasks_yaml`` and
    ``/repo/tasks_yaml/``; ``tasks_yaml/reguide_cifar10`` under ``tasks_yaml``): TaskManager does not
    deduplicate, and would parse every YAML in it twice.
    """
    paths = [] if include_path is None else [include_path] if isinstance(include_path, str) else list(include_path)
    present = {os.path.realpath(path) for path in paths}

    def indexed(folder: str) -> bool:
        real = os.path.realpath(folder)
        return any(real == path or real.startswith(path.rstrip(os.sep) + os.sep) for path in present)

    missing = [folder for folder in folders if not indexed(folder)]
    if not missing:
        return include_path
    return paths + missing


def install_plugin_task_index() -> bool:
    """Make ``TaskManager`` index the ``LMMS_EVAL_PLUGINS`` task folders; False when not applied.

    Applied only when ``LMMS_EVAL_PLUGINS`` names this package, and only on a supported lmms-eval
    (elsewhere a warning, and lmms-eval is left alone).
    """
    if __package__.partition(".")[0] not in named_plugins():
        return False
    version = lmms_eval_version()
    if version not in SUPPORTED_LMMS_EVAL:
        from loguru import logger

        logger.warning(f"{PLUGINS_VARIABLE}: our task folder not added to lmms-eval's task index. {unsupported_message(version)}")
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


# --- evaluator._run_generate_until_agentic: the batched two-stage runner ----------------------------


def lmms_eval_agentic_loop():
    """lmms-eval's own per-document agentic loop (kept aside while the batched runner is installed)."""
    from lmms_eval import evaluator

    return getattr(evaluator, _ORIGINAL_AGENTIC_LOOP, evaluator._run_generate_until_agentic)


def install_batched_agentic_runner() -> bool:
    """Route lmms-eval's agentic requests through the batched runner; False (and a warning) if unsupported."""
    from lmms_eval import evaluator
    from loguru import logger

    from reguide_tasks.lmms.two_stage import run_agentic_batched

    version = lmms_eval_version()
    if version not in SUPPORTED_LMMS_EVAL or not hasattr(evaluator, "_run_generate_until_agentic"):
        logger.warning(f"lmms-eval {version}: batched two-stage runner not installed (written for {SUPPORTED_LMMS_EVAL}); using lmms-eval's per-document loop")
        return False
    if not hasattr(evaluator, _ORIGINAL_AGENTIC_LOOP):
        setattr(evaluator, _ORIGINAL_AGENTIC_LOOP, evaluator._run_generate_until_agentic)
    evaluator._run_generate_until_agentic = run_agentic_batched
    return True


def uninstall_batched_agentic_runner() -> None:
    """Put lmms-eval's per-document agentic loop back."""
    from lmms_eval import evaluator

    evaluator._run_generate_until_agentic = lmms_eval_agentic_loop()


# --- ResponseCache._is_valid_response: failed API answers are cache misses -------------------------


def is_placeholder(response: Any) -> bool:
    """Whether a cached response (or its ``.text``) is one of lmms-eval's failure placeholders."""
    return is_lmms_eval_placeholder(getattr(response, "text", response))


def install_cache_placeholder_policy() -> None:
    """Keep lmms-eval's failure placeholders out of its response cache; :class:`UnsupportedLmmsEval` if unsupported."""
    check_lmms_eval_version()
    from lmms_eval.caching.response_cache import ResponseCache

    if getattr(ResponseCache._is_valid_response, "_reguide", False):
        return
    original = ResponseCache._is_valid_response

    def _is_valid_response(response: Any, request_type: str) -> bool:
        return not is_placeholder(response) and original(response, request_type)

    _is_valid_response._reguide = True  # type: ignore[attr-defined]
    ResponseCache._is_valid_response = staticmethod(_is_valid_response)


# --- ResponseCache.execute: answers saved every N requests --------------------------------------


def install_chunked_cache_saving(every: int) -> None:
    """Make the response cache ask the model for at most ``every`` requests per call, so that answers
    are saved chunk by chunk (``every <= 0``: lmms-eval's one call); :class:`UnsupportedLmmsEval` if
    unsupported. Results keep the requests' order."""
    check_lmms_eval_version()
    from lmms_eval.caching.response_cache import ResponseCache

    original = getattr(ResponseCache.execute, "_reguide_original", ResponseCache.execute)
    if every <= 0:
        ResponseCache.execute = original
        return

    @functools.wraps(original)
    def execute(self, lm, reqtype, requests):
        if len(requests) <= every:
            return original(self, lm, reqtype, requests)
        results: list = []
        for start in range(0, len(requests), every):
            results.extend(original(self, lm, reqtype, requests[start : start + every]))
        return results

    execute._reguide_original = original  # type: ignore[attr-defined]
    ResponseCache.execute = execute


# --- utils.get_lmms_eval_cache_version: cached answers survive a commit of the project around the venv --


def install_stable_cache_version() -> None:
    """Make the answer cache's version lmms-eval's installed version, not the commit of whatever git
    checkout the venv sits in; :class:`UnsupportedLmmsEval` if unsupported."""
    version = check_lmms_eval_version()
    from lmms_eval import utils

    if getattr(utils.get_lmms_eval_cache_version, "_reguide", False):
        return
    original = utils.get_lmms_eval_cache_version
    own_checkout = (utils._lmms_eval_repo_root() / ".git").exists()  # an editable lmms-eval: its commit is meant

    @functools.wraps(original)
    def get_lmms_eval_cache_version() -> str:
        return original() if own_checkout else version

    get_lmms_eval_cache_version._reguide = True  # type: ignore[attr-defined]
    utils.get_lmms_eval_cache_version = get_lmms_eval_cache_version


def _supported_or_warn(left_as_is: str) -> bool:
    """For the optional patches: True on a supported lmms-eval, else False and a warning saying what
    stays as lmms-eval does it."""
    version = lmms_eval_version()
    if version in SUPPORTED_LMMS_EVAL:
        return True
    from loguru import logger

    logger.warning(f"lmms-eval {version}: {left_as_is} (the patch was written for {SUPPORTED_LMMS_EVAL})")
    return False


# --- evaluator.simple_evaluate, EvaluationTracker.save_results_samples: trimmed result files ------


def install_result_file_trimming() -> bool:
    """Drop our metrics' "N/A" stderr entries and trim our sample rows before lmms-eval writes them;
    False (and a warning) on an unsupported lmms-eval."""
    if not _supported_or_warn("result files written as lmms-eval writes them"):
        return False
    from lmms_eval import evaluator
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    from reguide_tasks.lmms.result_files import compact_samples, drop_unavailable_stderr

    if not getattr(evaluator.simple_evaluate, "_reguide", False):
        evaluate = evaluator.simple_evaluate

        @functools.wraps(evaluate)
        def simple_evaluate(*args, **kwargs):
            results = evaluate(*args, **kwargs)
            if isinstance(results, dict):
                drop_unavailable_stderr(results)
            return results

        simple_evaluate._reguide = True  # type: ignore[attr-defined]
        evaluator.simple_evaluate = simple_evaluate
    if not getattr(EvaluationTracker.save_results_samples, "_reguide", False):
        save = EvaluationTracker.save_results_samples

        @functools.wraps(save)
        def save_results_samples(self, task_name, samples):
            compact_samples(samples)
            return save(self, task_name, samples)

        save_results_samples._reguide = True  # type: ignore[attr-defined]
        EvaluationTracker.save_results_samples = save_results_samples
    return True


# --- usage_metrics.get_running_totals: the progress bar's token count in O(new answers) -------------

# Modules of 0.7.3 that import get_running_totals by name (patched when already imported; imported
# later, they pick up the replaced module attribute).
USAGE_TOTALS_IMPORTERS = ("lmms_eval.models.chat.openai", "lmms_eval.models.chat.async_openai", "lmms_eval.models.chat.gemini")


def install_running_usage_totals() -> bool:
    """Replace lmms-eval's O(history) ``get_running_totals`` by :class:`~reguide_tasks.lmms.usage_totals.IncrementalTotals`;
    False (and a warning) on an unsupported lmms-eval."""
    import sys

    if not _supported_or_warn("its API models' token totals left as they are (O(answers²) in 0.7.3)"):
        return False
    from lmms_eval.models.model_utils import usage_metrics

    from reguide_tasks.lmms.usage_totals import IncrementalTotals

    if not isinstance(usage_metrics.get_running_totals, IncrementalTotals):
        usage_metrics.get_running_totals = IncrementalTotals(usage_metrics._USAGE_HISTORY, usage_metrics._USAGE_LOCK)
    for name in USAGE_TOTALS_IMPORTERS:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "get_running_totals"):
            module.get_running_totals = usage_metrics.get_running_totals
    return True


# --- __main__.cli_evaluate_single: what each evaluation returned or raised --------------------------


@contextlib.contextmanager
def recording_evaluate_single(around: Callable[[], contextlib.AbstractContextManager] | None = None) -> Iterator[list]:
    """While open, every ``cli_evaluate_single`` call appends what it returned, or the exception it
    raised (then re-raised for lmms-eval's own handling), to the yielded list. ``around``: a context
    manager factory entered around each call (after ``cli_evaluate`` has set up its logging).

    :class:`UnsupportedLmmsEval` (before anything is patched) if unsupported.
    """
    check_lmms_eval_version()
    import lmms_eval.__main__ as lmms_main

    outcomes: list = []
    evaluate_single = lmms_main.cli_evaluate_single

    def recording(single_args):
        try:
            with around() if around is not None else contextlib.nullcontext():
                outcome = evaluate_single(single_args)
        except BaseException as exc:  # recorded, then re-raised for lmms-eval's own handling
            outcomes.append(exc)
            raise
        outcomes.append(outcome)
        return outcome

    lmms_main.cli_evaluate_single = recording
    try:
        yield outcomes
    finally:
        lmms_main.cli_evaluate_single = evaluate_single


# --- api.model.lmms.create_from_arg_string: secrets for the model's constructor only ---------------


def install_model_arg_secrets(secrets: dict[str, str]) -> None:
    """Give every model lmms-eval builds from an argument string the ``secrets`` taken out of
    ``--model_args`` (:mod:`reguide_tasks.lmms.secrets`); :class:`UnsupportedLmmsEval` if unsupported."""
    check_lmms_eval_version()
    from lmms_eval.api.model import lmms

    from reguide_tasks.lmms.secrets import with_secrets

    original = getattr(lmms.create_from_arg_string, "_reguide_original", lmms.create_from_arg_string.__func__)

    def create_from_arg_string(cls, arg_string, additional_config=None):
        return original(cls, with_secrets(arg_string or "", secrets), additional_config)

    create_from_arg_string._reguide_original = original  # type: ignore[attr-defined]
    lmms.create_from_arg_string = classmethod(create_from_arg_string)


# --- ResponseCache._replay_audit_log / _open_local_handles: the audit log checked before it is replayed --


def install_cache_audit_check() -> None:
    """Check the answer cache's audit log before lmms-eval replays it, and checksum new lines
    (:mod:`reguide_tasks.lmms.cache_audit`); :class:`UnsupportedLmmsEval` if unsupported."""
    check_lmms_eval_version()
    from lmms_eval.caching.response_cache import ResponseCache
    from loguru import logger

    from reguide_tasks.lmms.cache_audit import ChecksummedAudit, check_audit_log

    if getattr(ResponseCache._replay_audit_log, "_reguide", False):
        return
    replay, open_handles = ResponseCache._replay_audit_log, ResponseCache._open_local_handles

    def _replay_audit_log(self) -> None:
        torn, rejected = check_audit_log(self.audit_path)
        if torn:
            logger.warning(f"answer cache: cut a torn last line off {self.audit_path} (a run killed while writing it): that answer is asked again")
        if rejected:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(rejected.items()))
            logger.warning(
                f"answer cache: {sum(rejected.values())} lines of {self.audit_path} failed their check ({reasons}; edited or corrupted): "
                f"not replayed, moved to {self.audit_path}.rejected.jsonl; those answers are asked again unless the database holds them"
            )
        replay(self)

    def _open_local_handles(self) -> None:
        open_handles(self)
        if self._audit_file is not None and not isinstance(self._audit_file, ChecksummedAudit):
            self._audit_file = ChecksummedAudit(self._audit_file)

    _replay_audit_log._reguide = True  # type: ignore[attr-defined]
    ResponseCache._replay_audit_log = _replay_audit_log
    ResponseCache._open_local_handles = _open_local_handles
