"""Run the docstring examples of the metric, scoring and answer-reading modules, and pin the two
AUROC code paths (exact scikit-learn for results, per-value counts for bootstrap resamples) together."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from reguide_tasks.metrics.ood import auroc, auroc_from_counts

DOCTEST_MODULES = (
    "reguide_tasks.metrics.ood",
    "reguide_tasks.metrics.bootstrap",
    "reguide_tasks.metrics.paired",
    "reguide_tasks.metrics.calibration",
    "reguide_tasks.answers.scoring",
    "reguide_tasks.answers.parsing",
    "reguide_tasks.answers.suggestions",
    "reguide_tasks.answers.key_matching",
    "reguide_tasks.vocab",
)


@pytest.mark.parametrize("module_name", DOCTEST_MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {module_name} failed"
    assert result.attempted > 0, f"{module_name} has no docstring examples"


@pytest.mark.parametrize("n_id, n_ood", [(1, 1), (5, 3), (40, 60), (500, 200)])
def test_auroc_from_counts_agrees_with_sklearn_auroc(n_id, n_ood):
    rng = np.random.RandomState(n_id * 1000 + n_ood)
    for _ in range(20):
        id_scores = rng.randint(0, 11, n_id)  # integer scores 0..10: many ties
        ood_scores = rng.randint(0, 11, n_ood)
        is_id = np.r_[np.ones(n_id, bool), np.zeros(n_ood, bool)]
        expected = auroc(is_id, np.r_[id_scores, ood_scores])
        values = np.arange(11)  # every possible value, some absent on both sides
        id_counts = (id_scores[:, None] == values).sum(axis=0)
        ood_counts = (ood_scores[:, None] == values).sum(axis=0)
        assert float(auroc_from_counts(id_counts, ood_counts)) == pytest.approx(expected, abs=1e-9)


def test_auroc_from_counts_batched_rows_match_single_rows():
    rng = np.random.RandomState(0)
    id_counts = rng.randint(0, 5, (6, 11))
    ood_counts = rng.randint(0, 5, (6, 11))
    batched = auroc_from_counts(id_counts, ood_counts)
    single = [float(auroc_from_counts(i, o)) for i, o in zip(id_counts, ood_counts, strict=True)]
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-12)
