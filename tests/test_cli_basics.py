"""reguide-eval's own help (fast, before lmms-eval is imported) and its result timestamps in this
machine's time zone instead of lmms-eval's Asia/Singapore default."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path

import pytz

from reguide_tasks.lmms.cli import local_timezone_name

EVAL = str(Path(sys.executable).with_name("reguide-eval"))


def test_help_lists_our_options_first_and_is_fast():
    start = time.perf_counter()
    done = subprocess.run([EVAL, "--help"], capture_output=True, text=True, timeout=60, check=False)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-2000:]
    text = " ".join(done.stdout.split())  # argparse wraps lines
    for flag in ("--data_root", "--sequential", "--bad_images"):
        assert flag in text
    assert text.index("--data_root") < text.index("Every other option is lmms-eval's")
    assert "forwarded unchanged (lmms-eval --help lists them)" in text
    assert "reguide-report" in text and "--timezone" in text
    assert seconds < 5, f"reguide-eval --help took {seconds:.1f} s"  # lmms-eval's own help: ~11 s


def test_local_timezone_name_reads_tz_and_falls_back_to_a_real_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    assert local_timezone_name() == "America/New_York"
    monkeypatch.setenv("TZ", "Not/AZone")
    assert local_timezone_name() in pytz.all_timezones_set


def test_result_files_are_named_in_local_time(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    before = datetime.datetime.now(pytz.timezone("America/New_York")).replace(tzinfo=None)
    done = subprocess.run(
        [EVAL, "--model", "reguide_replay", "--model_args", "model=gpt,missing=skip", "--tasks",
         "reguide_baseline_imagenet200_5pct", "--limit", "4", "--output_path", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (results,) = tmp_path.rglob("*_results.json")
    stamp = datetime.datetime.strptime(results.name[:15], "%Y%m%d_%H%M%S")
    after = datetime.datetime.now(pytz.timezone("America/New_York")).replace(tzinfo=None)
    assert before - datetime.timedelta(seconds=2) <= stamp <= after + datetime.timedelta(seconds=2), (before, stamp, after)
