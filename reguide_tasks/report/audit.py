"""Parser audit: how a run's answers were read, per dataset, from the ``oodd`` records of its samples.

For each run (results JSON + ``<date_id>_samples_<task>.jsonl``, found as :mod:`reguide_tasks.report.runs`
finds them) and each dataset: answered documents and documents not in the release; ok / partial /
failed answers; the most frequent failure reasons (by kind: 'missing classes' for any count, 'unknown
keys' whatever the keys); the most frequent unknown keys; the repaired keys ('carf -> scarf') and how
many answers had one; and the share of scored answers whose score came from a repaired key (for S_max:
the maximum was read through a repair).

The tables show the ``top`` most frequent entries of each list; ``audit_keys.csv`` holds every unknown
and repaired key with its count, so nothing is cut off.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.report.escape import csv_safe, md_text
from reguide_tasks.report.files import ReportError, read_records
from reguide_tasks.report.render import markdown_table
from reguide_tasks.report.runs import Run, load_runs, select_runs
from reguide_tasks.report.staging import staged

STATUSES = ("ok", "partial", "failed")
_NUMBER = re.compile(r"\d+")


@dataclass
class DatasetAudit:
    """What the records of one dataset in one run say about how its answers were read."""

    dataset: str
    answered: int = 0
    not_in_release: int = 0
    status: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)  # reason kind -> answers
    unknown: Counter = field(default_factory=Counter)  # key -> answers that left it unknown
    repaired: Counter = field(default_factory=Counter)  # (key, class) -> answers
    answers_repaired: int = 0  # answers with at least one repaired confidence key
    predictions_repaired: int = 0
    scored: int = 0
    scores_repaired: int = 0  # scored answers whose score used a repaired key

    @property
    def score_repaired_pct(self) -> float:
        return 100.0 * self.scores_repaired / self.scored if self.scored else math.nan


def reason_kind(part: str) -> str:
    """One note of a reason, without what varies between answers: 'missing 12 classes' -> 'missing
    classes', 'unknown keys: pear, apple' -> 'unknown keys', 'request failed after 3 retries: ...' ->
    'request failed after N retries'."""
    head = _NUMBER.sub("N", part.split(":", 1)[0].strip())
    return "missing classes" if head.startswith("missing N class") else head


def audit_records(records: Iterable[Mapping], dataset_order: Sequence[str] = ()) -> dict[str, DatasetAudit]:
    """Per dataset (benchmark order first, others as met), the audit of a run's records."""
    audits: dict[str, DatasetAudit] = {d: DatasetAudit(d) for d in dataset_order}
    for record in records:
        dataset = str(record.get("dataset"))
        audit = audits.setdefault(dataset, DatasetAudit(dataset))
        if record.get("not_in_release"):
            audit.not_in_release += 1
            continue
        audit.answered += 1
        status = str(record.get("status") or "")
        audit.status[status] += 1
        if status != "ok" or record.get("reason"):
            kinds = {reason_kind(part) for part in str(record.get("reason") or "").split("; ") if part.strip()}
            audit.reasons.update(kinds)
        audit.unknown.update(list(dict.fromkeys(str(k) for k in record.get("unknown_keys") or ())))
        repaired = record.get("repaired_keys") or {}
        audit.repaired.update((str(k), str(v)) for k, v in repaired.items())
        audit.answers_repaired += bool(repaired)
        audit.predictions_repaired += bool(record.get("repaired_prediction"))
        if record.get("ood_score") is not None:
            audit.scored += 1
            audit.scores_repaired += bool(record.get("score_repaired"))
    return {d: a for d, a in audits.items() if a.answered or a.not_in_release}


def _top(counter: Counter, top: int, show: Callable[[object], str] = str) -> str:
    return ", ".join(f"{show(key)} ({n})" for key, n in counter.most_common(top)) or "-"


def _arrow(pair: object) -> str:
    key, name = pair  # type: ignore[misc]
    return f"{key} -> {name}"


def audit_rows(run: Run, audits: Mapping[str, DatasetAudit], top: int) -> list[dict]:
    """One row per dataset: counts, shares and the top entries of each list."""
    rows = []
    for audit in audits.values():
        rows.append(
            {
                "model": run.label,
                "task": run.task,
                "benchmark": run.benchmark,
                "dataset": audit.dataset,
                "answered": audit.answered,
                "not_in_release": audit.not_in_release,
                **{status: audit.status.get(status, 0) for status in STATUSES},
                "answers_with_repaired_keys": audit.answers_repaired,
                "repaired_predictions": audit.predictions_repaired,
                "scored": audit.scored,
                "score_from_repaired_key_pct": audit.score_repaired_pct,
                "top_failure_reasons": _top(audit.reasons, top),
                "top_unknown_keys": _top(audit.unknown, top),
                "top_repaired_keys": _top(audit.repaired, top, _arrow),
            }
        )
    return rows


def key_rows(run: Run, audits: Mapping[str, DatasetAudit]) -> list[dict]:
    """Every unknown and repaired key with the number of answers it appeared in (long form)."""
    rows = []
    for audit in audits.values():
        base = {"model": run.label, "task": run.task, "dataset": audit.dataset}
        rows += [{**base, "kind": "unknown", "key": key, "class": "", "answers": n} for key, n in audit.unknown.most_common()]
        rows += [{**base, "kind": "repaired", "key": key, "class": name, "answers": n} for (key, name), n in audit.repaired.most_common()]
    return rows


def run_markdown(run: Run, rows: Sequence[Mapping], reading: str, rule: str) -> str:
    header = ["Dataset", "Answered", "Not in release", "OK", "Partial", "Failed", "Repaired answers",
              f"Score from a repaired key % ({rule})", "Top failure reasons", "Top unknown keys", "Top repaired keys"]
    body = [
        [str(r["dataset"]), str(r["answered"]), str(r["not_in_release"]), str(r["ok"]), str(r["partial"]), str(r["failed"]),
         str(r["answers_with_repaired_keys"]),
         "n/a" if math.isnan(r["score_from_repaired_key_pct"]) else f"{r['score_from_repaired_key_pct']:.1f}",
         str(r["top_failure_reasons"]), str(r["top_unknown_keys"]), str(r["top_repaired_keys"])]
        for r in rows
    ]
    return f"## {md_text(run.label)} on {md_text(run.task)}\n\n" + md_text(f"Key reading: {reading}. Samples: {run.samples_path}") + "\n\n" + markdown_table(header, body, 1)


@dataclass
class Audit:
    markdown: str
    rows: list[dict]
    files: list[Path]
    notes: list[str]


def make_audit(
    paths: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    top: int = 5,
    models: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
) -> Audit:
    """Audit every run under ``paths``; write ``audit.md``, ``audit.csv`` and ``audit_keys.csv`` under
    ``out_dir`` when given. ReportError when no run, or no run with a samples file, is found."""
    if top < 1:
        raise ReportError(f"--top must be >= 1, got {top}")
    runs, notes = load_runs(paths)
    runs = select_runs(runs, models, tasks)
    sections, rows, keys = ["# Parser audit"], [], []
    for run in sorted(runs, key=lambda r: (r.benchmark, r.label, r.task)):
        if run.samples_path is None:
            notes.append(f"{run.label} on {run.task}: no samples file next to {run.results_path} (run with --log_samples): not audited")
            continue
        records = read_records(run.samples_path)
        audits = audit_records(records, get_benchmark(run.benchmark).datasets)
        run_rows = audit_rows(run, audits, top)
        reading = Counter(str(r.get("key_reading", "repair")) for r in records).most_common(1)[0][0] if records else "?"
        rule = Counter(str(r.get("score_rule", "max_id")) for r in records).most_common(1)[0][0] if records else "?"
        sections.append(run_markdown(run, run_rows, reading, rule))
        rows += run_rows
        keys += key_rows(run, audits)
    if not rows:
        raise ReportError("no samples files to audit (run lmms-eval / reguide-eval with --log_samples)")
    sections.append(
        "Failure reasons are counted once per answer and kind (partial and failed answers, and ok answers "
        f"with notes); keys once per answer. The {top} most frequent are shown; audit_keys.csv lists them all."
    )
    if notes:
        sections.append("## Notes\n\n" + "\n".join(f"- {md_text(n)}" for n in notes))
    markdown = "\n\n".join(sections) + "\n"
    files: list[Path] = []
    if out_dir is not None:
        out = Path(out_dir)
        with staged(out) as staging:  # all three files, or the ones there before untouched
            (staging / "audit.md").write_text(markdown, encoding="utf-8")
            csv_safe(pd.DataFrame(rows)).to_csv(staging / "audit.csv", index=False)
            csv_safe(pd.DataFrame(keys, columns=["model", "task", "dataset", "kind", "key", "class", "answers"])).to_csv(staging / "audit_keys.csv", index=False)
        files = [out / "audit.md", out / "audit.csv", out / "audit_keys.csv"]
    return Audit(markdown, rows, files, notes)
