"""reguide-audit on the shipped release sample: Qwen's ImageNet200 baseline answers (a weak model: partial
and failed answers, unknown and repaired keys) scored by the task's own hook, saved in lmms-eval's layout."""

from __future__ import annotations

import csv
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from test_report import table_rows, write_run

from reguide_tasks.data.documents import subset_documents
from reguide_tasks.data.release import (
    RELEASE_DIR,
    normalize_image_path,
    read_release_file,
)
from reguide_tasks.lmms import process_results_variants
from reguide_tasks.lmms.records import NO_ANSWER, RECORD_KEY
from reguide_tasks.report.audit import audit_records, reason_kind
from reguide_tasks.report.audit_cli import main

QWEN = ("reguide_replay", "model=qwen,missing=skip")
TASK = "reguide_baseline_imagenet200_25pct"


@cache
def qwen_records(key_reading: str = "repair") -> tuple[dict, ...]:
    """Records of the released Qwen answers (ImageNet200 ID and NINCO), plus SSB-hard documents the
    sample has no answer for, through the baseline task's process_results."""
    hook = getattr(process_results_variants, "baseline_process_results_max_id_exclude" + ("_strict" if key_reading == "strict" else ""))
    docs = {d["doc_key"]: d for d in subset_documents("imagenet200", "subset25")}
    records = []
    for name in ("imagenet200", "ninco"):
        data = read_release_file(RELEASE_DIR / "response" / "baseline" / "imagenet200-25%" / "qwen" / f"{name}.jsonl.gz")
        for by_image in data.values():
            for image, answer in by_image.items():
                doc = docs.get(normalize_image_path(image))
                if doc is not None:
                    records.append(hook(doc, [answer])[RECORD_KEY])
    ssb = [d for d in docs.values() if d["dataset"] == "ssb_hard"][:30]
    records += [hook(d, [NO_ANSWER])[RECORD_KEY] for d in ssb]
    return tuple(records)


@pytest.fixture(scope="module")
def qwen_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("audit_runs")
    records = [dict(r) for r in qwen_records()]
    missing = Counter(r["dataset"] for r in records if r["not_in_release"])
    overrides = {f"not_in_release_{d}": float(missing.get(d, 0)) for d in ("imagenet200", "ninco", "ssb_hard")}
    write_run(out, QWEN, {TASK: records}, "20250401_120000", overrides={TASK: overrides})
    return out


def test_reason_kinds_drop_what_varies():
    assert reason_kind("missing 12 classes") == reason_kind("missing 1 class") == "missing classes"
    assert reason_kind("unknown keys: pear, apple (+3 more)") == "unknown keys"
    assert reason_kind("request failed after 3 retries: timeout") == "request failed after N retries"
    assert reason_kind("refusal") == "refusal"


def test_audit_counts_agree_with_the_records():
    records = qwen_records()
    audits = audit_records(records, ("imagenet200", "ninco", "ssb_hard"))
    for dataset, audit in audits.items():
        mine = [r for r in records if r["dataset"] == dataset]
        answered = [r for r in mine if not r["not_in_release"]]
        assert audit.answered == len(answered) and audit.not_in_release == len(mine) - len(answered)
        assert dict(audit.status) == dict(Counter(r["status"] for r in answered))
        assert audit.answers_repaired == sum(bool(r["repaired_keys"]) for r in answered)
        assert audit.scores_repaired == sum(r["score_repaired"] for r in answered)
    assert audits["ssb_hard"].not_in_release == 30 and audits["ssb_hard"].answered == 0
    assert audits["imagenet200"].answered > 2000 and audits["ninco"].answered > 1000
    assert audits["imagenet200"].repaired[("lions", "lion")] >= 1 and audits["ninco"].repaired[("italians greyhound", "italian greyhound")] == 5
    assert audits["imagenet200"].unknown and audits["imagenet200"].reasons["missing classes"] == audits["imagenet200"].status["partial"]


def test_strict_reading_repairs_nothing_and_keeps_the_keys_unknown():
    strict = audit_records(qwen_records("strict"))
    repair = audit_records(qwen_records())
    assert sum(a.answers_repaired for a in strict.values()) == 0 and sum(a.answers_repaired for a in repair.values()) > 20
    assert strict["ninco"].unknown["italians greyhound"] == repair["ninco"].unknown["italians greyhound"] + 5
    assert all(r["key_reading"] == "strict" for r in qwen_records("strict"))


def test_reguide_audit_cli_writes_markdown_and_csv(qwen_run, tmp_path, capsys):
    code = main([str(qwen_run), "--out", str(tmp_path / "audit"), "--top", "3"])
    out = capsys.readouterr().out
    assert code == 0
    rows = table_rows(out, f"reguide_replay (qwen) on {TASK}")
    by_dataset = {r["Dataset"]: r for r in rows}
    assert list(by_dataset) == ["imagenet200", "ssb_hard", "ninco"]  # benchmark order
    status = Counter(r["status"] for r in qwen_records() if r["dataset"] == "imagenet200")
    assert [by_dataset["imagenet200"][h] for h in ("OK", "Partial", "Failed")] == [str(status[s]) for s in ("ok", "partial", "failed")]
    assert by_dataset["ssb_hard"]["Not in release"] == "30" and by_dataset["ssb_hard"]["Answered"] == "0"
    assert "italians greyhound -> italian greyhound (5)" in by_dataset["ninco"]["Top repaired keys"]
    assert "missing classes" in by_dataset["imagenet200"]["Top failure reasons"]
    assert len(by_dataset["imagenet200"]["Top unknown keys"].split(", ")) == 3
    with (tmp_path / "audit" / "audit.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["dataset"] for r in table] == ["imagenet200", "ssb_hard", "ninco"]
    share = float(table[0]["score_from_repaired_key_pct"])
    records = [r for r in qwen_records() if r["dataset"] == "imagenet200" and r["ood_score"] is not None]
    assert share == pytest.approx(100 * sum(r["score_repaired"] for r in records) / len(records))
    with (tmp_path / "audit" / "audit_keys.csv").open() as handle:
        keys = list(csv.DictReader(handle))
    unknown_ninco = Counter(k for r in qwen_records() if r["dataset"] == "ninco" for k in dict.fromkeys(r["unknown_keys"]))
    assert {(k["key"], int(k["answers"])) for k in keys if k["kind"] == "unknown" and k["dataset"] == "ninco"} == set(unknown_ninco.items())
    assert table[1]["score_from_repaired_key_pct"] == ""  # SSB-hard: nothing scored (NaN, an empty CSV cell)


def test_reguide_audit_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "nothing_here")])
    assert exc.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("reguide-audit: error: no such file or directory")
