"""Shared test fixtures, built once per session: a synthetic data root and a tiny LLaVA checkpoint.

``fixture_data``: ``make_fixture`` for every benchmark into one temporary data root (OpenOOD layout,
``reguide_documents/<benchmark>.jsonl`` for the ``*_custom`` tasks), ``FIXTURE_PER_DATASET`` images per
dataset. Treat it as read-only: a test that needs to break the data makes its own root.
``tiny_llava_dir`` / ``tiny_qwen2_vl_dir``: random-weight LLaVA / Qwen2-VL checkpoints with their
processors, saved with ``save_pretrained`` (see ``tiny_models``).

Marker ``e2e``: end-to-end tests that run lmms-eval (minutes, not seconds); deselect with
``-m "not e2e"``. Most run our CLIs through ``cli_runs.run_cli``, a fork of the test process with
lmms-eval imported once; ``processes`` marks those whose subject is the processes themselves.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
FIXTURE_PER_DATASET = 2

if str(TESTS_DIR) not in sys.path:  # test helpers (tiny_models, cli_runs) import as top-level modules
    sys.path.insert(0, str(TESTS_DIR))


# issue 29's six groups of hostile-input tests: each test carries `hostile` and its group's marker
HOSTILE_GROUPS = {
    "reports": "1: report injection",
    "files": "2: malformed release, result and document files",
    "paths": "3: paths that leave the data root or the output folder",
    "concurrency": "4: two runs at once, kill and resume, corrupted caches, a full disk",
    "secrets": "5: API keys in no written file",
    "served": "6: served-backend faults, retried within bounds",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end runs of lmms-eval (slow)")
    config.addinivalue_line("markers", "hostile: adversarial inputs and shared outputs (docs/security.md); run alone with -m hostile")
    for group, what in HOSTILE_GROUPS.items():
        config.addinivalue_line("markers", f"hostile_{group}: hostile inputs, {what} (docs/security.md); run this group alone with -m hostile_{group}")
    config.addinivalue_line("markers", "slow: a test over ~10 s of its own")
    config.addinivalue_line("markers", "processes: starts processes on purpose (several ranks, a kill and a restart): "
                            "kept as real subprocesses, not cli_runs.run_cli forks; -m processes runs them alone")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``hostile`` names its group too, so that ``-m hostile_<group>`` finds it."""
    for item in items:
        groups = [g for g in HOSTILE_GROUPS if item.get_closest_marker(f"hostile_{g}")]
        if item.get_closest_marker("hostile") and len(groups) != 1:
            raise pytest.UsageError(f"{item.nodeid} is marked hostile with {len(groups)} group markers; give it one of "
                                    f"{', '.join('hostile_' + g for g in HOSTILE_GROUPS)} (tests/conftest.py)")


@dataclass(frozen=True)
class FixtureData:
    """A data root and, per benchmark, the documents written there (ID first, then near, then far)."""

    root: Path
    documents: dict[str, list[dict]]
    per_dataset: int


@pytest.fixture(scope="session")
def fixture_data(tmp_path_factory: pytest.TempPathFactory) -> FixtureData:
    from reguide_tasks.data.benchmarks import BENCHMARKS
    from reguide_tasks.testing.fixtures import make_fixture

    root = tmp_path_factory.mktemp("reguide_data")
    # The benchmarks with a released subset (the others' fixtures need their image lists: tests/test_user_benchmark.py).
    documents = {name: make_fixture(root, name, FIXTURE_PER_DATASET) for name in sorted(BENCHMARKS) if BENCHMARKS[name].subsets}
    return FixtureData(root, documents, FIXTURE_PER_DATASET)


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture(scope="session")
def tiny_qwen2_vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny_qwen2_vl"))
