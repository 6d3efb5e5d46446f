"""The commands the docs show cannot rot: README.md and every docs/*.md page.

Conventions (for whoever writes a docs page):

- A **shell block** is a fenced block whose info string starts with ``bash``, ``sh``, ``shell`` or
  ``console``. Put output in a ``text`` block (or an untagged one): it is not read as commands.
- **Every command** of a shell block that runs one of our console scripts (the ``console_scripts`` of
  the installed ``reguide-tasks``: reguide-eval, reguide-report, ...) or ``lmms-eval``, bare or as
  ``.venv/bin/<name>``, or ``-m reguide_tasks.lmms.cli`` (``python -m`` / ``accelerate launch``), has
  each option it uses (``--flag``, ``--flag=value``, ``-x``) looked up in that program's argument
  parser, built in-process: reguide-eval's own parser (``lmms.cli.own_parser``) plus lmms-eval's
  (``lmms_eval.__main__.parse_eval_args``, which reguide-eval forwards the rest to), and for the other
  scripts the parser their ``main`` builds (caught at its ``parse_args`` call, before any work).
  Continuation lines are joined, comments dropped, a line is split at ``;``, ``&&``, ``||``, ``|`` and
  ``&``, and leading ``VAR=value``, ``do``, ``then`` are skipped. A flag must be spelled in full (no
  argparse abbreviation): renaming a documented flag fails :func:`test_documented_flags_exist`.
- ``<!-- docs-test: run -->`` on the line just before a shell block's fence (the comment does not
  render): the block is **run** with ``bash -e -o pipefail`` and must exit 0. Tagged blocks run one
  after another in one temporary folder, README.md first and then docs/*.md by name, so a block may
  read what an earlier one wrote (docs/report.md reports on the README's quick trial). The folder has
  ``.venv`` linked to the venv running the tests and its ``bin`` first on ``PATH``, so ``.venv/bin/x``
  and bare ``x`` both work; the environment is offline (``cli_runs.offline_env``), with no
  ``REGUIDE_*`` / ``OPENAI_*`` variables. Tag only quick blocks (the whole file stays under a minute):
  the replay ``--limit`` trial, ``--dry_run``, ``--tasks list``, a report on the trial's output.
- ``<!-- docs-test: output -->`` before the block right after a run block (a ``text`` block): every
  line of it must be one the run printed (spacing ignored), so quoted figures cannot rot either.
  docs/usage.md's "Try it without a GPU" block is run by tests/test_readme.py instead (a server in the
  background, figures compared).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from importlib.metadata import distribution
from pathlib import Path
from unittest import mock

import pytest
from cli_runs import offline_env

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RUN_TAG = "<!-- docs-test: run -->"
OUTPUT_TAG = "<!-- docs-test: output -->"
SHELL_INFO = ("bash", "sh", "shell", "console")
LMMS_EVAL = "lmms-eval"
REGUIDE_EVAL = "reguide-eval"
EVAL_MODULE = "reguide_tasks.lmms.cli"  # what `python -m` / `accelerate launch -m` run as reguide-eval
SEPARATORS = {";", "&&", "||", "|", "&", "|&", ";;", "(", ")"}
SKIPPED_WORDS = {"do", "then", "else", "time", "exec", "env", "!"}


def doc_pages() -> list[Path]:
    """README.md first, then the docs pages by name (the order tagged blocks run in)."""
    return [README, *sorted((REPO / "docs").glob("*.md"))]


# --- code blocks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    info: str
    text: str
    tag: str  # the docs-test comment on the line before the fence, or ""

    @property
    def run(self) -> bool:
        return self.tag == RUN_TAG

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.info.split(" ", 1)[0].lower() in SHELL_INFO if self.info else False


FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


def code_blocks(text: str, path: Path) -> list[Block]:
    """The fenced blocks of a Markdown text, with the line of their fence and whether the line before
    it is the run tag. A block inside a list keeps its indentation out of its text."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        before = next((lines[j].strip() for j in range(index - 1, -1, -1) if lines[j].strip()), "")
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence[0] * len(fence)):
            body.append(lines[end][indent:] if lines[end][:indent].isspace() else lines[end].lstrip())
            end += 1
        tag = before if before.startswith("<!-- docs-test:") else ""
        blocks.append(Block(path, index + 1, opening["info"].strip(), "\n".join(body) + "\n", tag))
        index = end + 1
    return blocks


# --- commands in a shell block --------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    where: str  # file:line of the command's first line
    program: str
    args: list[str]


def logical_lines(block: Block) -> list[tuple[int, str]]:
    """The block's lines with backslash continuations joined, each with its line number in the file."""
    joined: list[tuple[int, str]] = []
    pending, start = "", 0
    for offset, line in enumerate(block.text.splitlines()):
        if not pending:
            start = block.line + 1 + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((start, pending + line))
        pending = ""
    if pending:
        joined.append((start, pending))
    return joined


def split_commands(line: str) -> list[list[str]]:
    """A shell line's simple commands, as word lists (comments dropped, split at ; && || | &)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:  # an unbalanced quote: read it as plain words
        words = line.split("#", 1)[0].split()
    commands: list[list[str]] = [[]]
    for word in words:
        if word in SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(word)
    return [command for command in commands if command]


def program_of(word: str, programs: set[str]) -> str | None:
    """Our program a command word names: bare, or a path ending in bin/<name> (``.venv/bin/x``)."""
    name = word.rsplit("/", 1)[-1]
    if name in programs and (word == name or word.endswith(f"bin/{name}")):
        return name
    return None


def commands_in(block: Block, programs: set[str]) -> list[Command]:
    found: list[Command] = []
    for number, line in logical_lines(block):
        for words in split_commands(line):
            while words and (words[0] in SKIPPED_WORDS or re.match(r"^[A-Za-z_]\w*=", words[0])):
                words = words[1:]
            if not words:
                continue
            where = f"{block.where.rsplit(':', 1)[0]}:{number}"
            if program := program_of(words[0], programs):
                found.append(Command(where, program, words[1:]))
            elif EVAL_MODULE in words and words[words.index(EVAL_MODULE) - 1] == "-m":
                found.append(Command(where, REGUIDE_EVAL, words[words.index(EVAL_MODULE) + 1 :]))
    return found


def options_used(args: list[str]) -> list[str]:
    """The options a command passes: --flag, --flag=value, -x (values and positionals left out)."""
    return [word.lstrip("[").split("=", 1)[0].rstrip("]") for word in args if re.match(r"^\[?--?[A-Za-z]", word)]


# --- the programs' parsers, in-process ------------------------------------------------------------


class _Caught(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def parser_built_by(function, *args) -> argparse.ArgumentParser:
    """The parser ``function`` builds, caught at its first ``parse_args`` / ``parse_known_args`` call
    (before the program does anything else)."""

    def catch(self, *_args, **_kwargs):
        raise _Caught(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", catch), mock.patch.object(argparse.ArgumentParser, "parse_known_args", catch):
        try:
            function(*args)
        except _Caught as caught:
            return caught.parser
    raise AssertionError(f"{function.__module__}.{function.__name__} parsed no arguments")


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


@cache
def program_options() -> dict[str, frozenset[str]]:
    """Every documented program's options: our console scripts (from the installed package's entry
    points) and lmms-eval."""
    from lmms_eval import __main__ as lmms_main

    from reguide_tasks.lmms.cli import own_parser

    lmms_options = option_strings(parser_built_by(lmms_main.parse_eval_args))
    options = {LMMS_EVAL: frozenset(lmms_options)}
    for entry in distribution("reguide-tasks").entry_points:
        if entry.group != "console_scripts":
            continue
        if entry.name == REGUIDE_EVAL:
            options[entry.name] = frozenset(option_strings(own_parser()) | lmms_options)
            continue
        module, _, attribute = entry.value.partition(":")
        parser = parser_built_by(getattr(import_module(module), attribute), [])
        assert parser.prog == entry.name, f"{entry.value} built the parser of {parser.prog!r}, not {entry.name!r}"
        options[entry.name] = frozenset(option_strings(parser))
    return options


def unknown_flags(pages: list[tuple[Path, str]], options: dict[str, frozenset[str]]) -> tuple[list[str], list[Command]]:
    """Every option a shell block of the pages passes to a program that does not have it, as
    ``file:line: program: --flag ...`` (with the closest real option), and the commands checked."""
    problems: list[str] = []
    checked: list[Command] = []
    for path, text in pages:
        for block in code_blocks(text, path):
            if not block.is_shell:
                continue
            for command in commands_in(block, set(options)):
                checked.append(command)
                for flag in options_used(command.args):
                    if flag not in options[command.program]:
                        near = difflib.get_close_matches(flag, options[command.program], n=1)
                        hint = f" (did you mean {near[0]}?)" if near else ""
                        problems.append(f"{command.where}: {command.program}: {flag} is not one of its options{hint}")
    return problems, checked


def read_pages() -> list[tuple[Path, str]]:
    return [(path, path.read_text(encoding="utf-8")) for path in doc_pages()]


# --- tests ----------------------------------------------------------------------------------------


def test_documented_flags_exist() -> None:
    options = program_options()
    problems, checked = unknown_flags(read_pages(), options)
    assert not problems, "documented options the programs do not have:\n" + "\n".join(problems)
    documented = {command.program for command in checked}
    # Every console script is shown at least once in a shell block (so its flags are checked somewhere).
    assert documented >= set(options) - {LMMS_EVAL}, f"no shell block runs {sorted(set(options) - documented - {LMMS_EVAL})}"


def test_a_renamed_flag_is_reported() -> None:
    """What the check is for: a flag renamed in the code (here: in a copy of the real docs, --dry_run
    spelled --dry-run, and --rank-by spelled --rank_by) fails it, naming the file, line and flag."""
    options = program_options()
    pages = read_pages()
    renamed = [(path, text.replace("--dry_run", "--dry-run").replace("--rank-by", "--rank_by")) for path, text in pages]
    problems, _ = unknown_flags(renamed, options)
    assert any("reguide-eval: --dry-run is not one of its options (did you mean --dry_run?)" in p for p in problems), problems
    assert any("reguide-report: --rank_by is not one of its options (did you mean --rank-by?)" in p for p in problems), problems
    # the same rename on the code's side: the real pages against a reguide-eval whose --dry_run is --dry-run
    renamed_code = {**options, REGUIDE_EVAL: (options[REGUIDE_EVAL] - {"--dry_run"}) | {"--dry-run"}}
    problems, _ = unknown_flags(pages, renamed_code)
    assert any(p.startswith("README.md:") and "reguide-eval: --dry_run is not one of its options (did you mean --dry-run?)" in p for p in problems), problems


def test_the_checker_reads_shell_as_written() -> None:
    """Continuations, comments, several commands on a line, ``.venv/bin/``, env assignments, loops,
    ``-m reguide_tasks.lmms.cli``; output blocks and other programs are not read."""
    fake = "\n".join([
        "```bash",
        "export OPENAI_API_KEY=EMPTY   # --not-a-flag in a comment",
        ".venv/bin/reguide-eval --model reguide_replay \\",
        "  --dry-run --tasks x && reguide-report out --out rep --rank_by auroc_far",
        "for s in a b; do",
        "  REGUIDE_X=1 reguide-audit out --out a --topn 3",
        "done",
        "ACCELERATE_USE_CPU=1 accelerate launch --num_processes 2 -m reguide_tasks.lmms.cli --model m --sequentiall",
        "python -m pytest --dry-run   # not ours",
        "```",
        "```text",
        "reguide-eval --this-is-output",
        "```",
        "```",
        "reguide-eval --untagged-is-not-shell",
        "```",
    ])
    problems, checked = unknown_flags([(REPO / "docs" / "fake.md", fake)], program_options())
    assert [(c.program, c.where) for c in checked] == [
        ("reguide-eval", "docs/fake.md:3"), ("reguide-report", "docs/fake.md:3"), ("reguide-audit", "docs/fake.md:6"), ("reguide-eval", "docs/fake.md:8"),
    ]
    assert problems == [
        "docs/fake.md:3: reguide-eval: --dry-run is not one of its options (did you mean --dry_run?)",
        "docs/fake.md:3: reguide-report: --rank_by is not one of its options (did you mean --rank-by?)",
        "docs/fake.md:6: reguide-audit: --topn is not one of its options (did you mean --top?)",
        "docs/fake.md:8: reguide-eval: --sequentiall is not one of its options (did you mean --sequential?)",
    ], problems


def test_an_output_block_must_be_printed() -> None:
    """A quoted figure that the run no longer prints is reported (spacing ignored, blank lines skipped)."""
    quoted = Block(README, 1, "text", "task  docs  ID acc\nreguide_x   400    86.8\n\n  note: n/a\n", OUTPUT_TAG)
    assert missing_lines(quoted, "task docs ID acc\nreguide_x 400 86.8\nnote: n/a\n") == []
    assert missing_lines(quoted, "task docs ID acc\nreguide_x 400 86.9\nnote: n/a\n") == ["reguide_x   400    86.8"]


def test_readme_is_the_front_door() -> None:
    """Short, the two commands CI runs verbatim, and a link to every docs page."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150, len(text.splitlines())
    ci_command = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci_command in text, ci_command
    assert "bash utils/setup.sh && bash utils/demo.sh" in text
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in text, f"README.md does not link docs/{page.name}"


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    outside_code = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return {heading_anchor(match) for match in re.findall(r"^#+ (.+)$", outside_code, flags=re.MULTILINE)}


def test_links_between_the_pages_resolve() -> None:
    """Every relative link of README.md and docs/*.md names a file that exists, and its #anchor a
    heading of that file (a moved section breaks no link silently)."""
    broken = []
    for path, text in read_pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(REPO)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text(encoding="utf-8")):
                broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def tagged_blocks() -> list[tuple[Block, Block | None]]:
    """The run blocks in order, each with the output block that follows it (if the next block is one)."""
    tagged: list[tuple[Block, Block | None]] = []
    for path, text in read_pages():
        blocks = code_blocks(text, path)
        unknown = [block.where for block in blocks if block.tag not in ("", RUN_TAG, OUTPUT_TAG)]
        assert not unknown, f"docs-test comments other than {RUN_TAG} / {OUTPUT_TAG}: {unknown}"
        for index, block in enumerate(blocks):
            if block.run:
                after = blocks[index + 1] if index + 1 < len(blocks) else None
                tagged.append((block, after if after is not None and after.tag == OUTPUT_TAG else None))
            elif block.tag == OUTPUT_TAG:
                assert index and blocks[index - 1].run, f"{block.where}: an output block follows no run block"
    return tagged


def missing_lines(expected: Block, output: str) -> list[str]:
    """The lines of an output block the run did not print (spacing ignored)."""
    printed = {" ".join(line.split()) for line in output.splitlines()}
    return [line for line in expected.text.splitlines() if line.strip() and " ".join(line.split()) not in printed]


@pytest.mark.e2e
def test_tagged_blocks_run(tmp_path: Path) -> None:
    tagged = tagged_blocks()
    blocks = [block for block, _ in tagged]
    assert all(block.is_shell for block in blocks), [block.where for block in blocks if not block.is_shell]
    assert len(blocks) >= 4, [block.where for block in blocks]
    bin_dir = Path(sys.executable).parent
    (tmp_path / ".venv").symlink_to(bin_dir.parent, target_is_directory=True)
    env = offline_env(tmp_path, drop=("REGUIDE_", "OPENAI_", "LMMS_IMAGE_"), PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for block, expected in tagged:  # in order: a block may read what an earlier one wrote
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.text], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{block.where} exited {done.returncode}:\n{block.text}\n--- output (tail)\n{done.stdout[-3000:]}"
        if expected is not None:
            missing = missing_lines(expected, done.stdout)
            assert not missing, f"{expected.where}: lines {block.where} did not print: {missing}\n--- output (tail)\n{done.stdout[-3000:]}"
