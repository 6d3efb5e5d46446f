"""The test server answers like a model of a chosen quality, reading each fixture image's label code.

Nothing here loads a model: :class:`~reguide_tasks.testing.server.OoDDTestServer` stands in for a
served LVLM (no weights can be downloaded here), and fixture images stand in for the datasets.

- unit: the label code drawn by :mod:`reguide_tasks.testing.fixtures` survives PNG, JPEG (quality
  75 and lower) and the re-encoding lmms-eval 0.7.3's ``openai`` models apply (the simple model's
  size-limited PNG, downscaling included, and the chat model's PNG / JPEG data URLs), read back with
  the server's own request parsing; images without a code read as None;
- unit: the graded answers: quality 1 is right on every image, 0 wrong on every one, ReGuide's
  auxiliary classes never lower an answer's standing;
- end to end through real HTTP: ``reguide-eval --model openai`` against an in-process server with
  quality 1 (every AUROC and the ID accuracy 100), both tasks in one run. The noisy server (the
  default 0.8: strictly between, ReGuide above the baseline) runs end to end in tests/test_readme.py,
  the README's own snippet (one run fewer here: CI time).
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_runs import ServedRun, console_script, offline_env, read_samples, run_cli
from PIL import Image

from reguide_tasks.answers.parsing import parse_answer
from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.prompts.render import load_examples, render_baseline, render_stage2
from reguide_tasks.testing.fixtures import fixture_image, make_fixture
from reguide_tasks.testing.label_code import LabelCode, read_label_code
from reguide_tasks.testing.server import OoDDTestServer, answer, message_parts
from reguide_tasks.vocab import REJECTION_CLASS

REPO_ROOT = Path(__file__).resolve().parents[1]
BASELINE, REGUIDE = "reguide_baseline_cifar10_custom", "reguide_cifar10_custom"
PER_DATASET = 3  # with consecutive fixture indices, 3 images per dataset put q = 0.5 strictly between
NOISY = 0.5
RUN_TIMEOUT_S = 300
CODES = [
    LabelCode("id", 0, 0, 0),
    LabelCode("id", 0, 199, 255),
    LabelCode("near", 2, 0, 17),
    LabelCode("far", 7, 0, 128),
]


# ---------------------------------------------------------------- the label code
def _encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _as_sent(data_url: str) -> bytes:
    """The image bytes the server takes from a request carrying ``data_url``."""
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, {"type": "image_url", "image_url": {"url": data_url}}]}]}
    return message_parts(body)[1][0]


@pytest.mark.parametrize("code", CODES, ids=str)
def test_code_survives_png_and_jpeg(code: LabelCode) -> None:
    for seed in range(5):
        image = fixture_image(seed, 32, code)
        for image_format, options in (("PNG", {}), ("JPEG", {"quality": 75}), ("JPEG", {"quality": 50})):
            assert read_label_code(_encoded(image, image_format, **options)) == code, (seed, image_format, options)
        assert read_label_code(image) == code


def test_code_survives_the_openai_models_encoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lmms-eval's own encoders, called as its ``openai`` models call them (simple: size-limited PNG of a
    PIL image or a path, shrinking by 0.75 steps over ``max_size_in_mb``; chat: PNG, or JPEG 85 under
    ``LMMS_IMAGE_ENCODE_FORMAT``), on images reopened from JPEG files as the tasks open them."""
    from lmms_eval.models.simple.openai import OpenAICompatible
    from lmms_eval.protocol import (
        ChatImageContent,
        ChatMessage,
        ChatMessages,
        ChatTextContent,
    )

    code = CODES[2]
    path = tmp_path / "fixture.jpg"
    fixture_image(3, 32, code).save(path, format="JPEG")
    reopened = Image.open(path).convert("RGB")
    simple = SimpleNamespace(max_size_in_mb=20)
    assert read_label_code(_as_sent("data:image/png;base64," + OpenAICompatible.encode_image(simple, reopened))) == code
    assert read_label_code(_as_sent("data:image/png;base64," + OpenAICompatible.encode_image(simple, str(path)))) == code

    big = fixture_image(4, 256, code)
    tight = SimpleNamespace(max_size_in_mb=0.01)  # 10 KiB: shrunk 256 -> 192 -> 144 -> 108 -> 81 px
    shrunk = _as_sent("data:image/png;base64," + OpenAICompatible.encode_image(tight, big))
    assert Image.open(io.BytesIO(shrunk)).size == (81, 81) and read_label_code(shrunk) == code

    messages = ChatMessages(messages=[ChatMessage(role="user", content=[ChatImageContent(url=reopened), ChatTextContent(text="?")])])
    for image_format in ("PNG", "JPEG"):
        monkeypatch.setenv("LMMS_IMAGE_ENCODE_FORMAT", image_format)
        sent = messages.to_openai_messages()[0]["content"][0]["image_url"]["url"]
        assert read_label_code(_as_sent(sent)) == code, image_format


def test_every_fixture_image_carries_its_document(tmp_path: Path) -> None:
    docs = make_fixture(tmp_path, "imagenet200", per_dataset=2)
    assert any(Path(doc["image"]).suffix.lower() in (".jpg", ".jpeg") for doc in docs)  # lossy files too
    for index, doc in enumerate(docs):
        code = read_label_code((tmp_path / doc["image"]).read_bytes())
        assert code == LabelCode.for_document(doc, index), doc
        assert code.role == doc["role"] and (code.role != "id" or code.label == doc["label"])


def test_images_without_a_code_read_as_none() -> None:
    plain = fixture_image(0, 32)
    assert read_label_code(_encoded(plain, "PNG")) is None
    assert read_label_code(b"image-0") is None and read_label_code(b"") is None
    assert read_label_code(_encoded(fixture_image(0, 32, CODES[0]).resize((12, 12)), "PNG")) is None  # too small
    pixels = np.asarray(fixture_image(0, 32, CODES[0])).copy()
    pixels[0:4, 0:4] = 255 - pixels[0:4, 0:4]  # one cell flipped: the check bits disagree
    assert read_label_code(_encoded(Image.fromarray(pixels), "PNG")) is None
    assert read_label_code(_encoded(Image.new("RGB", (32, 32), "white"), "PNG")) is None


# ---------------------------------------------------------------- the graded answers
def _prompts() -> tuple[list[str], str, list[str], str]:
    classes = list(get_benchmark("cifar10").classes)
    aux = ["served lookalike 1", "served faraway 1"]
    return classes, render_baseline(classes, load_examples("cifar10")), aux, render_stage2(classes, aux)


def _graded(prompt: str, options: list[str], code: LabelCode, quality: float):
    """The parsed answer and the score the server logs (its max ID confidence)."""
    _, reply, score = answer(prompt, "00" * 32, code, quality)
    parsed = parse_answer(reply, options)
    classes = get_benchmark("cifar10").classes
    assert parsed.status == "ok" and score == max(parsed.confidences[name] for name in classes)
    return parsed, score


def test_quality_one_is_always_right_and_zero_always_wrong() -> None:
    """No server: :func:`answer` on label codes of every role, both classification prompts."""
    classes, baseline, aux, stage2 = _prompts()
    codes = [LabelCode(role, dataset, label if role == "id" else 0, instance) for role, dataset in (("id", 0), ("near", 1), ("far", 4))
             for label in (0, 3, 9) for instance in range(6)]
    for prompt, options in ((baseline, [*classes, REJECTION_CLASS]), (stage2, [*classes, *aux, REJECTION_CLASS])):
        for code in codes:
            right, right_score = _graded(prompt, options, code, 1.0)
            wrong, wrong_score = _graded(prompt, options, code, 0.0)
            if code.role == "id":
                assert right.prediction == classes[code.label] and right_score >= 85
                assert wrong.prediction in classes and wrong.prediction != classes[code.label] and 35 <= wrong_score <= 60
            else:
                assert right.prediction not in classes and right_score <= 30
                if prompt == baseline:  # (in stage 2 the auxiliary classes catch half of these)
                    assert wrong.prediction in classes and 62 <= wrong_score <= 84


def test_reguide_never_ranks_an_ood_image_higher_than_the_baseline() -> None:
    classes, baseline, aux, stage2 = _prompts()
    caught = 0
    for instance in range(40):
        code = LabelCode("near", 1, 0, instance)
        _, base = _graded(baseline, [*classes, REJECTION_CLASS], code, NOISY)
        _, guided = _graded(stage2, [*classes, *aux, REJECTION_CLASS], code, NOISY)
        assert guided <= base
        caught += guided < base
    assert 0 < caught < 40


def test_quality_is_checked() -> None:
    with pytest.raises(ValueError, match="quality"):
        OoDDTestServer(quality=1.5)
    done = subprocess.run([sys.executable, "-m", "reguide_tasks.testing.server", "--quality", "2"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False)
    assert done.returncode == 2 and "quality" in done.stderr


# ---------------------------------------------------------------- end to end through reguide-eval
def _run(quality: float, root: Path, workdir: Path) -> ServedRun:
    run_dir = workdir / f"q{quality:g}"
    run_dir.mkdir(parents=True)
    output = run_dir / "output"
    env = offline_env(run_dir, drop=("REGUIDE_", "OPENAI_", "LMMS_IMAGE_"), OPENAI_API_KEY="EMPTY")
    server = OoDDTestServer(quality=quality).start()
    argv = [console_script("reguide-eval"), "--model", "openai", "--model_args", f"model=reguide-testing,base_url={server.url}",
            "--tasks", f"{BASELINE},{REGUIDE}", "--data_root", str(root), "--output_path", str(output), "--log_samples"]
    started = time.monotonic()
    try:
        done = run_cli(argv[0], argv[1:], cwd=run_dir, env=env, timeout=RUN_TIMEOUT_S)
        returncode, log = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        returncode, log = -9, f"timed out after {RUN_TIMEOUT_S}s"
    finally:
        server.stop()
    return ServedRun(f"quality {quality:g}", argv, returncode, log, output, time.monotonic() - started, server)


@pytest.fixture(scope="module")
def quality_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[float, Future]]:
    root = tmp_path_factory.mktemp("quality_data")
    make_fixture(root, "cifar10", PER_DATASET)
    workdir = tmp_path_factory.mktemp("quality_runs")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quality-run")
    yield {quality: pool.submit(_run, quality, root, workdir) for quality in (1.0,)}
    pool.shutdown(wait=True, cancel_futures=True)


def _finished(runs: dict[float, Future], quality: float) -> ServedRun:
    run = runs[quality].result()
    assert run.returncode == 0, run.describe()
    # every classification request carried a readable code through lmms-eval's re-encoding
    classified = [entry for entry in run.server.log if entry.stage != "stage1"]
    assert len(classified) == 2 * 7 * PER_DATASET and all(entry.label for entry in classified), run.describe()
    for task, stage in ((BASELINE, "baseline"), (REGUIDE, "stage2")):
        scores = sorted(row["oodd"]["ood_score"] for row in read_samples(run.output, task, run.describe()))
        assert scores == sorted(entry.score for entry in classified if entry.stage == stage)
    return run


@pytest.mark.e2e
def test_a_perfect_server_scores_100_everywhere(quality_runs) -> None:
    """The server (quality 1) stands in for a served model; fixture images for CIFAR-10 and its OoD sets."""
    run = _finished(quality_runs, 1.0)
    benchmark = get_benchmark("cifar10")
    for task in (BASELINE, REGUIDE):
        metrics = run.metrics(task)
        assert metrics["id_acc"] == 100.0, (task, metrics)
        assert all(metrics[f"auroc_{target}"] == 100.0 for target in (*benchmark.ood_datasets, "near", "far")), (task, metrics)
