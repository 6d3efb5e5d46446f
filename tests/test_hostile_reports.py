"""Hostile inputs, group 1 (docs/security.md): names and answer text from another lab's output folder
reach report.html, report.md, report.tex, the CSVs and the audit escaped or neutralised.

Two report folders are made from the same records: one with plain names, one whose model name,
``model_args``, task name and answer keys carry HTML / script, Markdown table breakers, LaTeX commands
and spreadsheet formulas. Every written file must have the plain report's structure (the same
elements and attributes, table shapes, LaTeX commands, CSV shapes) and show the hostile text as text.
"""

from __future__ import annotations

import csv
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from test_report import synth_records, write_run

from reguide_tasks.report.audit import make_audit
from reguide_tasks.report.escape import csv_cell, latex_escape, md_text
from reguide_tasks.report.html import _SCRIPT, markdown_to_html
from reguide_tasks.report.make import make_report

pytestmark = [pytest.mark.hostile, pytest.mark.hostile_reports]

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
TABLE_BREAK = "a|b\nc\n\n# heading?\r\n- item\u2028| x |"
LATEX = r"\input{secret}\def\x{1} _ & % $ # { } ~ ^ [3pt]"
FORMULA = "=cmd|' -C calc'!A0"
MARKDOWN = "[click](javascript:alert(1)) `code` ![i](x.png) <http://x> \\"
HOSTILE_MODEL = f"@SUM(1+1){SCRIPT}{LATEX}"
# The label shows the last path component of pretrained=: the payload there has no '/' or '\\'.
HOSTILE_ARGS = f"pretrained=org/{IMG}{TABLE_BREAK}[click](javascript:alert(1)) `code` ![i](x.png) <svg>={FORMULA},note=+1+1,api=-2+3,x={LATEX}{MARKDOWN}"
HOSTILE_TASK_SUFFIX = f" <svg onload=alert(2)>{IMG}|{LATEX} $x$"
KEY = f"{SCRIPT}{FORMULA}|\n{LATEX}"
# Answer keys that start a cell of audit_keys.csv with each formula sign
SIGNED_KEYS = ("+cmd|' /C calc'!A0", "=1+1", "-2+3", "@SUM(A1)")
# The parts of the payloads that must come out as visible text (not dropped, not run).
VISIBLE = ("alert(1)", "onerror=alert(1)", "input{secret}", "javascript:alert(1)")


def _write(out: Path, model: tuple[str, str], suffix: str, key: str, signed: tuple[str, ...]) -> None:
    rng = np.random.default_rng(3)
    tasks = {}
    for task in ("reguide_baseline_cifar10", "reguide_cifar10"):
        records = synth_records("cifar10", rng, quality=0.5, n_id=20, n_ood=12)
        for r, extra in zip(records[5:], signed):
            r["unknown_keys"] = [extra]
        for r in records[:5]:
            r["unknown_keys"] = [key]
            r["repaired_keys"] = {key: "cat"}
            r["reason"] = f"unknown keys: {key}"
        tasks[task + suffix] = records
    write_run(out, model, tasks, "20250301_101500")


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """``plain`` and ``hostile`` report folders (report + audit) of the same records."""
    base = tmp_path_factory.mktemp("hostile_reports")
    # the plain task names are no task of ours either, so both reports have the same sections
    cases = {"plain": (("modelA", "pretrained=org/plain,note=x"), "_plain", "plainkey", tuple(f"plain{n}" for n in range(len(SIGNED_KEYS)))),
             "hostile": ((HOSTILE_MODEL, HOSTILE_ARGS), HOSTILE_TASK_SUFFIX, KEY, SIGNED_KEYS)}
    out = {}
    for name, (model, suffix, key, signed) in cases.items():
        runs = base / name / "runs"
        _write(runs, model, suffix, key, signed)
        report = base / name / "report"
        make_report([runs], report, n_boot=20, seed=0, plots=True)
        make_audit([runs], report / "audit")
        out[name] = report
    return out


class _Structure(HTMLParser):
    """Every start tag with its attributes, every script body, all text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(sorted(name for name, _ in attrs))))
        self.attrs += [(tag, name, value or "") for name, value in attrs]
        self._in_script = tag == "script"

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def _parse(path: Path) -> _Structure:
    parser = _Structure()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def test_report_html_has_no_element_or_attribute_from_data(reports) -> None:
    plain, hostile = _parse(reports["plain"] / "report.html"), _parse(reports["hostile"] / "report.html")
    assert hostile.tags == plain.tags  # the same elements with the same attributes, in the same order
    assert hostile.scripts == plain.scripts == [_SCRIPT]
    for tag, name, value in hostile.attrs:
        assert not name.startswith("on"), (tag, name)
        if name in ("src", "href"):
            assert value.startswith("data:image/png;base64,"), (tag, name, value[:80])
        if name in ("class", "lang", "charset"):
            assert value in ("num", "scroll", "en", "utf-8"), (tag, name, value)
    text = "".join(hostile.text)
    assert SCRIPT in text and IMG.strip('"') in text  # shown as text, not dropped
    for part in VISIBLE:
        assert part in text, part


def _md_cells(line: str) -> list[str]:
    return [c for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def _md_shape(text: str) -> list:
    """Per block: a heading / paragraph / list marker, or a table's row count and cells per row."""
    shape = []
    for block in text.strip().split("\n\n"):
        if block.startswith("|"):
            shape.append([len(_md_cells(line)) for line in block.split("\n")])
        else:
            shape.append((block[:1], len(block.split("\n"))))
    return shape


@pytest.mark.parametrize("name", ["report.md", "audit/audit.md"])
def test_markdown_tables_and_blocks_keep_their_shape(reports, name) -> None:
    plain = (reports["plain"] / name).read_text(encoding="utf-8")
    hostile = (reports["hostile"] / name).read_text(encoding="utf-8")
    assert _md_shape(hostile) == _md_shape(plain)
    # nothing that a Markdown renderer would turn into HTML, a link, an image or a code span
    assert not re.search(r"(?<!\\)<(script|img|http)", hostile)
    assert not re.search(r"(?<!\\)\]\(", hostile)
    assert not re.search(r"(?<!\\)`", hostile)
    assert "\\<script>alert(1)\\</script>" in hostile


_TEX_COMMAND = re.compile(r"\\([A-Za-z]+|.)")


def test_latex_has_only_the_template_commands(reports) -> None:
    plain = (reports["plain"] / "report.tex").read_text(encoding="utf-8")
    hostile = (reports["hostile"] / "report.tex").read_text(encoding="utf-8")
    commands = set(_TEX_COMMAND.findall(hostile))
    escapes = {"textbackslash", "textless", "textgreater", "textbar", "textasciitilde", "textasciicircum", "&", "%", "$", "#", "_", "{", "}"}
    assert commands <= set(_TEX_COMMAND.findall(plain)) | escapes, commands - set(_TEX_COMMAND.findall(plain))
    assert "input" not in commands and "def" not in commands
    # the same lines, the same cells per row; braces balance
    assert len(hostile.splitlines()) == len(plain.splitlines())
    cells = lambda text: [len(re.split(r"(?<!\\)&", line)) for line in text.splitlines()]
    assert cells(hostile) == cells(plain)
    unescaped = re.sub(r"\\[{}]", "", hostile)
    assert unescaped.count("{") == unescaped.count("}")
    assert "\\\\\n{[}" not in hostile  # a row never starts with a bare '[' (\\'s optional argument)


def _csv_files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*.csv"))


def test_csv_cells_never_start_a_formula(reports) -> None:
    files = _csv_files(reports["hostile"])
    assert files == _csv_files(reports["plain"]) and len(files) >= 4
    seen_model, signed = False, set()
    for name in files:
        with open(reports["hostile"] / name, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        with open(reports["plain"] / name, newline="", encoding="utf-8") as handle:
            plain_rows = list(csv.reader(handle))
        assert [len(r) for r in rows] == [len(r) for r in plain_rows], name
        for row in rows:
            for cell in row:
                assert csv_cell(cell) == cell, (name, cell)  # every formula start already neutralised
                seen_model |= cell.startswith("'@SUM(1+1)<script>")
                signed |= {key for key in SIGNED_KEYS if cell == "'" + key}
    assert seen_model  # the hostile model name is there, as text
    assert signed == set(SIGNED_KEYS)  # an answer key starting with each of = + - @, there and neutralised


def test_escapers_one_by_one() -> None:
    assert md_text("a|b\nc") == "a\\|b c"
    assert md_text("<0.001 [1.0, 2.0]") == "<0.001 [1.0, 2.0]"  # the report's own text unchanged
    assert md_text("<b>[x](y)`z`\\") == "\\<b>[x\\](y)\\`z\\`\\\\"
    assert latex_escape("[x]\n\\y") == "{[}x{]} \\textbackslash{}y"
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("-cmd|x") == "'-cmd|x" and csv_cell("@A1") == "'@A1"
    assert csv_cell("+cmd") == "'+cmd" and csv_cell("+1+1") == "'+1+1" and csv_cell("\t=1") == "'\t=1"
    assert csv_cell("-1.5") == "-1.5" and csv_cell("+3.1 [1.0, 5.2]*") == "+3.1 [1.0, 5.2]*" and csv_cell(2.0) == 2.0
    # the HTML page resolves the Markdown escapes and escapes the rest
    page = markdown_to_html("| " + md_text(SCRIPT + "|x") + " |\n|:---|\n| " + md_text(IMG) + " |")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;|x" in page and "<img" not in page
