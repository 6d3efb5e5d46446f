"""A user's own benchmark file made into tasks: ``reguide-eval --benchmark FILE`` and
``reguide-new-benchmark FILE --out DIR``.

Both validate the file before anything else (:func:`reguide_tasks.data.benchmarks.load_benchmark_file`:
every error names the field) and write its task folders (baseline and ReGuide, every document set,
the full-spectrum view when the file has covariate-shifted sets) with the generator of our own
(:func:`reguide_tasks.lmms.task_yamls.write_benchmark_tasks`). ``reguide-eval`` puts them on
lmms-eval's include path, names the file in ``REGUIDE_BENCHMARKS`` for every process of the run and
writes a self-contained copy to ``<output_path>/benchmarks/``, which ``reguide-report`` reads.
Each docset names the file too, so a plain ``lmms-eval --include_path DIR`` run knows the benchmark,
and ``reguide-eval --include_path DIR`` (a ``reguide-new-benchmark`` folder) finds the file there and
treats the tasks as ``--benchmark``'s: documents and images checked first, copy for the report.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from reguide_tasks.data.benchmarks import (
    BENCHMARK_FILES_ENV,
    WRITTEN_FOLDER,
    Benchmark,
    BenchmarkError,
    register_benchmark_file,
    resolved_benchmark_yaml,
)
from reguide_tasks.data.documents import DataError, write_documents
from reguide_tasks.lmms.output_guard import OutputGuardError
from reguide_tasks.lmms.task_yamls import task_variants, write_benchmark_tasks

TASKS_FOLDER = "benchmark_tasks"  # <output_path>/benchmark_tasks/reguide_<name>/: the generated task YAMLs
DOCUMENT_LISTS_FOLDER = "document_lists"  # <output_path>/document_lists/<task>.jsonl: a stratified subset's documents


def output_path_of(argv: Sequence[str]) -> str | None:
    """lmms-eval's ``--output_path`` in ``argv`` (read before lmms-eval is imported), else None."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--output_path", default=None)
    return peek.parse_known_args(list(argv))[0].output_path


def benchmark_files_in(include_path: str | None) -> list[str]:
    """The benchmark files that the docsets of task folders under ``--include_path`` name (folders
    written by ``reguide-new-benchmark``), so that ``reguide-eval --include_path DIR`` treats their
    tasks as it treats ``--benchmark FILE``'s. A folder naming a file that is gone is a
    :class:`DataError` (the tasks could not be read)."""
    import json

    files: dict[str, None] = {}
    for folder in filter(None, (include_path or "").split(",")):
        for docset in sorted(Path(folder).rglob("docsets/*.jsonl")) if Path(folder).is_dir() else []:
            try:
                with open(docset, encoding="utf-8") as handle:
                    first = handle.readline(1 << 20)  # a docset's first row names the file
                named = json.loads(first).get("benchmark_file") if first.strip() else None
            except (OSError, UnicodeDecodeError, ValueError, AttributeError):
                continue  # not one of our docsets
            if isinstance(named, str) and named:
                if not Path(named).is_file():
                    raise DataError(f"{docset} names the benchmark file {named}, which is not found: "
                                    f"run reguide-new-benchmark FILE --out {folder} again with the file where it is now")
                files[str(Path(named).resolve())] = None
    return list(files)


def register_benchmarks(files: Sequence[str], include_path: str | None = None) -> tuple[list[Benchmark], list[str]]:
    """Check and register ``files`` and the files named by task folders under ``include_path``
    (named in ``REGUIDE_BENCHMARKS`` for every process of the run); nothing is written. Returns the
    benchmarks and the sources whose task folders the include path already holds. A malformed file
    is a :class:`DataError` naming the field."""
    included = benchmark_files_in(include_path)
    try:
        benches = [register_benchmark_file(path) for path in dict.fromkeys([*files, *included])]
    except BenchmarkError as exc:
        raise DataError(str(exc)) from None
    known = [p for p in os.environ.get(BENCHMARK_FILES_ENV, "").split(os.pathsep) if p]
    os.environ[BENCHMARK_FILES_ENV] = os.pathsep.join(dict.fromkeys([*known, *(b.source for b in benches)]))
    return benches, included


def write_benchmarks(benches: Sequence[Benchmark], output_path: str | None, included: Sequence[str] = ()) -> list[str]:
    """The task folders of ``benches`` (not those whose folder the include path already holds: the
    sources in ``included``) and, with an output path, each benchmark's result-side copy (what
    ``reguide-report`` reads); returns the written task folders (for ``--include_path``).
    ``reguide-eval`` calls it after it holds the run lock: a refused second run writes nothing into
    the running run's folder."""
    folders = []
    try:
        for bench in benches:
            if bench.source not in included:
                into = Path(output_path) / TASKS_FOLDER if output_path else Path(tempfile.mkdtemp(prefix="reguide-benchmarks-"))
                folders += [str(folder) for folder in write_benchmark_tasks(bench, into)]
            if output_path:
                copy = Path(output_path) / WRITTEN_FOLDER / f"{bench.name}.yaml"
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_text(resolved_benchmark_yaml(bench), encoding="utf-8")
    except OSError as err:
        raise _write_error(err, output_path) from None
    return folders


def write_document_lists(variants: Sequence, output_path: str | None) -> list[Path]:
    """Next to the results, the documents of every task on a seeded stratified subset (the list a
    reader needs to run the same slice: a ``*_custom`` task reads this file); each path is printed.
    Each file is replaced whole (written beside it, then renamed): never half a list."""
    from reguide_tasks.lmms.hooks import document_set

    written = []
    for variant in variants if output_path else ():
        if variant.subset.startswith("stratified"):
            path = Path(output_path) / DOCUMENT_LISTS_FOLDER / f"{variant.name}.jsonl"
            try:
                written.append(write_documents(document_set(variant.benchmark, variant.subset), path))
            except OSError as err:
                raise _write_error(err, output_path) from None
            print(f"{variant.name}: its stratified subset's documents are in {path}", flush=True)
    return written


def _write_error(err: OSError, output_path: str | None) -> OutputGuardError:
    where = err.filename or output_path or "a temporary folder"
    return OutputGuardError(f"cannot write {where}: {err.strerror or err} (a full disk or a read-only folder?): "
                            "free space there or give another --output_path; no evaluation was started")


def describe_tasks(bench: Benchmark) -> list[str]:
    views = {bench.name, bench.name + "_fsood"}
    return [v.name for v in task_variants() if v.benchmark in views]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reguide-new-benchmark",
        description="Validate a benchmark file and write its task folders (baseline and ReGuide, every document set) for lmms-eval's --include_path.",
        epilog="Then: reguide-eval --benchmark FILE --tasks ... (no folder needed), or reguide-eval / lmms-eval --include_path DIR --tasks ... . docs/benchmarks.md describes the file.",
    )
    parser.add_argument("file", help="the benchmark YAML file")
    parser.add_argument("--out", required=True, help="folder to write the task folders into")
    args = parser.parse_args(argv)
    try:
        bench = register_benchmark_file(args.file)
    except BenchmarkError as exc:
        print(f"reguide-new-benchmark: error: {exc}", file=sys.stderr)
        return 1
    folders = write_benchmark_tasks(bench, Path(args.out))
    print(f"{bench.name}: {len(bench.classes)} classes; ID {bench.id_dataset}; near {', '.join(bench.near) or '-'}; far {', '.join(bench.far) or '-'}"
          + (f"; covariate-shifted {', '.join(bench.shifted)}" if bench.shifted else ""))
    print("wrote " + ", ".join(map(str, folders)))
    print("tasks: " + ", ".join(describe_tasks(bench)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
