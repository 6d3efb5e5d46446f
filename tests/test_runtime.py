"""The one version guard over our patches of lmms-eval internals (reguide_tasks/lmms/runtime.py).

When one of these fails after an lmms-eval upgrade: review each patch listed in runtime's docstring
against the new version before adding it to SUPPORTED_LMMS_EVAL.
"""

from __future__ import annotations

import importlib
from functools import reduce

import pytest

from reguide_tasks.lmms import runtime

INTERNALS = runtime.PATCHED_INTERNALS + runtime.RELIED_ON_INTERNALS
REVIEW = "review every patch listed in the docstring of reguide_tasks/lmms/runtime.py against it, then add it to SUPPORTED_LMMS_EVAL"


def test_installed_lmms_eval_is_a_version_the_patches_were_written_for() -> None:
    version = runtime.lmms_eval_version()
    assert version in runtime.SUPPORTED_LMMS_EVAL, (
        f"lmms-eval {version} is installed; the patches in reguide_tasks/lmms/runtime.py were written for "
        f"{runtime.SUPPORTED_LMMS_EVAL}: {REVIEW}"
    )


@pytest.mark.parametrize(("module", "name"), INTERNALS, ids=[f"{m}.{n}" for m, n in INTERNALS])
def test_every_lmms_eval_internal_we_touch_exists(module: str, name: str) -> None:
    try:
        reduce(getattr, name.split("."), importlib.import_module(module))
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"lmms-eval {runtime.lmms_eval_version()} has no {module}.{name} ({exc}): upstream renamed or removed it; {REVIEW}")


@pytest.mark.parametrize(("module", "name"), INTERNALS, ids=[f"{m}.{n}" for m, n in INTERNALS])
def test_runtime_docstring_lists_every_internal(module: str, name: str) -> None:
    assert f"``{module}.{name}``" in runtime.__doc__


def test_check_names_the_installed_and_supported_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runtime.check_lmms_eval_version() in runtime.SUPPORTED_LMMS_EVAL
    monkeypatch.setattr(runtime, "lmms_eval_version", lambda: "9.9.9")
    with pytest.raises(runtime.UnsupportedLmmsEval) as raised:
        runtime.check_lmms_eval_version()
    message = str(raised.value)
    assert "lmms-eval 9.9.9 is installed" in message
    assert all(v in message for v in runtime.SUPPORTED_LMMS_EVAL)
    assert "pip install 'lmms-eval==" in message and "SUPPORTED_LMMS_EVAL" in message


def test_guard_per_patch_on_an_unsupported_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmms_eval.__main__ as lmms_main
    from lmms_eval import evaluator
    from lmms_eval.caching.response_cache import ResponseCache
    from lmms_eval.tasks import TaskManager

    before = (TaskManager.__init__, evaluator._run_generate_until_agentic, ResponseCache.__dict__["_is_valid_response"], lmms_main.cli_evaluate_single)
    monkeypatch.setattr(runtime, "lmms_eval_version", lambda: "9.9.9")
    monkeypatch.setenv("LMMS_EVAL_PLUGINS", "reguide_tasks")
    assert runtime.install_plugin_task_index() is False  # left alone (lmms-eval's own "Tasks were not found")
    assert runtime.install_batched_agentic_runner() is False  # an optimisation: lmms-eval's loop runs
    assert runtime.install_running_usage_totals() is False  # an optimisation: lmms-eval's own sum runs
    with pytest.raises(runtime.UnsupportedLmmsEval):
        runtime.install_cache_placeholder_policy()
    with pytest.raises(runtime.UnsupportedLmmsEval):
        runtime.install_stable_cache_version()
    with pytest.raises(runtime.UnsupportedLmmsEval), runtime.recording_evaluate_single():
        pass
    after = (TaskManager.__init__, evaluator._run_generate_until_agentic, ResponseCache.__dict__["_is_valid_response"], lmms_main.cli_evaluate_single)
    assert all(a is b for a, b in zip(after, before))


def test_batched_runner_installs_and_uninstalls() -> None:
    from lmms_eval import evaluator

    from reguide_tasks.lmms.two_stage import run_agentic_batched

    original = runtime.lmms_eval_agentic_loop()
    try:
        assert runtime.install_batched_agentic_runner() is True
        assert evaluator._run_generate_until_agentic is run_agentic_batched
        assert runtime.lmms_eval_agentic_loop() is original
    finally:
        runtime.uninstall_batched_agentic_runner()
    assert evaluator._run_generate_until_agentic is original


def test_recording_evaluate_single_records_and_restores() -> None:
    import lmms_eval.__main__ as lmms_main

    original = lmms_main.cli_evaluate_single
    try:
        lmms_main.cli_evaluate_single = lambda args: ("results", args)
        with runtime.recording_evaluate_single() as outcomes:
            assert lmms_main.cli_evaluate_single("a") == ("results", "a")
        assert outcomes == [("results", "a")]
        assert lmms_main.cli_evaluate_single("b") == ("results", "b")  # restored: no longer recorded
        assert outcomes == [("results", "a")]

        def failing(args):
            raise ValueError("boom")

        lmms_main.cli_evaluate_single = failing
        with runtime.recording_evaluate_single() as outcomes, pytest.raises(ValueError):
            lmms_main.cli_evaluate_single("c")
        assert len(outcomes) == 1 and isinstance(outcomes[0], ValueError)
        assert lmms_main.cli_evaluate_single is failing
    finally:
        lmms_main.cli_evaluate_single = original


def test_reguide_eval_stops_on_an_unsupported_version(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from reguide_tasks.lmms import cli

    monkeypatch.setattr(runtime, "lmms_eval_version", lambda: "9.9.9")
    with pytest.raises(SystemExit) as exited:
        cli.main(["--model", "reguide_scripted", "--tasks", "reguide_baseline_cifar10_custom"])
    assert exited.value.code == 1
    assert capsys.readouterr().err.startswith("reguide-eval: error: lmms-eval 9.9.9 is installed")


def test_running_usage_totals_match_lmms_evals_sum_and_survive_a_reset() -> None:
    """The O(new answers) token totals give what lmms-eval's own O(history) sum gives, through its
    own log_usage / reset_usage_metrics, and reach the openai model module that imported the name."""
    import lmms_eval.models.chat.openai as chat_openai
    from lmms_eval.models.model_utils import usage_metrics

    from reguide_tasks.lmms.usage_totals import IncrementalTotals

    original = usage_metrics.get_running_totals
    imported = chat_openai.get_running_totals
    try:
        assert runtime.install_running_usage_totals() is True
        assert isinstance(usage_metrics.get_running_totals, IncrementalTotals)
        assert chat_openai.get_running_totals is usage_metrics.get_running_totals
        patched = usage_metrics.get_running_totals
        usage_metrics.reset_usage_metrics()
        for run in range(2):  # a second run in the same process starts from a cleared history
            for i in range(50):
                usage_metrics.log_usage("m", input_tokens=i + run, output_tokens=2 * i, reasoning_tokens=i % 3)
                if i % 7 == 0:
                    assert patched() == original()
            assert patched() == original()
            usage_metrics.reset_usage_metrics()
        assert patched()["n_api_calls"] == 0
    finally:
        usage_metrics.get_running_totals = original
        chat_openai.get_running_totals = imported
        usage_metrics.reset_usage_metrics()


def test_cache_version_is_lmms_evals_release_not_the_commit_of_the_checkout_around_the_venv() -> None:
    """0.7.3 versions its answer cache by ``git describe`` in the folder holding the lmms_eval package:
    with the venv inside a git checkout (this repository's .venv) that is the checkout's commit, and a
    commit between a killed run and its restart would discard every cached answer."""
    import importlib.metadata
    import subprocess

    from lmms_eval import utils

    original = utils.get_lmms_eval_cache_version
    try:
        runtime.install_stable_cache_version()
        runtime.install_stable_cache_version()  # idempotent
        assert utils.get_lmms_eval_cache_version() == importlib.metadata.version("lmms-eval")
        inside = subprocess.run(["git", "-C", str(utils._lmms_eval_repo_root()), "rev-parse", "--is-inside-work-tree"],
                                capture_output=True, text=True, check=False).stdout.strip() == "true"
        if inside and not (utils._lmms_eval_repo_root() / ".git").exists():  # the trap, where this layout has it
            assert original() != utils.get_lmms_eval_cache_version()
    finally:
        utils.get_lmms_eval_cache_version = original
