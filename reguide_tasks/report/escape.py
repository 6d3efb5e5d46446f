"""Text that came from data (model names, ``model_args``, task names, answer text, file paths) made
inert in each format the report writes: Markdown, LaTeX and CSV. The HTML page escapes everything
itself (:mod:`reguide_tasks.report.html`). docs/security.md says what is guaranteed;
tests/test_hostile_reports.py checks it with hostile names.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

# Every character Python's str.splitlines() breaks on, and the other C0 / C1 controls but tab: a
# line break inside a cell would end a Markdown table row, a LaTeX blank line a paragraph.
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with every line break and control character replaced by a space."""
    return _CONTROLS.sub(" ", text)


# Markdown: a backslash, a backtick (code span), '|' (a table cell's end), '<' before what could
# start raw HTML or an autolink, ']' before '(' (an inline link or image). '<0.001' and '[lo, hi]'
# stay as they are.
_MARKDOWN_SPECIAL = re.compile(r"[\\`|]|<(?=[A-Za-z/!?])|\](?=\()")


def md_text(text: Any) -> str:
    """``text`` as one line of Markdown that renders as exactly that text: no HTML, link, code span
    or table cell comes from it (CommonMark / GFM backslash escapes)."""
    return _MARKDOWN_SPECIAL.sub(lambda m: "\\" + m.group(0), one_line(str(text)))


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "[": "{[}", "]": "{]}",  # a '[' right after '\\' would be read as its optional argument
}


def latex_escape(text: Any) -> str:
    """``text`` as LaTeX that typesets as that text: every special character escaped, on one line."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in one_line(str(text)))


# A cell a spreadsheet would run as a formula (OWASP "CSV injection"): it starts with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# What the report writes that starts with a sign and is no formula: a number, a difference with
# its CI and significance star (``+3.1 [1.0, 5.2]*``), or a lone '-' (nothing to show).
_PLAIN_NUMBER = re.compile(rf"^(?:-|{_NUMBER}(?: \[{_NUMBER}, {_NUMBER}\])?\*?)$")


def csv_cell(value: Any) -> Any:
    """A string a spreadsheet would read as a formula gets a leading ``'`` (shown as text, not run);
    numbers, other values and plain signed numbers pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with :func:`csv_cell` applied to every text cell and column name."""
    out = table.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):  # object or string columns
            out[column] = out[column].map(csv_cell)
    out.columns = [csv_cell(str(c)) for c in out.columns]
    return out


_NOT_IN_FILE_NAMES = re.compile(r"[^A-Za-z0-9.+-]+")
FILE_PART_MAX = 80


def file_part(text: str) -> str:
    """``text`` as one part of a file name the report writes: letters, digits and ``.+-`` only (so no
    '/', '..', NUL or control character), no leading dot, at most :data:`FILE_PART_MAX` characters
    (a longer one keeps its start and a hash of the whole, so different names stay different)."""
    import hashlib

    slug = _NOT_IN_FILE_NAMES.sub("_", text).strip("._") or "run"
    if len(slug) > FILE_PART_MAX:
        slug = slug[: FILE_PART_MAX - 17] + "-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return slug
