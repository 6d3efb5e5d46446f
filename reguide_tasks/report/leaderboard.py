"""The ranked leaderboard of one benchmark, the comparison of ReGuide with the baseline per model, and
the calibration of verbalized confidence per run: the tables a reader compares models by.

Conventions
-----------
- Runs are ranked by a stated primary metric, best first, and only against runs that evaluated the
  same document set: each set gets a letter and its size. A metric given with ``--rank-by`` is used
  as it is (a run without it is listed unranked). Without one, each set is ranked by the first of
  :data:`FALLBACK_ORDER` that every run of the set has: AUROC near, then AUROC far, then the mean AUROC
  over the OoD sets every run of the set has (the authors' 5% ImageNet200 release has no SSB-hard
  answers, so no near). Each row says what it was ranked by and what was passed over.
- Significance: DeLong's paired test on the documents both runs kept (a dataset, or the mean over a
  near / far group: :func:`reguide_tasks.metrics.paired.delong_mean_test`), on the AUROC of the
  primary metric's target; each run is tested against the next-ranked one, and the p-values of a
  table are Holm-corrected together. ``*``: significant at 0.05 after the correction.
- ReGuide vs baseline: for every model with both, Delta = AUROC(ReGuide) - AUROC(baseline) on the
  documents both runs kept, per OoD dataset and near / far, with DeLong's 95% CI and Holm-corrected
  p-values over all rows of the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.metrics.calibration import calibration_summary
from reguide_tasks.metrics.paired import PairedAUROCTest, holm
from reguide_tasks.report.pairing import (
    document_set_id,
    fmt_delta,
    paired_auroc_test,
    run_stage,
)
from reguide_tasks.report.runs import Run
from reguide_tasks.report.samples import RunScores
from reguide_tasks.vocab import GROUPS, higher_is_better, split_metric_key

DEFAULT_PRIMARY = "auroc_near"
# The mean AUROC over the OoD sets every run of a document set has (a ranking key, not a task metric).
MEAN_OVER_SHARED = "auroc_mean"
# Without --rank-by, a document set is ranked by the first of these that every run of it has.
FALLBACK_ORDER = (DEFAULT_PRIMARY, "auroc_far", MEAN_OVER_SHARED)
ALPHA = 0.05


@dataclass(frozen=True)
class Ranking:
    """What the runs of one document set are ranked by.

    ``key``: a metric key, :data:`MEAN_OVER_SHARED` (then ``datasets`` are the OoD sets averaged), or
    "" when nothing can rank (``why_none`` says why). ``passed_over``: the keys of
    :data:`FALLBACK_ORDER` tried first, which some run of the set lacks.
    """

    key: str
    datasets: tuple[str, ...] = ()
    passed_over: tuple[str, ...] = ()
    why_none: str = ""

    @property
    def target(self) -> str | tuple[str, ...]:
        """What the paired test compares: a dataset or group, or the datasets of the mean."""
        return self.datasets if self.key == MEAN_OVER_SHARED else split_metric_key(self.key)[1]

    def value(self, entry: Scored) -> float:
        if not self.key:
            return math.nan
        if self.key == MEAN_OVER_SHARED:
            return float(np.mean([_value(entry, f"auroc_{d}") for d in self.datasets]))
        return _value(entry, self.key)


def choose_ranking(group: Sequence[Scored], requested: str | None) -> Ranking:
    """The ranking of one document set's runs: ``requested`` as given, or (None) the first of
    :data:`FALLBACK_ORDER` that every run of ``group`` with any OoD AUROC has."""
    if requested is not None and requested != MEAN_OVER_SHARED:
        return Ranking(requested)
    passed: list[str] = []
    ood_datasets = get_benchmark(group[0].run.benchmark).ood_datasets if group else ()
    # A run without any OoD AUROC (e.g. no ID answer) cannot rank by any of them: it does not veto.
    group = [e for e in group if any(not math.isnan(_value(e, f"auroc_{d}")) for d in ood_datasets)]
    candidates = (FALLBACK_ORDER if requested is None else (requested,)) if group else ()
    for key in candidates:
        if key == MEAN_OVER_SHARED:
            shared = tuple(d for d in ood_datasets if all(not math.isnan(_value(e, f"auroc_{d}")) for e in group))
            if shared:
                return Ranking(key, shared, tuple(passed))
        elif all(not math.isnan(_value(e, key)) for e in group):
            return Ranking(key, (), tuple(passed))
        passed.append(key)
    what = "no OoD set has an AUROC in every run of this document set" if group else "no run of this document set has an AUROC"
    return Ranking("", (), tuple(passed) if group else tuple(FALLBACK_ORDER), why_none=(
        f"{what} (an AUROC needs scored answers on both the ID set and an OoD set; reguide-eval's summary "
        "says which are missing and why)"
    ))


@dataclass
class Scored:
    """A run with its per-document scores (None: no samples file) and its table row."""

    run: Run
    scores: RunScores | None
    row: Mapping


def _value(entry: Scored, key: str) -> float:
    value = entry.row.get(key, math.nan)
    return float(value) if isinstance(value, (int, float, np.number)) else math.nan


def _repaired_share(entry: Scored) -> float:
    """Share of answers (percent) whose score used a repaired key, over every dataset."""
    if entry.scores is None:
        return math.nan
    total = weighted = 0.0
    for dataset, n in entry.scores.n_total.items():
        rate = entry.run.metrics.get(f"repaired_rate_{dataset}", math.nan)
        if n and not math.isnan(rate):
            total += n
            weighted += rate * n
    return weighted / total if total else math.nan


def document_sets(entries: Sequence[Scored]) -> dict[str, str]:
    """Document-set fingerprint -> letter, larger sets first (then first seen)."""
    sizes: dict[str, int] = {}
    for entry in entries:
        key = document_set_id(entry.scores)
        if key:
            sizes.setdefault(key, len(entry.scores.documents))
    ordered = sorted(sizes, key=lambda key: -sizes[key])
    return {key: chr(ord("A") + i) if i < 26 else f"S{i}" for i, key in enumerate(ordered)}


def leaderboard(entries: Sequence[Scored], primary: str | None = None) -> pd.DataFrame:
    """One row per run, ranked within its document set by ``primary`` (None: the fallback order of
    the module docstring), with the paired test against the next-ranked run. Runs without samples are
    listed unranked."""
    letters = document_sets(entries)
    rows, tests = [], []
    for letter_key in [*letters, ""]:
        group = [e for e in entries if document_set_id(e.scores) == letter_key]
        ranking = choose_ranking(group, primary) if letter_key else Ranking("", why_none="no samples file")
        better_high = higher_is_better(ranking.key or DEFAULT_PRIMARY)
        ranked = [e for e in group if not math.isnan(ranking.value(e))]
        ranked.sort(key=lambda e: (-ranking.value(e) if better_high else ranking.value(e), e.run.label, e.run.task))
        unranked = [e for e in group if e not in ranked]
        for position, entry in enumerate(ranked + unranked):
            is_ranked = position < len(ranked) and bool(letter_key)
            test, n_unpaired = None, 0
            if is_ranked and position + 1 < len(ranked) and ranking.target:
                test, n_unpaired = paired_auroc_test(entry.scores, ranked[position + 1].scores, ranking.target)
            tests.append(test)
            rows.append(_leaderboard_row(entry, letters.get(letter_key, ""), position + 1 if is_ranked else None, ranking, test, n_unpaired))
    adjusted = holm([t.p_value if t is not None else math.nan for t in tests]) if tests else np.empty(0)
    for row, test, p in zip(rows, tests, adjusted):
        row["vs_next"] = fmt_delta(test, float(p), ALPHA) if test is not None else ""
        row["p_holm"] = float(p)
    return pd.DataFrame(rows)


def _leaderboard_row(entry: Scored, letter: str, rank: int | None, ranking: Ranking, test: PairedAUROCTest | None, n_unpaired: int) -> dict:
    scores = entry.scores
    docs = f"{letter} ({len(scores.documents):,})" if letter and scores is not None else "n/a"
    row = {
        "rank": rank, "model": entry.run.label, "task": entry.run.task, "documents": docs, "primary": ranking.value(entry),
        # what this row's set was ranked by (the CSV's record of a fallback)
        "ranked_by": ranking.key, "ranked_over": ",".join(ranking.datasets), "passed_over": ",".join(ranking.passed_over),
        "not_ranked_because": ranking.why_none,
    }
    for key in ("auroc_near", "auroc_far", "fpr95_near", "fpr95_far", "fpr95tpr_near", "fpr95tpr_far", "id_acc", "fail_rate_all"):
        row[key] = _value(entry, key)
    for key in ("fpr95_near", "fpr95_far", "fpr95tpr_near", "fpr95tpr_far"):
        row[f"{key}_tie_low"] = _value(entry, f"{key}_tie_low")
    for group in GROUPS:
        row[f"auroc_{group}_lo"], row[f"auroc_{group}_hi"] = _value(entry, f"auroc_{group}_lo"), _value(entry, f"auroc_{group}_hi")
    row["repaired_share"] = _repaired_share(entry)
    row["n_unpaired"] = n_unpaired
    return row


def reguide_vs_baseline(entries: Sequence[Scored]) -> pd.DataFrame:
    """Per model with a baseline and a ReGuide run: Delta AUROC per OoD dataset and near / far on the
    documents both kept, DeLong CI and Holm-corrected p-values (one row per model x target). Each
    ReGuide run is paired with the baseline run of the same model that shares most documents."""
    rows, tests = [], []
    for reguide in (e for e in entries if e.scores is not None and run_stage(e.run) == "reguide"):
        candidates = [
            e for e in entries
            if e.scores is not None and run_stage(e.run) == "baseline" and e.run.identity == reguide.run.identity
        ]
        if not candidates:
            continue
        baseline = max(candidates, key=lambda e: (len(e.scores.documents & reguide.scores.documents), e.run.task))
        shared = len(baseline.scores.documents & reguide.scores.documents)
        if not shared:
            continue
        for target in (*reguide.scores.ood_datasets, *GROUPS):
            test, n_unpaired = paired_auroc_test(reguide.scores, baseline.scores, target)
            if test is None:
                continue
            tests.append(test)
            rows.append({
                "model": reguide.run.label, "baseline_task": baseline.run.task, "reguide_task": reguide.run.task,
                "target": target, "n_id": test.n_id, "n_ood": test.n_ood,
                "auroc_baseline": test.auroc_b, "auroc_reguide": test.auroc_a, "delta": test.delta,
                "ci_low": test.ci_low, "ci_high": test.ci_high, "p_value": test.p_value, "n_unpaired": n_unpaired,
            })
    adjusted = holm([t.p_value for t in tests]) if tests else np.empty(0)
    for row, test, p in zip(rows, tests, adjusted):
        row["p_holm"] = float(p)
        row["delta_text"] = fmt_delta(test, float(p), ALPHA)
    return pd.DataFrame(rows)


def calibration_inputs(scores: RunScores) -> tuple[np.ndarray, np.ndarray, int]:
    """(confidence, correct, how many were left out) for calibration. A confidence outside 0-100 is no
    probability: that answer is left out and counted. An answer without a usable confidence (failed,
    or no value for its prediction) counts as wrong, whatever it predicted."""
    confidence = scores.id_confidence
    valid = np.isnan(confidence) | ((confidence >= 0) & (confidence <= 100))
    confidence, correct = confidence[valid], scores.id_correct[valid]
    return confidence, correct & ~np.isnan(confidence), int((~valid).sum())


def calibration_table(entries: Sequence[Scored], n_bins: int = 15) -> pd.DataFrame:
    """Per run with confidences in its samples: calibration of the verbalized confidence on ID images
    (:func:`reguide_tasks.metrics.calibration.calibration_summary`); failed answers counted."""
    rows = []
    for entry in entries:
        scores = entry.scores
        if scores is None or not scores.has_confidence:
            continue
        confidence, correct, out_of_range = calibration_inputs(scores)
        summary = calibration_summary(confidence, correct, n_bins=n_bins)
        stated = ~np.isnan(confidence)
        rows.append({
            "model": entry.run.label, "task": entry.run.task, **summary, "n_out_of_range": out_of_range,
            # over the answers that state a confidence: what ECE and Brier compare
            "accuracy_stated": 100.0 * float(correct[stated].mean()) if stated.any() else math.nan,
            "mean_confidence": float(confidence[stated].mean()) if stated.any() else math.nan,
        })
    return pd.DataFrame(rows)
