"""Hostile inputs, group 4 (docs/security.md): concurrency and faults around the output folder and
the answer cache.

- Two runs with the same ``--output_path`` / answer cache: the second is refused with the holder's
  pid, host, start time and command; a holder killed with SIGKILL leaves no stale lock.
- A killed run's resume (nothing lost or duplicated) is tests/test_resume.py; here: a torn last line
  of the cache's audit log is dropped with a count, and lines corrupted by hand are detected
  (schema, the recomputed cache key, the response checksum) and not replayed.
- A full disk (a 1 MB tmpfs as the report's output folder): a clear error, the previous report intact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runs import console_script, offline_env, run_cli

from reguide_tasks.lmms.cache_audit import CHECKSUM_FIELD
from reguide_tasks.lmms.output_guard import (
    LOCK_NAME,
    OutputGuardError,
    hold_run_lock,
    release_run_locks,
)
from reguide_tasks.testing.fixtures import make_fixture

pytestmark = [pytest.mark.hostile, pytest.mark.hostile_concurrency]

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from reguide_tasks.lmms.output_guard import hold_run_lock
    hold_run_lock(sys.argv[1:], ["reguide-eval", "--model", "holder-model"])
    print("held", flush=True)
    time.sleep(120)
    """
)


def _hold(*folders: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, *map(str, folders)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.processes  # a lock-holding process
def test_a_second_run_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_lock(tmp_path) -> None:
    output, cache = tmp_path / "output", tmp_path / "cache"
    holder = _hold(output, cache)
    try:
        for folders in ([output], [cache], [tmp_path / "other", cache]):
            with pytest.raises(OutputGuardError) as caught:
                hold_run_lock(folders, ["reguide-eval"])
            message = str(caught.value)
            assert f"pid {holder.pid}" in message and "holder-model" in message and "wait for that run" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    try:
        assert hold_run_lock([output, cache], ["reguide-eval"])  # the kernel dropped the dead holder's lock
    finally:
        release_run_locks()


@pytest.mark.e2e
@pytest.mark.processes  # a lock-holding process
def test_reguide_eval_refuses_an_output_path_in_use(tmp_path) -> None:
    data = tmp_path / "data"
    make_fixture(data, "cifar10", 1)
    output = tmp_path / "output"
    holder = _hold(output)
    try:
        argv = [console_script("reguide-eval"), "--model", "openai", "--model_args", "model=m,base_url=http://127.0.0.1:9/v1",
                "--tasks", "reguide_baseline_cifar10_custom", "--data_root", str(data), "--output_path", str(output)]
        done = run_cli(argv[0], argv[1:], cwd=tmp_path, env=offline_env(tmp_path, drop=("REGUIDE_", "OPENAI_"), OPENAI_API_KEY="x"), timeout=180)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"reguide-eval: error: {os.path.realpath(output)} is in use by reguide-eval pid {holder.pid}"), last
    assert sorted(p.name for p in output.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing there


@pytest.mark.e2e
@pytest.mark.processes  # a lock-holding process
def test_a_refused_run_changes_none_of_the_running_runs_files_and_a_failed_write_is_one_line(tmp_path) -> None:
    """A second reguide-eval with --benchmark and a stratified task (both write files under
    --output_path: the benchmark copy and task folders, the subset's document list) is refused
    before it writes any of them; then, with the lock free, a folder it cannot write to (a file in
    the way: the same OSError as a full or read-only disk) is one error line, exit 1."""
    from test_user_benchmark import write_user_benchmark

    from reguide_tasks.data.benchmarks import BENCHMARKS
    from reguide_tasks.testing.make_fixtures import main as make_fixtures

    bench_file = write_user_benchmark(tmp_path)
    try:
        assert make_fixtures(["--data_root", str(tmp_path / "data"), "--benchmark", str(bench_file), "--per-dataset", "100"]) == 0
    finally:
        BENCHMARKS.pop("mybench", None)
        BENCHMARKS.pop("mybench_fsood", None)
    output = tmp_path / "output"
    running = {  # what the running run wrote there (other contents than this run would write)
        "benchmarks/mybench.yaml": "the running run's benchmark copy\n",
        "benchmark_tasks/reguide_mybench/note.txt": "the running run's task folder\n",
        "document_lists/reguide_baseline_mybench_5pct.jsonl": "the running run's list\n",
    }
    for name, text in running.items():
        (output / name).parent.mkdir(parents=True, exist_ok=True)
        (output / name).write_text(text, encoding="utf-8")
    argv = ["--benchmark", str(bench_file), "--model", "openai", "--model_args", "model=m,base_url=http://127.0.0.1:9/v1",
            "--tasks", "reguide_baseline_mybench_5pct", "--data_root", str(tmp_path / "data"), "--output_path", str(output)]
    env = offline_env(tmp_path, drop=("REGUIDE_", "OPENAI_"), OPENAI_API_KEY="x")
    before = sorted(str(p.relative_to(output)) for p in output.rglob("*"))
    holder = _hold(output)
    try:
        done = run_cli("reguide-eval", argv, cwd=tmp_path, env=env, timeout=180)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert done.returncode == 1 and "is in use by" in done.stderr.strip().splitlines()[-1], done.stderr[-3000:]
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*")) == sorted([*before, LOCK_NAME])
    for name, text in running.items():
        assert (output / name).read_text(encoding="utf-8") == text, name

    # the lock is free now; the document list's folder is a file: the write fails after the lock
    for folder in ("benchmarks", "benchmark_tasks", "document_lists"):
        subprocess.run(["rm", "-rf", str(output / folder)], check=True)
    (output / "document_lists").write_text("in the way\n", encoding="utf-8")
    done = run_cli("reguide-eval", argv, cwd=tmp_path, env=env, timeout=180)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert last.startswith(f"reguide-eval: error: cannot write {output / 'document_lists'}") and "give another --output_path" in last, last


def test_output_writes_that_fail_are_output_guard_errors(tmp_path) -> None:
    """The OSError of a full or read-only disk (here: a file where a folder goes) as one clear error."""
    from test_user_benchmark import write_user_benchmark

    from reguide_tasks.data.benchmarks import BENCHMARKS
    from reguide_tasks.lmms.task_yamls import task_variants
    from reguide_tasks.lmms.user_benchmarks import register_benchmarks, write_benchmarks, write_document_lists

    out = tmp_path / "out"
    out.mkdir()
    try:
        benches, _ = register_benchmarks([str(write_user_benchmark(tmp_path))])
        (out / "benchmark_tasks").write_text("a file in the way", encoding="utf-8")
        with pytest.raises(OutputGuardError, match="cannot write .*benchmark_tasks.*give another --output_path"):
            write_benchmarks(benches, str(out))
        (out / "document_lists").write_text("a file in the way", encoding="utf-8")
        stratified = [v for v in task_variants() if v.name == "reguide_baseline_mybench_5pct"]
        assert stratified and stratified[0].subset.startswith("stratified")
        with pytest.raises(OutputGuardError, match="cannot write .*document_lists.*give another --output_path"):
            write_document_lists(stratified, str(out))
    finally:
        BENCHMARKS.pop("mybench", None)
        BENCHMARKS.pop("mybench_fsood", None)


# ----------------------------------------------------------------------------- the answer cache's audit log


def _cache(folder: Path):
    """lmms-eval's own ResponseCache on ``folder`` (database and audit log), our checks installed."""
    from lmms_eval.caching.response_cache import ResponseCache

    from reguide_tasks.lmms.runtime import install_cache_audit_check

    install_cache_audit_check()
    install_cache_audit_check()  # idempotent
    return ResponseCache(db_path=str(folder / "rank_0.db"), audit_path=str(folder / "rank_0.audit.jsonl"), model_fingerprint="openai|{}", eval_version="0.7.3")


def _answer(cache, doc_id: int) -> None:
    """One answer through lmms-eval's write path: the audit line (fsync), then SQLite."""
    from lmms_eval.caching.response_cache import compute_cache_key

    gen = {"max_new_tokens": 64, "temperature": 0}
    key = compute_cache_key("generate_until", "reguide_cifar10", doc_id, gen, 0, "tf", "ch", cache._model_fingerprint_hash, "0.7.3")
    cache._log_to_audit("generate_until", "reguide_cifar10", doc_id, 0, gen, f"Prediction: cat {doc_id}", cache_key=key,
                        task_fingerprint="tf", content_hash="ch", model_fingerprint_hash=cache._model_fingerprint_hash)
    cache._store(key, "generate_until", "reguide_cifar10", doc_id, 0, gen, f"Prediction: cat {doc_id}")


def _rows(folder: Path) -> dict[int, str]:
    import sqlite3

    with sqlite3.connect(folder / "rank_0.db") as db:
        return {doc: json.loads(response) for doc, response in db.execute("SELECT doc_id, response FROM responses")}


def _lose_database(folder: Path) -> None:
    """What a crash between the audit line's fsync and the SQLite commit leaves: lines the database lacks."""
    for path in folder.glob("rank_0.db*"):
        path.unlink()


@pytest.fixture
def warnings():
    from loguru import logger

    seen: list[str] = []
    handler = logger.add(lambda message: seen.append(str(message)), level="WARNING")
    yield seen
    logger.remove(handler)


def _answered_cache(tmp_path: Path, n: int) -> Path:
    """A closed cache in ``tmp_path`` holding the answers of documents 0..n-1; its audit log's path."""
    cache = _cache(tmp_path)
    for doc_id in range(n):
        _answer(cache, doc_id)
    cache.close()
    return tmp_path / "rank_0.audit.jsonl"


def test_audit_log_torn_line_is_cut_and_corrupted_lines_are_not_replayed(tmp_path, warnings) -> None:
    audit = _answered_cache(tmp_path, 6)
    lines = audit.read_text(encoding="utf-8").splitlines()
    assert all('"response_sha256"' in line for line in lines)  # new lines carry their checksum

    # a clean reopen after a lost database replays every line, nothing else
    _lose_database(tmp_path)
    _cache(tmp_path).close()
    assert _rows(tmp_path) == {d: f"Prediction: cat {d}" for d in range(6)} and not warnings

    # kill -9 while a line was being written: the torn tail is cut off and counted
    with audit.open("a", encoding="utf-8") as handle:
        handle.write(lines[0][: len(lines[0]) // 2])
    _lose_database(tmp_path)
    _cache(tmp_path).close()
    assert _rows(tmp_path) == {d: f"Prediction: cat {d}" for d in range(6)}
    assert audit.read_text(encoding="utf-8").endswith("\n") and len(audit.read_text().splitlines()) == 6
    assert any("cut a torn last line" in w for w in warnings)

    # lines edited by hand: an answer (checksum), a document id (recomputed key), a type (schema), broken JSON
    edited = [
        lines[0].replace("Prediction: cat 0", "Prediction: dog 0"),
        lines[1].replace('"doc_id": 1', '"doc_id": 5'),
        lines[2].replace('"idx": 0', '"idx": "zero"'),
        lines[3][:40] + "}",
        _without_checksum(lines[4].replace("Prediction: cat 4", "Prediction: dog 4")),  # the checksum taken out too
        lines[5],
    ]
    audit.write_text("\n".join(edited) + "\n", encoding="utf-8")
    warnings.clear()
    _lose_database(tmp_path)
    _cache(tmp_path).close()
    assert _rows(tmp_path) == {5: "Prediction: cat 5"}  # nothing edited was replayed
    (warning,) = [w for w in warnings if "failed their check" in w]
    assert "5 lines" in warning and "checksum: 2" in warning and "cache key: 1" in warning and "schema: 1" in warning and "not JSON: 1" in warning
    assert len((tmp_path / "rank_0.audit.jsonl.rejected.jsonl").read_text().splitlines()) == 5  # kept aside, not lost


def _without_checksum(line: str) -> str:
    record = json.loads(line)
    del record[CHECKSUM_FIELD]
    return json.dumps(record)


def test_a_log_written_before_checksums_is_replayed_as_it_is(tmp_path, warnings) -> None:
    """Lines without a checksum pass where no line of the log has one (a cache of lmms-eval's own)."""
    audit = _answered_cache(tmp_path, 3)
    audit.write_text("".join(_without_checksum(line) + "\n" for line in audit.read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    _lose_database(tmp_path)
    _cache(tmp_path).close()
    assert _rows(tmp_path) == {d: f"Prediction: cat {d}" for d in range(3)} and not [w for w in warnings if "failed their check" in w]


# ----------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 1 MB tmpfs (needs root: skipped where it cannot be mounted)."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True, check=False)
        reason = done.stderr.strip() or str(done.returncode) if done.returncode else ""
    except OSError as err:  # no mount command
        reason = str(err)
    if reason:
        pytest.skip(f"cannot mount a tmpfs here ({reason}): run as root for the full-disk cases")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path, leave: int = 0) -> None:
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with (mount / "filler").open("ab") as handle:
        handle.write(b"\0" * max(0, free - leave))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "filler"}


def test_a_full_disk_fails_the_report_clearly_and_keeps_the_previous_one(small_disk, tmp_path) -> None:
    import numpy as np
    from test_report import synth_records, write_run

    from reguide_tasks.report.cli import main as report_main
    from reguide_tasks.report.files import ReportError
    from reguide_tasks.report.make import make_report

    runs = tmp_path / "runs"
    write_run(runs, ("m", "pretrained=org/a"), {"reguide_baseline_cifar10": synth_records("cifar10", np.random.default_rng(0), quality=0.5, n_id=30, n_ood=10)}, "20250301_101500")
    out = small_disk / "report"
    make_report([runs], out, n_boot=10, plots=False)
    before = _snapshot(out)
    assert "report.html" in before and "report.md" in before
    _fill(small_disk)
    with pytest.raises(ReportError, match=r"cannot write into .*No space left on device.*\(a full disk\?\); the files there before are untouched"):
        make_report([runs], out, n_boot=20, plots=False)
    assert _snapshot(out) == before  # every file as it was, no half-written one, no leftovers
    with pytest.raises(SystemExit) as exited:
        report_main([str(runs), "--out", str(out), "--bootstrap", "30", "--no-plots"])
    assert exited.value.code == 1 and _snapshot(out) == before


def _earlier_report(out: Path) -> dict[str, bytes]:
    (out / "plots").mkdir(parents=True)
    (out / "report.md").write_text("the earlier report\n", encoding="utf-8")
    (out / "plots" / "roc.png").write_bytes(b"earlier plot")
    return _snapshot(out)


def _write_new_report(staging: Path) -> None:
    for name in ("report.md", "report.tex", "plots/roc.png", "plots/new/hist.png"):
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(f"new {name}", encoding="utf-8")


def _failing_replace(monkeypatch, fail_on: set[int]) -> None:
    """os.replace raising ENOSPC on the given calls (1-based): a failure in the middle of moving the
    report into place, which a tmpfs cannot be made to produce on cue."""
    import errno

    real, calls = os.replace, []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) in fail_on:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_a_failure_while_moving_the_report_into_place_puts_the_earlier_one_back(tmp_path, monkeypatch) -> None:
    from reguide_tasks.report.files import ReportError
    from reguide_tasks.report.staging import staged

    out = tmp_path / "report"
    before = _earlier_report(out)
    # moves: report.md aside (1), new report.md in (2), roc.png aside (3), new roc.png in (4),
    # new/hist.png in (5: fails) -> every step undone
    _failing_replace(monkeypatch, {5})
    with pytest.raises(ReportError, match="No space left on device.*the files there before are untouched"):
        with staged(out) as staging:
            _write_new_report(staging)
    monkeypatch.undo()
    assert _snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["plots", "report.md"]
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["roc.png"]  # the new folder removed

    # the undo fails as well: the message says so and where the earlier files are
    _failing_replace(monkeypatch, {5, 6})
    with pytest.raises(ReportError, match="partly replaced report; the replaced files are in (?P<kept>.*)$") as caught:
        with staged(out) as staging:
            _write_new_report(staging)
    monkeypatch.undo()
    kept = Path(str(caught.value).rsplit(" are in ", 1)[1])
    assert kept == out / f".replaced-{os.getpid()}"  # (the roc.png move back was the one that failed)
    assert (kept / "report.md").read_text(encoding="utf-8") == "the earlier report\n" and (kept / "plots" / "roc.png").read_bytes() == b"earlier plot"


def test_a_staging_folder_that_cannot_be_made_is_a_report_error(tmp_path, monkeypatch) -> None:
    """ENOSPC from making the staging folder (on ext4 / xfs a new folder needs a free block)."""
    import errno

    from reguide_tasks.report.files import ReportError
    from reguide_tasks.report.staging import staged

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkdtemp", no_space)
    with pytest.raises(ReportError, match="cannot write into .*No space left on device"):
        with staged(tmp_path / "report"):
            raise AssertionError("not reached")


@pytest.mark.e2e
@pytest.mark.slow  # about 20 s: one reguide-eval run
def test_a_full_disk_under_output_path_fails_the_run_and_keeps_earlier_results(small_disk, tmp_path) -> None:
    from reguide_tasks.testing.server import OoDDTestServer

    data = tmp_path / "data"
    make_fixture(data, "cifar10", 1)
    output = small_disk / "output"
    earlier = output / "m" / "20250101_000000_results.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"results": {}}', encoding="utf-8")
    os.utime(earlier, (1e9, 1e9))  # an earlier run's file: long before this run started
    _fill(small_disk, leave=4096)  # one page: room for the lock file, not for lmms-eval's results
    server = OoDDTestServer().start()
    try:
        argv = [console_script("reguide-eval"), "--model", "openai", "--model_args", f"model=m,base_url={server.url}", "--tasks", "reguide_baseline_cifar10_custom",
                "--data_root", str(data), "--output_path", str(output), "--log_samples", "--no_answer_cache"]
        done = run_cli(argv[0], argv[1:], cwd=tmp_path, env=offline_env(tmp_path, drop=("REGUIDE_", "OPENAI_"), OPENAI_API_KEY="x"), timeout=180)
    finally:
        server.stop()
    listing = sorted(str(p.relative_to(small_disk)) for p in small_disk.rglob("*"))
    assert done.returncode == 1, (listing, done.stdout[-3000:], done.stderr[-1500:])
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("reguide-eval: error:") and ("full disk" in last), last
    assert earlier.read_text(encoding="utf-8") == '{"results": {}}'
