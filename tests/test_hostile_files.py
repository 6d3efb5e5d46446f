"""Hostile inputs, group 2 (docs/security.md): malformed release and result files. Each case ends in
the correct result or a clear error naming the file and the line or key, never a traceback and
never a silently wrong figure.

Release files (reguide_tasks/data/release.py, the replay's reader): truncated JSON, truncated and
corrupt gzip, empty file, BOM, wrong types, duplicated document ids, an id with '..'.
lmms-eval output folders (reguide_tasks/report/files.py, samples.py): truncated results JSON and
samples lines, BOM, wrong types, duplicated documents, records of datasets not in the benchmark,
runs of two benchmarks in one folder, and a 200 MB single line read in bounded memory.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from test_report import synth_records, write_run

from reguide_tasks.data.documents import MAX_DOCUMENT_LINE
from reguide_tasks.data.release import ReleaseError, read_release_file
from reguide_tasks.models.replay import load_answers
from reguide_tasks.report.files import (
    MAX_LINE_CHARS,
    ReportError,
    read_records,
    read_results_json,
)
from reguide_tasks.report.make import make_report

pytestmark = [pytest.mark.hostile, pytest.mark.hostile_files]

BASELINE = {"Which class?": {"./data/images_classic/cifar10/test/a.png": "Prediction: cat", "/data/openood/images_classic/cifar10/test/b.png": "Prediction: dog"}}


# ----------------------------------------------------------------------------- release files


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("truncated.jsonl", json.dumps(BASELINE, indent=2).encode()[:-20], "not JSON at line"),
        ("empty.jsonl", b"  \n", "empty"),
        ("truncated.jsonl.gz", gzip.compress(json.dumps(BASELINE).encode())[:-12], "cannot be read"),
        ("corrupt.jsonl.gz", b"\x1f\x8b\x08\x00garbage" * 10, "cannot be read"),
        ("latin1.jsonl", '{"p": {"x": "caf\xe9"}}'.encode("latin-1"), "not UTF-8"),
        ("duplicate.jsonl", b'{"p": {"images_classic/a.png": "cat", "images_classic/a.png": "dog"}}', "appears twice"),
    ],
)
def test_broken_release_files_are_clear_errors(tmp_path, name, data, message) -> None:
    path = _write(tmp_path / name, data)
    with pytest.raises(ReleaseError) as caught:
        read_release_file(path)
    assert str(path) in str(caught.value) and message in str(caught.value)
    assert "again" in str(caught.value) or "fix" in str(caught.value)  # says what to do


def test_bom_release_file_reads_correctly(tmp_path) -> None:
    path = _write(tmp_path / "bom.jsonl", b"\xef\xbb\xbf" + json.dumps(BASELINE).encode())
    assert read_release_file(path) == BASELINE


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ([1, 2], "expected one JSON object"),
        ({"Which class?": ["a.png"]}, "'Which class?'"),
        ({"Which class?": {"images_classic/x.png": 7}}, "'images_classic/x.png'"),
        ({"Which class?": {"images_classic/x.png": None}}, "not text"),
    ],
)
def test_release_of_wrong_types_names_the_key(tmp_path, data, key) -> None:
    folder = tmp_path / "run"
    _write(folder / "cifar10.jsonl", json.dumps(data).encode())
    load_answers.cache_clear()
    with pytest.raises(ReleaseError) as caught:
        load_answers(str(folder), "baseline")
    assert key in str(caught.value) and "cifar10.jsonl" in str(caught.value)


def test_release_duplicates_and_paths_out_of_the_root(tmp_path) -> None:
    folder = tmp_path / "run"
    same = {"p": {"images_classic/cifar10/a.png": "cat"}}
    _write(folder / "a.jsonl", json.dumps(same).encode())
    _write(folder / "b.jsonl", json.dumps({"p": {"./images_classic/cifar10/a.png": "cat", "../../etc/passwd": "x", "images_classic/../../../x": "y"}}).encode())
    load_answers.cache_clear()
    # the same answer twice is one document; ids with '..' never become a document's answer
    assert load_answers(str(folder), "baseline") == {"images_classic/cifar10/a.png": "cat"}
    _write(folder / "c.jsonl", json.dumps({"p": {"/data/images_classic/cifar10/a.png": "dog"}}).encode())
    load_answers.cache_clear()
    with pytest.raises(ReleaseError, match="two different answers"):
        load_answers(str(folder), "baseline")
    load_answers.cache_clear()


# ----------------------------------------------------------------------------- document files (image lists)

DOC = {"doc_key": "cifar10/test/a.png", "image": "images_classic/cifar10/test/a.png", "benchmark": "cifar10",
       "dataset": "cifar10", "role": "id", "label": 3, "label_name": "cat"}
DOC_LINE = json.dumps(DOC).encode() + b"\n"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("corrupt.jsonl.gz", b"\x1f\x8b\x08\x00garbage" * 10, "cannot be read after line 0"),
        ("truncated.jsonl.gz", gzip.compress(DOC_LINE * 50)[:-12], "cannot be read after line"),
        ("latin1.jsonl", DOC_LINE + DOC_LINE.replace(b'"cat"', b'"caf\xe9"'), ":2: not UTF-8 text"),
        ("ff_fe.jsonl", b"\xff\xfe\n", ":1: not UTF-8 text"),
        ("null.jsonl", DOC_LINE + b"null\n", ":2: a JSON NoneType, not a document"),
        ("number.jsonl", b"5\n", ":1: a JSON int, not a document"),
        ("list.jsonl", DOC_LINE + b"\n[]\n", ":3: a JSON list, not a document"),
        ("label_text.jsonl", json.dumps({**DOC, "label": "3"}).encode(), ":1: 'label' is str"),
        ("image_null.jsonl", json.dumps({**DOC, "image": None}).encode(), ":1: 'image' is NoneType"),
        ("truncated.jsonl", DOC_LINE[:-20], ":1: not a JSON document"),
    ],
)
def test_broken_document_files_are_data_errors(tmp_path, name, data, message) -> None:
    """Image lists (custom tasks, --benchmark lists, the pre-flight) end in a DataError naming the
    file and line and saying what to do; reguide-eval prints DataErrors as one line and exits 1."""
    from reguide_tasks.data.documents import DataError, read_documents

    path = _write(tmp_path / name, data)
    with pytest.raises(DataError) as caught:
        read_documents(path)
    text = str(caught.value)
    assert str(path) in text and message in text, text
    assert "again" in text or "fix" in text or "save it" in text  # says what to do


def test_document_file_with_bom_and_blank_lines_reads_correctly(tmp_path) -> None:
    from reguide_tasks.data.documents import read_documents

    path = _write(tmp_path / "bom.jsonl.gz", gzip.compress(b"\xef\xbb\xbf" + DOC_LINE + b"\n" + DOC_LINE.replace(b"a.png", b"b.png")))
    assert read_documents(path) == [DOC, {**DOC, "doc_key": "cifar10/test/b.png", "image": "images_classic/cifar10/test/b.png"}]


def test_released_answers_for_images_not_in_the_list_are_ignored_and_counted(tmp_path) -> None:
    """A release whose run folder also answers images the task does not list: the task's documents
    get the same answers as from a release without them (so the same metrics), and the extra answers
    are counted (ReplayModel.unlisted, logged once per task and stage). The model is the real
    reguide_replay; lmms-eval's request objects are stood in for by their ``args``."""
    from types import SimpleNamespace

    from reguide_tasks.data.benchmarks import get_benchmark
    from reguide_tasks.models.replay import ReplayModel
    from reguide_tasks.prompts.render import load_examples, render_baseline

    task, split = "reguide_baseline_cifar10_custom", "test"
    docs = [{**DOC, "doc_key": f"images_classic/cifar10/test/{n}.png", "image": f"images_classic/cifar10/test/{n}.png"} for n in range(3)]
    listed = {d["doc_key"]: f"Prediction: cat {n}" for n, d in enumerate(docs)}
    extra = {"images_classic/cifar10/test/not_listed.png": "Prediction: dog", "images_classic/tin/test/x.png": "Prediction: frog"}
    prompt = render_baseline(get_benchmark("cifar10").classes, load_examples("cifar10"))
    requests = [SimpleNamespace(args=(prompt, {}, None, n, task, split)) for n in range(3)]
    answers = {}
    for name, release in (("plain", listed), ("extra", {**listed, **extra})):
        _write(tmp_path / name / "baseline" / "cifar10-5%" / "gpt" / "cifar10.jsonl", json.dumps({prompt: release}).encode())
        load_answers.cache_clear()
        model = ReplayModel(responses=str(tmp_path / name), run="cifar10-5%")
        model.task_dict = {task: {split: docs}}
        answers[name] = model.generate_until(requests)
        assert model.unlisted == {(task, split, "baseline"): len(release) - 3}
    assert answers["extra"] == answers["plain"] == list(listed.values())
    load_answers.cache_clear()


# ----------------------------------------------------------------------------- lmms-eval output folders


@pytest.fixture
def one_run(tmp_path) -> tuple[Path, Path, Path]:
    """A cifar10 run: (output folder, results JSON, samples file of its baseline task)."""
    out = tmp_path / "runs"
    records = synth_records("cifar10", np.random.default_rng(1), quality=0.5, n_id=20, n_ood=10)
    results = write_run(out, ("qwen2_5_vl", "pretrained=Qwen/Qwen2.5-VL-7B-Instruct"), {"reguide_baseline_cifar10": records}, "20250301_101500")
    (samples,) = results.parent.glob("*_samples_*.jsonl")
    return out, results, samples


def _report(out: Path, tmp_path: Path):
    return make_report([out], tmp_path / "report", n_boot=10, plots=False, html=False)


def test_results_json_broken_or_of_wrong_types_is_one_clear_error(one_run, tmp_path) -> None:
    out, results, _ = one_run
    text = results.read_text(encoding="utf-8")
    results.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(ReportError, match=f"cannot read {results}"):
        read_results_json(results)
    data = json.loads(text)
    data["config"] = ["not", "a", "dict"]
    results.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportError, match="'config' is list"):
        _report(out, tmp_path)
    results.write_bytes(b"\xef\xbb\xbf" + text.encode())  # a BOM: read as it is
    report = _report(out, tmp_path)
    assert len(report.tables["cifar10"]) == 1


@pytest.mark.parametrize(
    ("damage", "key"),
    [
        (lambda data, task: data["n-samples"].update({task: 5}), "'n-samples' -> 'reguide_baseline_cifar10' is int"),
        (lambda data, task: data["results"].update({task: "x"}), "'results' -> 'reguide_baseline_cifar10' is str"),
        (lambda data, task: data["configs"].update({task: ["not", "a", "dict"]}), "'configs' -> 'reguide_baseline_cifar10' is list"),
        (lambda data, task: data.update({"configs": "x"}), "'configs' is str"),
    ],
    ids=["n-samples of a task", "results of a task", "config of a task", "configs"],
)
def test_results_json_with_wrong_types_inside_is_a_clear_error(one_run, tmp_path, capsys, damage, key) -> None:
    out, results, _ = one_run
    data = json.loads(results.read_text(encoding="utf-8"))
    data.setdefault("n-samples", {})
    data.setdefault("configs", {})
    damage(data, "reguide_baseline_cifar10")
    results.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportError) as caught:
        _report(out, tmp_path)
    assert str(results) in str(caught.value) and key in str(caught.value), caught.value
    assert "run the task again" in str(caught.value)
    # and through reguide-report: its one-line error, exit 1
    from reguide_tasks.report.cli import main

    with pytest.raises(SystemExit) as exited:
        main([str(out), "--out", str(tmp_path / "cli"), "--no-plots", "--bootstrap", "0"])
    assert exited.value.code == 1 and key in capsys.readouterr().err.strip().splitlines()[-1]


def _lines(samples: Path) -> list[str]:
    return samples.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize(
    ("damage", "note"),
    [
        (lambda lines: lines[:-1] + [lines[-1][: len(lines[-1]) // 2]], "is not JSON"),
        (lambda lines: [lines[0].replace('"ood_score": ', '"ood_score": "high", "x": ', 1), *lines[1:]], "'oodd.ood_score' is 'high'"),
        (lambda lines: [lines[0].replace('"failed": ', '"failed": "no", "x": ', 1), *lines[1:]], "'oodd.failed' is 'no'"),
        (lambda lines: lines + lines[:3], "documents more than once"),
        (lambda lines: [], "has no 'oodd' records"),
    ],
    ids=["torn last line", "score of wrong type", "flag of wrong type", "duplicated documents", "empty file"],
)
def test_broken_samples_omit_their_cis_with_a_note(one_run, tmp_path, damage, note) -> None:
    out, _, samples = one_run
    samples.write_text("\n".join(damage(_lines(samples))) + "\n", encoding="utf-8")
    report = _report(out, tmp_path)
    assert any(note in n and str(samples.name) in n for n in report.notes), report.notes
    assert report.loaded[0][1] is None  # no scores from that file: no CIs, plots or pairing
    assert any(note in n for n in report.markdown.split("## Notes")[1].splitlines())  # shown in the report


def test_records_of_datasets_not_in_the_benchmark_are_left_out_and_counted(one_run, tmp_path) -> None:
    out, _, samples = one_run
    baseline = _report(out, tmp_path)
    foreign = [json.loads(line) for line in _lines(samples)[:4]]
    for n, row in enumerate(foreign):
        row["oodd"] = {**row["oodd"], "dataset": "not_a_dataset", "image": f"images/other/{n}.png", "failed": True, "ood_score": None}
    samples.write_text("\n".join([*_lines(samples), *map(json.dumps, foreign)]) + "\n", encoding="utf-8")
    report = _report(out, tmp_path)
    assert any("4 records" in n and "not_a_dataset: 4" in n for n in report.notes), report.notes
    scores, plain = report.loaded[0][1], baseline.loaded[0][1]
    assert set(scores.scores) == set(plain.scores) and scores.fail_rate_all == plain.fail_rate_all


def test_samples_of_images_not_in_the_run_omit_their_cis_with_a_note(one_run, tmp_path) -> None:
    """A record of a known dataset whose image is none of the run's documents (the results JSON
    counted n; the file has n + 1): the figures of that file are not the run's. The results-JSON
    metrics are kept, the CIs and plots omitted, and a note says why. So is a file with a record lost."""
    out, results, samples = one_run
    lines = _lines(samples)
    extra = json.loads(lines[0])
    extra["oodd"] = {**extra["oodd"], "image": "images_classic/cifar10/test/not_in_the_list.png", "ood_score": 0.0}
    for damaged in ([*lines, json.dumps(extra)], lines[1:]):
        samples.write_text("\n".join(damaged) + "\n", encoding="utf-8")
        report = _report(out, tmp_path)
        n = len(damaged)
        assert any(f"has {n} records of cifar10's datasets but {results.name} counted {len(lines)} documents" in note for note in report.notes), report.notes
        assert report.loaded[0][1] is None and len(report.tables["cifar10"]) == 1


def test_runs_of_two_benchmarks_in_one_folder_stay_apart(tmp_path) -> None:
    out = tmp_path / "runs"
    rng = np.random.default_rng(2)
    write_run(out, ("m", "pretrained=org/a"), {"reguide_baseline_cifar10": synth_records("cifar10", rng, quality=0.5, n_id=12, n_ood=6),
                                            "reguide_baseline_imagenet200": synth_records("imagenet200", rng, quality=0.5, n_id=12, n_ood=6)}, "20250301_101500")
    report = _report(out, tmp_path)
    assert set(report.tables) == {"cifar10", "imagenet200"}
    for name, table in report.tables.items():
        assert list(table["task"]) == [f"reguide_baseline_{name}"]
    results = json.loads(next(out.rglob("*_results.json")).read_text())["results"]
    assert report.tables["imagenet200"]["auroc_near"].iloc[0] == pytest.approx(results["reguide_baseline_imagenet200"]["auroc_near,none"])
    assert report.tables["cifar10"]["auroc_near"].iloc[0] == pytest.approx(results["reguide_baseline_cifar10"]["auroc_near,none"])


_RSS_PROBE = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from reguide_tasks.data.documents import DataError, read_documents
    from reguide_tasks.report.files import ReportError, read_records
    read = read_records if sys.argv[2] == "samples" else read_documents
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        read(Path(sys.argv[1]))
        print("READ", file=sys.stderr)
    except (ReportError, DataError) as err:
        print(err, file=sys.stderr)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """
)


@pytest.mark.parametrize(("reader", "limit", "message"), [("samples", MAX_LINE_CHARS, "line 1 is over"), ("documents", MAX_DOCUMENT_LINE, ":1: over")])
def test_a_200_mb_single_line_is_refused_in_bounded_memory(tmp_path, reader, limit, message) -> None:
    """The line is written in 1 MB chunks; the reader stops after ``limit`` characters of it (the
    RSS growth of a fresh process reading it is measured)."""
    path = tmp_path / "20250301_101500_samples_reguide_baseline_cifar10.jsonl"
    chunk = "a" * 2**20
    with path.open("w", encoding="utf-8") as handle:
        handle.write('{"oodd": {"reason": "')
        for _ in range(200):
            handle.write(chunk)
        handle.write('"}}\n')
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(path), reader], capture_output=True, text=True, timeout=60, check=True)
    grown_mb = int(done.stdout.split()[-1])
    assert message in done.stderr and str(path) in done.stderr, done.stderr
    assert grown_mb < 4 * limit / 2**20 + 20, f"reading grew the process by {grown_mb} MB"  # not the 200+ MB of the line
    assert time.monotonic() - started < 20
    if reader == "samples":
        with pytest.raises(ReportError, match="line 1 is over"):
            read_records(path)
