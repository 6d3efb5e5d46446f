"""The report as one self-contained HTML page: the Markdown report's headings, paragraphs, lists and
tables (every table sortable by a click on its header), each benchmark's plots embedded as PNG data,
and the metric definitions. No network, no files beside it: a page to open, mail or archive."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f0f0f0; cursor: pointer; user-select: none; white-space: nowrap; }
th.sorted-asc::after { content: " \\25B2"; } th.sorted-desc::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 620px; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #555; max-width: 620px; }
.scroll { overflow-x: auto; }
"""

# Click a header: sort by that column (numbers as numbers, "n/a" last), again: the other way. Once
# every image has loaded, the body says how many decoded (tests read it from the rendered page).
_SCRIPT = """
function cellValue(row, i) {
  const text = row.cells[i].innerText.trim();
  const number = parseFloat(text.replace(/[^0-9eE+.\\-]/g, ' ').trim().split(' ')[0]);
  return { text: text, number: (text === 'n/a' || text === '' || isNaN(number)) ? null : number };
}
document.querySelectorAll('table').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, i) {
    th.addEventListener('click', function () {
      const body = table.tBodies[0];
      const descending = !th.classList.contains('sorted-desc');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('sorted-asc', 'sorted-desc'); });
      th.classList.add(descending ? 'sorted-desc' : 'sorted-asc');
      const rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        const x = cellValue(a, i), y = cellValue(b, i);
        if (x.number === null && y.number === null) { return x.text.localeCompare(y.text); }
        if (x.number === null) { return 1; }
        if (y.number === null) { return -1; }
        return descending ? y.number - x.number : x.number - y.number;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
window.addEventListener('load', function () {
  const images = Array.from(document.images);
  const decoded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-decoded', String(decoded));
  document.body.setAttribute('data-images', String(images.length));
});
"""

_NUMBER = re.compile(r"^[+-]?(\d|n/a$|<0\.)")


# A CommonMark backslash escape (what report.escape.md_text writes): the character itself.
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def _inline(text: str) -> str:
    """One line of the Markdown report as HTML text: its backslash escapes resolved, then every
    character escaped. No element or attribute is ever made from it (the report writes no Markdown
    links or code spans), so a name from data shows as the text it is."""
    return html.escape(_ESCAPED.sub(r"\1", text), quote=True)


def _cells(line: str) -> list[str]:
    """A table row's cells, split at the '|' that are not backslash-escaped (escapes kept)."""
    body = line.strip()[1:-1]
    cells, start, i = [], 0, 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        if body[i] == "|":
            cells.append(body[start:i].strip())
            start = i + 1
        i += 1
    cells.append(body[start:].strip())
    return cells


def _table(block: str) -> str:
    lines = block.splitlines()
    head = "".join(f"<th>{_inline(c)}</th>" for c in _cells(lines[0]))
    rows = []
    for line in lines[2:]:
        cells = "".join(
            f'<td class="num">{_inline(c)}</td>' if _NUMBER.match(c) else f"<td>{_inline(c)}</td>" for c in _cells(line)
        )
        rows.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def markdown_to_html(markdown: str) -> str:
    """The subset of Markdown the report writes (headings, paragraphs, ``- `` lists, tables)."""
    parts = []
    for block in markdown.strip().split("\n\n"):
        if block.startswith("|"):
            parts.append(_table(block))
        elif block.startswith("#"):
            level = len(block) - len(block.lstrip("#"))
            parts.append(f"<h{level}>{_inline(block[level:].strip())}</h{level}>")
        elif block.startswith("- "):
            items = "".join(f"<li>{_inline(line[2:])}</li>" for line in block.splitlines())
            parts.append(f"<ul>{items}</ul>")
        else:
            parts.append(f"<p>{_inline(block)}</p>")
    return "\n".join(parts)


def _figures(plots_dir: Path) -> str:
    """Every PNG under ``plots_dir`` (sorted), embedded, captioned with its path."""
    figures = []
    for path in sorted(plots_dir.rglob("*.png")) if plots_dir.is_dir() else []:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = html.escape(path.relative_to(plots_dir).as_posix())
        figures.append(f'<figure><img alt="{caption}" src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>')
    return "\n".join(figures)


def write_html(path: Path, markdown: str, out_dir: Path) -> Path:
    """Write the page: the report, then per benchmark its plots (from ``out_dir/plots/<benchmark>``)."""
    body = markdown_to_html(markdown)
    plots = out_dir / "plots"
    sections = []
    for bench_dir in sorted(p for p in plots.iterdir() if p.is_dir()) if plots.is_dir() else []:
        figures = _figures(bench_dir)
        if figures:
            sections.append(f"<h2>Plots: {html.escape(bench_dir.name)}</h2>\n{figures}")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>ReGuide OoD detection report</title>"
        f"<style>{_STYLE}</style></head>\n<body>\n{body}\n{''.join(sections)}\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path
