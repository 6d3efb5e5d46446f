"""The comparison tables written out as Markdown: the ranked leaderboard, ReGuide vs baseline per model,
and the calibration of verbalized confidence (the text the HTML page is made from, too)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from reguide_tasks.report.columns import METRIC_LABELS
from reguide_tasks.report.leaderboard import FALLBACK_ORDER, MEAN_OVER_SHARED
from reguide_tasks.report.render import fmt_cell, fmt_value, markdown_table
from reguide_tasks.vocab import split_metric_key


def metric_label(key: str) -> str:
    """``auroc_near`` -> ``AUROC near``; ``id_acc`` -> ``ID acc``."""
    family, target = split_metric_key(key)
    if family == "id_acc":
        return "ID acc"
    return f"{METRIC_LABELS.get(family, family)} {target}".strip()


_SHOWN = ("auroc_near", "auroc_far", "fpr95_near", "fpr95_far", "fpr95tpr_near", "fpr95tpr_far", "id_acc")


def ranking_label(key: str, datasets: str = "") -> str:
    """``auroc_far`` -> ``AUROC far``; the mean over shared OoD sets -> ``mean AUROC over a, b``."""
    if key == MEAN_OVER_SHARED:
        return f"mean AUROC over {datasets.replace(',', ', ')}" if datasets else "mean AUROC over the shared OoD sets"
    return metric_label(key)


def _set_rankings(table: pd.DataFrame) -> dict[str, dict]:
    """Document-set letter -> its ranking (ranked_by, ranked_over, passed_over, not_ranked_because)."""
    out: dict[str, dict] = {}
    for r in table.to_dict("records"):
        letter = str(r["documents"]).split(" ", 1)[0]
        if letter != "n/a":
            out.setdefault(letter, r)
    return out


def ranking_heading(table: pd.DataFrame, primary: str | None) -> tuple[str, str]:
    """(heading suffix, legend sentence) saying what each document set was ranked by, and, when the
    requested metric was passed over, that it was and why."""
    sets = _set_rankings(table)
    if not sets and len(table):  # every row is a run without a samples file: nothing could be ranked
        why = "no run has a samples file (run with --log_samples)"
        return f" (not ranked: {why})", f"Not ranked: {why}; a rank needs every image's score"
    if primary is not None:
        return "", f"Ranked by {ranking_label(primary, next((str(r['ranked_over']) for r in sets.values()), ''))} (--rank-by, best first)"
    parts, passed = [], set()
    for letter, r in sets.items():
        key = str(r.get("ranked_by") or "")
        passed.update(p for p in str(r.get("passed_over") or "").split(",") if p)
        where = f"set {letter} " if len(sets) > 1 else ""
        parts.append(f"{where}ranked by {ranking_label(key, str(r.get('ranked_over') or ''))}" if key else f"{where}not ranked: {r.get('not_ranked_because')}")
    if not passed:
        return "", f"Ranked by {metric_label(FALLBACK_ORDER[0])} (best first)"
    lacking = " and ".join(metric_label(k) if k != MEAN_OVER_SHARED else "a shared OoD set" for k in FALLBACK_ORDER if k in passed)
    heading = f" (fallback: {lacking} n/a in some run; {'; '.join(parts)})"
    legend = (
        f"Ranked by the first of {', '.join(ranking_label(k) for k in FALLBACK_ORDER)} that every run of a document "
        f"set has (--rank-by forces one): {'; '.join(parts)}, best first"
    )
    return heading, legend


def leaderboard_markdown(table: pd.DataFrame, primary: str | None) -> str:
    keys = list(dict.fromkeys(str(k) for k in table.get("ranked_by", pd.Series(dtype=str)) if k))
    extra = any(k not in _SHOWN for k in keys)  # the ranking value gets a column of its own unless shown
    extra_label = (ranking_label(keys[0], "") if len(keys) == 1 and keys[0] != MEAN_OVER_SHARED else "Ranking value") if extra else ""
    header = ["Rank", "Model", "Task", "Docs", *([extra_label] if extra else []), *(metric_label(k) for k in _SHOWN),
              "Fail", "Repaired", "vs next (AUROC, pp)"]
    body = []
    for r in table.to_dict("records"):
        rank = r.get("rank")
        body.append([
            "-" if rank is None or (isinstance(rank, float) and math.isnan(rank)) else str(int(rank)),
            str(r["model"]), str(r["task"]), str(r["documents"]), *([fmt_value(r["primary"])] if extra else []),
            *(fmt_cell(r, k) for k in _SHOWN),
            fmt_value(r["fail_rate_all"]), fmt_value(r["repaired_share"]), str(r.get("vs_next") or ""),
        ])
    heading, ranked_by = ranking_heading(table, primary)
    legend = (
        f"{ranked_by}, only among runs given the same documents (Docs: the document set's letter and size; a run "
        "without samples, or without the ranking metric, is not ranked). vs next: the ranking's AUROC (its dataset, "
        "group mean or mean over the shared OoD sets) of this run minus the next-ranked run's on the documents both "
        "kept, DeLong's paired 95% CI; * = significant at 0.05 after Holm's correction over the table's comparisons. "
        "Fail: share of all answers without a usable score; Repaired: share of answers whose score used a repaired key. "
        "FPR columns and the mark: as in the benchmark's tables above."
    )
    return "\n\n".join([f"### Leaderboard{heading}", markdown_table(header, body, 4), legend])


def reguide_vs_baseline_markdown(table: pd.DataFrame) -> str:
    header = ["Model", "Baseline task", "ReGuide task", "Target", "ID", "OoD", "AUROC baseline", "AUROC ReGuide",
              "Delta [95% CI]", "p (Holm)"]
    body = [
        [str(r["model"]), str(r["baseline_task"]), str(r["reguide_task"]), str(r["target"]), str(r["n_id"]),
         str(r["n_ood"]), fmt_value(r["auroc_baseline"]), fmt_value(r["auroc_reguide"]), str(r["delta_text"]), _p(r["p_holm"])]
        for r in table.to_dict("records")
    ]
    legend = (
        "Delta = AUROC(ReGuide) - AUROC(baseline) in percentage points, on the documents both runs kept (ID / "
        "OoD: their numbers); near / far: difference of the group means. DeLong's paired test (for near / "
        "far its mean over the group's datasets); p-values Holm-corrected over the table; * = significant at 0.05."
    )
    return "\n\n".join(["### ReGuide vs baseline", markdown_table(header, body, 4), legend])


def calibration_markdown(table: pd.DataFrame) -> str:
    header = ["Model", "Task", "ID answers", "No confidence", "Out of 0-100", "Accuracy", "Mean confidence",
              "ECE (equal width)", "ECE (equal mass)", "Brier", "AURC"]
    body = [
        [str(r["model"]), str(r["task"]), str(int(r["n"])), str(int(r["n_failed"])), str(int(r["n_out_of_range"])),
         fmt_value(r["accuracy_stated"]), fmt_value(r["mean_confidence"]),
         fmt_value(r["ece_equal_width"]), fmt_value(r["ece_equal_mass"]), fmt_value(r["brier"], 3), fmt_value(r["aurc"])]
        for r in table.to_dict("records")
    ]
    legend = (
        "Verbalized confidence of the predicted class on ID images (0-100 read as a probability). ECE: 15 "
        "bins, equal-width or equal-mass (a tie group is never split), in %. Brier: top-label, 0-1. AURC: "
        "area under the selective risk-coverage curve, in %. Accuracy and Mean confidence: over the answers "
        "that state a confidence for their prediction (what ECE and Brier compare). An answer without one (failed, "
        "or no value for its prediction) is counted in No confidence, left out of ECE and Brier, and is an error "
        "ranked last in AURC; a confidence outside 0-100 is no probability: that answer is left out and counted."
    )
    return "\n\n".join(["### Calibration of verbalized confidence (ID images)", markdown_table(header, body, 2), legend])


def _p(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def comparisons_markdown(parts: Mapping[str, pd.DataFrame], primary: str | None) -> str:
    """The comparison sections of one benchmark, those with rows."""
    sections = [leaderboard_markdown(parts["leaderboard"], primary)] if len(parts["leaderboard"]) else []
    if len(parts["reguide_vs_baseline"]):
        sections.append(reguide_vs_baseline_markdown(parts["reguide_vs_baseline"]))
    if len(parts["calibration"]):
        sections.append(calibration_markdown(parts["calibration"]))
    return "\n\n".join(sections)
