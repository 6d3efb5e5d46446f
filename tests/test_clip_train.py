"""reguide-clip-train: CoOp on a tiny random CLIP and label-coded training fixtures; resume after a
real kill; bad input refused before training; the learned context in clip_ood and in report labels.

The CLIP is random-weight (built from a config; no weights can be downloaded here) and the images
are synthetic: 8 per CIFAR-10 class, each with its class's label code and gradient colour
(``make_train_fixture``), so classes are apart in a random CLIP's feature space. Zero-shot prompts
through a random text encoder are at chance; a learned class-specific context is not. A unified
context has too little to work with in a random text encoder (every class prompt comes out almost
the same), so the accuracy claim is made with class-specific contexts.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lmms_eval.api.instance import Instance
from safetensors import safe_open
from test_clip_ood import one_thread  # noqa: F401 (autouse: one torch thread for the tiny model)

from reguide_tasks.answers.parsing import parse_answer
from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.data.documents import DataError, load_image
from reguide_tasks.data.train_lists import (
    sample_k_shot,
    train_documents,
    train_list_path,
)
from reguide_tasks.models.clip_context import CONFIG_KEY, load_context, save_context
from reguide_tasks.models.clip_ood import ClipOoD
from reguide_tasks.models.clip_train import CONTEXT_FILE, STATE_FILE, train
from reguide_tasks.models.clip_train_config import TrainConfig, TrainError, epoch_lr
from reguide_tasks.report.labels import identity_labels
from reguide_tasks.testing.fixtures import make_train_fixture
from reguide_tasks.testing.tiny_clip import build_tiny_clip
from reguide_tasks.vocab import REJECTION_CLASS

BIN = Path(sys.executable).parent
CIFAR = get_benchmark("cifar10").classes
PER_CLASS, SHOTS = 8, 4
FAST = dict(shots=SHOTS, n_ctx=4, batch_size=8, warmup_epochs=0, class_specific=True)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), [*CIFAR, "a photo of a {}."]))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_data")
    make_train_fixture(root, "cifar10", PER_CLASS)
    return root


@pytest.fixture(scope="module")
def trained(clip_dir: str, data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("coop")
    config = TrainConfig(clip_dir, "cifar10", epochs=20, augment="none", **FAST)
    return config, train(config, out, data_root=data_root, device="cpu", progress=False)


def _accuracy(model: ClipOoD, docs: list[dict], root: Path) -> float:
    """ID accuracy of clip_ood's answers (its Prediction line) on ``docs``."""
    model.task_dict = {"t": {"s": docs}}
    requests = [Instance("generate_until", ("", {}, lambda doc: [load_image(doc, root)], i, "t", "s"), idx=0, metadata={"task": "t", "doc_id": i, "repeats": 1}) for i in range(len(docs))]
    answers = model.generate_until(requests)
    predictions = [parse_answer(a, (*CIFAR, REJECTION_CLASS)).prediction for a in answers]
    return sum(p == doc["label_name"] for p, doc in zip(predictions, docs)) / len(docs)


def test_k_shot_draw_is_fixed_by_the_seed(data_root: Path) -> None:
    assert train_list_path(get_benchmark("cifar10"), data_root) == data_root / "benchmark_imglist" / "cifar10" / "train_cifar10.txt"
    docs = train_documents("cifar10", data_root)
    assert len(docs) == 10 * PER_CLASS and docs[0]["image"].startswith("images_classic/cifar10/train/")
    first = sample_k_shot(docs, CIFAR, SHOTS, seed=1)
    assert first == sample_k_shot(docs, CIFAR, SHOTS, seed=1) != sample_k_shot(docs, CIFAR, SHOTS, seed=2)
    assert [d["label"] for d in first] == [k for k in range(10) for _ in range(SHOTS)]


def test_training_lowers_the_loss_and_beats_the_zero_shot_context(trained, clip_dir: str, data_root: Path) -> None:
    config, result = trained
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 20 and losses[-1] < 0.5 * losses[0] and losses[-1] < min(losses[:3])
    assert result.zero_shot_accuracy <= 0.2  # 'a photo of a {}.' through a random text encoder: chance
    assert result.accuracy >= result.zero_shot_accuracy + 0.3

    # the context plugs into clip_ood, which reproduces the trainer's k-shot accuracy ...
    docs = train_documents("cifar10", data_root)
    kshot = sample_k_shot(docs, CIFAR, SHOTS, config.seed)
    learned = ClipOoD(pretrained=clip_dir, prompt_context=str(result.context_path), device="cpu")
    zero_shot = ClipOoD(pretrained=clip_dir, device="cpu")
    assert _accuracy(learned, kshot, data_root) == pytest.approx(result.accuracy)
    assert _accuracy(zero_shot, kshot, data_root) == pytest.approx(result.zero_shot_accuracy)
    # ... and beats zero-shot on the ID images it was not trained on
    held_out = [d for d in docs if d["image"] not in {k["image"] for k in kshot}]
    assert len(held_out) == 10 * (PER_CLASS - SHOTS)
    assert _accuracy(learned, held_out, data_root) >= _accuracy(zero_shot, held_out, data_root) + 0.2

    # the file carries the config that made it
    with safe_open(str(result.context_path), framework="pt") as handle:
        stored = json.loads(handle.metadata()[CONFIG_KEY])
        assert tuple(handle.get_tensor("ctx").shape) == (10, 4, 32)
    assert stored["method"] == "CoOp-CSC" and stored["shots"] == SHOTS and stored["classes"] == list(CIFAR)
    assert stored["epochs_done"] == 20 and stored["accuracy"] == pytest.approx(result.accuracy)


def test_unified_context_and_locoop_train(clip_dir: str, data_root: Path, tmp_path: Path) -> None:
    unified = train(TrainConfig(clip_dir, "cifar10", epochs=3, augment="none", **{**FAST, "class_specific": False}), tmp_path / "u", data_root=data_root, device="cpu", progress=False)
    assert load_context(unified.context_path, 32).ctx.shape == (4, 32)
    assert unified.history[-1]["loss"] < unified.history[0]["loss"]
    locoop = train(TrainConfig(clip_dir, "cifar10", epochs=3, augment="none", locoop_lambda=0.25, locoop_top_k=3, **FAST), tmp_path / "l", data_root=data_root, device="cpu", progress=False)
    plain = train(TrainConfig(clip_dir, "cifar10", epochs=3, augment="none", **FAST), tmp_path / "p", data_root=data_root, device="cpu", progress=False)
    # the entropy term is subtracted: LoCoOp's loss sits below plain CoOp's, and it learns a different context
    assert locoop.history[0]["loss"] < plain.history[0]["loss"]
    assert not torch.allclose(load_context(locoop.context_path, 32).ctx, load_context(plain.context_path, 32).ctx)
    assert json.loads(safe_open(str(locoop.context_path), framework="pt").metadata()[CONFIG_KEY])["method"] == "LoCoOp-CSC"


def test_lr_schedule_is_warmup_then_cosine() -> None:
    config = TrainConfig("m", "cifar10", epochs=5, warmup_epochs=1, lr=0.002, warmup_lr=1e-5)
    assert [round(epoch_lr(config, e), 8) for e in range(5)] == [1e-5, 0.002, 0.00170711, 0.001, 0.00029289]


def _cli(clip_dir: str, data_root: Path, out: Path, *extra: str) -> list[str]:
    return [str(BIN / "reguide-clip-train"), "--pretrained", clip_dir, "--benchmark", "cifar10", "--data_root", str(data_root),
            "--output_dir", str(out), "--shots", str(SHOTS), "--n_ctx", "4", "--batch_size", "8", "--class_specific",
            "--warmup_epochs", "0", "--quiet", *extra]


@pytest.mark.processes  # a real console-script process, SIGKILLed and restarted
def test_killed_run_resumes_from_its_last_checkpoint(clip_dir: str, data_root: Path, tmp_path: Path) -> None:
    """SIGKILL right after the first checkpoint, rerun the same command: it resumes there and ends
    where an uninterrupted run ends (augmentation on: the draws of each epoch are seeded)."""
    epochs = 40
    out = tmp_path / "killed"
    command = _cli(clip_dir, data_root, out, "--epochs", str(epochs), "--augment", "flip_crop")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while not (out / STATE_FILE).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done_at_kill = torch.load(out / STATE_FILE, weights_only=True)["epoch"]
    assert 1 <= done_at_kill < epochs

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed_at = int(rerun.stdout.split("resumed after epoch ")[1].split()[0])
    assert resumed_at >= done_at_kill  # the last checkpoint, not epoch 0
    assert json.loads(safe_open(str(out / CONTEXT_FILE), framework="pt").metadata()[CONFIG_KEY])["epochs_done"] == epochs

    config = TrainConfig(clip_dir, "cifar10", epochs=epochs, augment="flip_crop", **FAST)  # what the command says
    straight = train(config, tmp_path / "straight", data_root=data_root, device="cpu", progress=False)
    assert torch.allclose(load_context(out / CONTEXT_FILE, 32).ctx, load_context(straight.context_path, 32).ctx, atol=1e-4)
    before = (out / CONTEXT_FILE).read_bytes()
    again = train(config, out, data_root=data_root, device="cpu", progress=False)  # a finished run: nothing to do
    assert again.already_done and len(again.history) == epochs
    # killed + resumed, epoch by epoch, is the uninterrupted run
    assert [h["loss"] for h in again.history] == pytest.approx([h["loss"] for h in straight.history], abs=1e-4)
    assert (out / CONTEXT_FILE).read_bytes() == before


def list_of_classes(folder: Path) -> Path:
    path = folder / "classes.txt"
    path.write_text("\n".join(CIFAR) + "\n", encoding="utf-8")
    return path


def test_bad_input_is_refused_before_training(clip_dir: str, data_root: Path, tmp_path: Path) -> None:
    def refused(config: TrainConfig, match: str, root: Path = data_root, out: Path = tmp_path / "never") -> None:
        with pytest.raises(TrainError, match=match):
            train(config, out, data_root=root, device="cpu", progress=False)
        assert not (out / CONTEXT_FILE).exists() and not (out / STATE_FILE).exists()

    base = dict(epochs=2, augment="none", **FAST)
    # more shots than the smallest class holds (the CLI exits 1 with the same message)
    refused(TrainConfig(clip_dir, "cifar10", **{**base, "shots": PER_CLASS + 1}), rf"--shots {PER_CLASS} or fewer")
    # ... also for a benchmark file of the user's (its training list is found through the file's image-list folder)
    shipped = (Path(get_benchmark("cifar10").source)).read_text(encoding="utf-8")
    own = shipped.replace("name: cifar10", "name: my_cifar").replace("classes: ../classes/cifar10.txt", f"classes: {list_of_classes(tmp_path)}")
    own = "\n".join(line for line in own.splitlines() if not line.startswith(("released_subsets", "  subset25", "examples", "default_subset")))
    (tmp_path / "my_cifar.yaml").write_text(own + "\n", encoding="utf-8")
    command = _cli(clip_dir, data_root, tmp_path / "cli", "--shots", "99")
    command[command.index("cifar10")] = str(tmp_path / "my_cifar.yaml")
    cli = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    assert cli.returncode == 1 and cli.stderr.strip().splitlines()[-1].startswith("reguide-clip-train: error: 99-shot training needs 99 images"), cli.stderr[-2000:]
    # no training list; a list whose images are missing; a label outside the class list
    refused(TrainConfig(clip_dir, "cifar10", **base), "train_cifar10.txt not found.*reguide-make-fixtures --train-per-class", root=tmp_path / "empty")
    broken = tmp_path / "broken"
    list_path = train_list_path(get_benchmark("cifar10"), broken)
    list_path.parent.mkdir(parents=True)
    list_path.write_text("".join(f"cifar10/train/x{k}_{n}.png {k}\n" for k in range(10) for n in range(SHOTS)))
    refused(TrainConfig(clip_dir, "cifar10", **base), "40 of 40 images missing", root=broken)
    list_path.write_text("cifar10/train/a.png 10\n")
    refused(TrainConfig(clip_dir, "cifar10", **base), r"label '10' is not a class index 0\.\.9", root=broken)
    # incompatible contexts to start from: other class count, other embedding width
    save_context(tmp_path / "five.safetensors", torch.zeros(5, 4, 32), {"benchmark": "other"})
    refused(TrainConfig(clip_dir, "cifar10", **{**base, "init_context": str(tmp_path / "five.safetensors")}), "of 5 classes .*trained on other.* cannot prompt these 10")
    save_context(tmp_path / "wide.safetensors", torch.zeros(4, 48), {})
    refused(TrainConfig(clip_dir, "cifar10", **{**base, "class_specific": False, "init_context": str(tmp_path / "wide.safetensors")}), r"\[n_ctx, 32\].*got \(4, 48\).*another CLIP")
    # an output folder holding another run: not overwritten, not resumed
    train(TrainConfig(clip_dir, "cifar10", **{**base, "epochs": 1}), tmp_path / "taken", data_root=data_root, device="cpu", progress=False)
    before = (tmp_path / "taken" / STATE_FILE).read_bytes()
    with pytest.raises(TrainError, match="other settings.*shots: 4 there, 2 here"):
        train(TrainConfig(clip_dir, "cifar10", **{**base, "epochs": 1, "shots": 2}), tmp_path / "taken", data_root=data_root, device="cpu", progress=False)
    assert (tmp_path / "taken" / STATE_FILE).read_bytes() == before
    # config values
    refused(TrainConfig(clip_dir, "cifar10", **{**base, "locoop_lambda": 0.5, "locoop_top_k": 10}), r"--locoop_top_k must be in 1\.\.9")
    refused(TrainConfig(clip_dir, "cifar10", **{**base, "warmup_epochs": 2}), "--warmup_epochs")
    with pytest.raises(TrainError, match="--device must be auto, cpu or cuda"):
        train(TrainConfig(clip_dir, "cifar10", **base), tmp_path / "never", data_root=data_root, device="tpu")


def test_a_class_specific_context_answers_only_its_classes(trained, clip_dir: str) -> None:
    _, result = trained
    model = ClipOoD(pretrained=clip_dir, prompt_context=str(result.context_path), device="cpu")
    with pytest.raises(ValueError, match="of 10 classes .*trained on cifar10.* cannot prompt these 200 classes"):
        model.class_text_features(get_benchmark("imagenet200").classes)
    renamed = ("plane", *CIFAR[1:])
    with pytest.raises(ValueError, match="trained for other classes .*'airplane' there, 'plane' here"):
        model.class_text_features(renamed)


def test_report_labels_say_zero_shot_or_coop_and_the_score_rule(trained) -> None:
    _, result = trained
    table = ("cifar10", "reguide_baseline_cifar10")
    identities = [
        ("clip_ood", "pretrained=openai/clip-vit-base-patch16,score=mcm"),
        ("clip_ood", "pretrained=openai/clip-vit-base-patch16,score=msp"),
        ("clip_ood", f"pretrained=openai/clip-vit-base-patch16,score=msp,prompt_context={result.context_path}"),
        ("clip_ood", "pretrained=openai/clip-vit-base-patch16,score=energy,prompt_context=/gone/run7/context.safetensors"),
        ("llava_hf", "pretrained=llava-hf/llava-1.5-7b-hf"),
    ]
    labels = identity_labels((table, identity) for identity in identities)
    assert [labels[i] for i in identities] == [
        "clip_ood (clip-vit-base-patch16, zero-shot, MCM)",
        "clip_ood (clip-vit-base-patch16, zero-shot, MSP)",
        f"clip_ood (clip-vit-base-patch16, CoOp-CSC {SHOTS}-shot, MSP)",
        "clip_ood (clip-vit-base-patch16, learned context run7/context.safetensors, Energy)",
        "llava_hf (llava-1.5-7b-hf)",
    ]


def test_data_errors_are_data_errors(data_root: Path) -> None:
    with pytest.raises(DataError, match="shots must be >= 1"):
        sample_k_shot(train_documents("cifar10", data_root), CIFAR, 0, 1)


def test_make_fixtures_writes_training_images_and_their_list(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from reguide_tasks.data.documents import require_images
    from reguide_tasks.testing.label_code import read_label_code
    from reguide_tasks.testing.make_fixtures import main

    assert main(["--data_root", str(tmp_path), "--benchmark", "cifar10", "--per-dataset", "1", "--train-per-class", "2"]) == 0
    assert "training list" in capsys.readouterr().out
    docs = train_documents("cifar10", tmp_path)
    require_images(docs, tmp_path)
    assert [d["label"] for d in docs] == [k for k in range(10) for _ in range(2)]
    assert all(read_label_code(load_image(d, tmp_path)).label == d["label"] for d in docs)


def test_a_kill_between_the_last_state_and_its_context_file_is_finished_by_the_rerun(clip_dir: str, data_root: Path, tmp_path: Path) -> None:
    config = TrainConfig(clip_dir, "cifar10", epochs=2, augment="none", **FAST)
    first = train(config, tmp_path, data_root=data_root, device="cpu", progress=False)
    (tmp_path / CONTEXT_FILE).unlink()  # as if killed after train_state.pt was replaced, before the context
    rerun = train(config, tmp_path, data_root=data_root, device="cpu", progress=False)
    assert not rerun.already_done and rerun.resumed_from == 2 and len(rerun.history) == 2
    assert (tmp_path / CONTEXT_FILE).is_file() and rerun.accuracy == pytest.approx(first.accuracy)


def test_a_kill_inside_the_final_save_leaves_an_older_context_and_the_rerun_redoes_the_save(
        clip_dir: str, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """With epochs > save_every an older context file always exists: a kill after the final
    train_state.pt (epoch E) and before the final context leaves epoch E-1's context (epochs_done E-1,
    no accuracy). The rerun through the CLI must not call that finished; it redoes the final save."""
    from reguide_tasks.models import clip_train
    from reguide_tasks.models.clip_train_cli import main, percent

    kept: dict[int, bytes] = {}  # each checkpoint's context file, as it was on disk after that save
    original_save = clip_train._Trainer._save

    def save_and_keep(self, epochs_done, *args, **kwargs):
        path = original_save(self, epochs_done, *args, **kwargs)
        kept[epochs_done] = path.read_bytes()
        return path

    monkeypatch.setattr(clip_train._Trainer, "_save", save_and_keep)
    out = tmp_path / "run"
    config = TrainConfig(clip_dir, "cifar10", epochs=2, augment="none", **FAST)
    first = train(config, out, data_root=data_root, device="cpu", save_every=1, progress=False)
    assert sorted(kept) == [1, 2]
    (out / CONTEXT_FILE).write_bytes(kept[1])  # the state a kill inside the final save leaves
    older = load_context(out / CONTEXT_FILE, 32).config
    assert older["epochs_done"] == 1 and older["accuracy"] is None
    assert torch.load(out / STATE_FILE, weights_only=True)["epoch"] == 2

    assert main(_cli(clip_dir, data_root, out, "--epochs", "2", "--augment", "none")[1:]) == 0
    printed = capsys.readouterr().out
    assert "already trained" not in printed and "final save was interrupted: redone" in printed
    redone = load_context(out / CONTEXT_FILE, 32)
    assert redone.config["epochs_done"] == 2 and redone.config["accuracy"] == pytest.approx(first.accuracy)
    (tmp_path / "uninterrupted.safetensors").write_bytes(kept[2])
    assert torch.equal(redone.ctx, load_context(tmp_path / "uninterrupted.safetensors", 32).ctx)
    assert f"learned {percent(first.accuracy)}" in printed
    # now it is finished: the same command is a no-op
    assert main(_cli(clip_dir, data_root, out, "--epochs", "2", "--augment", "none")[1:]) == 0
    assert "already trained" in capsys.readouterr().out


def test_an_accuracy_not_recorded_prints_as_not_measured() -> None:
    from reguide_tasks.models.clip_train_cli import percent

    assert (percent(0.4567), percent(None), percent(float("nan"))) == ("45.7%", "not measured", "not measured")


def test_a_precision_the_device_cannot_run_is_refused_before_training(
        clip_dir: str, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """accelerate runs fp16 only on a GPU: on the CPU it would train in fp32 and say nothing."""
    from reguide_tasks.models.clip_train_cli import main

    out = tmp_path / "fp16"
    assert main(_cli(clip_dir, data_root, out, "--epochs", "1", "--augment", "none", "--device", "cpu", "--mixed_precision", "fp16")[1:]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("reguide-clip-train: error: --mixed_precision fp16 with --device cpu")
    assert "use --mixed_precision bf16 (CPU autocast) or no" in error[0]
    assert not out.exists()
    with pytest.raises(TrainError, match="--mixed_precision must be one of no, fp16, bf16, not 'fp8'"):
        train(TrainConfig(clip_dir, "cifar10", epochs=1, augment="none", **FAST), out, data_root=data_root, device="cpu", mixed_precision="fp8")


def test_a_precision_accelerate_refuses_is_a_train_error(clip_dir: str, data_root: Path, tmp_path: Path) -> None:
    """accelerate keeps one precision per process: a second run in this process asking for another is
    refused by accelerate (a real refusal, not a mock), and reaches the user as a TrainError."""
    from accelerate import Accelerator

    Accelerator(cpu=True, mixed_precision="no")  # what every other run in this test process set up
    with pytest.raises(TrainError, match=r"accelerate refused --mixed_precision bf16 with --device cpu \(.*already been initialized.*\); use --mixed_precision no"):
        train(TrainConfig(clip_dir, "cifar10", epochs=1, augment="none", **FAST), tmp_path / "bf16", data_root=data_root, device="cpu", mixed_precision="bf16")
    assert not (tmp_path / "bf16" / STATE_FILE).exists()


def test_an_unreadable_training_image_is_refused_before_training(
        clip_dir: str, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    from reguide_tasks.models.clip_train_cli import main

    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    kshot = sample_k_shot(train_documents("cifar10", root), CIFAR, SHOTS, seed=1)
    truncated, garbage = root / kshot[0]["image"], root / kshot[13]["image"]
    truncated.write_bytes(truncated.read_bytes()[:len(truncated.read_bytes()) // 2])  # a copy cut short
    garbage.write_bytes(b"not an image at all")
    load_image(kshot[5], root)  # the others still open
    out = tmp_path / "out"
    assert main(_cli(clip_dir, str(root), out, "--epochs", "1", "--augment", "none")[1:]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"reguide-clip-train: error: 2 of {10 * SHOTS} k-shot training images cannot be read: ")
    assert str(truncated) in error[0] and str(garbage) in error[0] and "Replace these files" in error[0]
    assert not (out / STATE_FILE).exists() and not (out / CONTEXT_FILE).exists()


def _entropy_by_hand(logits: list[float]) -> float:
    import math

    exps = [math.exp(v) for v in logits]
    probs = [e / sum(exps) for e in exps]
    return -sum(p * math.log(p) for p in probs)


def test_locoop_takes_as_background_the_patches_whose_top_k_misses_the_class() -> None:
    """LoCoOp's selection on a hand-made [B=2, P=3, K=4] tensor, top-2: the selected patches and the
    entropy are checked against a hand computation (an inverted mask, a label broadcast across the wrong
    image or a top-k over the patches would select other patches and give another entropy)."""
    from reguide_tasks.models.clip_locoop import (
        background_entropy,
        background_patches,
        default_top_k,
    )

    local_logits = torch.tensor([
        [[4.0, 3.0, 0.0, 0.0],   # image 0 (class 1): top-2 {0, 1} holds 1 -> object
         [3.0, 0.0, 2.0, 1.0],   # top-2 {0, 2} -> background
         [0.0, 1.0, 3.0, 2.0]],  # top-2 {2, 3} -> background
        [[0.0, 0.0, 1.0, 5.0],   # image 1 (class 3): top-2 {3, 2} -> object
         [1.0, 2.0, 3.0, 0.0],   # top-2 {2, 1} -> background
         [0.0, 5.0, 0.0, 4.0]],  # top-2 {1, 3} -> object
    ])
    labels = torch.tensor([1, 3])
    selected = [[False, True, True], [False, True, False]]
    assert background_patches(local_logits, labels, 2).tolist() == selected
    rows = local_logits.tolist()
    background = [rows[b][p] for b in range(2) for p in range(3) if selected[b][p]]
    objects = [rows[b][p] for b in range(2) for p in range(3) if not selected[b][p]]
    expected = sum(map(_entropy_by_hand, background)) / len(background)
    assert expected != pytest.approx(sum(map(_entropy_by_hand, objects)) / len(objects), abs=1e-3)  # the inverse gives another value
    assert float(background_entropy(local_logits, labels, 2)) == pytest.approx(expected, rel=1e-6)
    # a wider top-k takes fewer patches ([0, 1, 3, 2] now holds class 1); top-K = every class: no term
    assert background_patches(local_logits, labels, 3).tolist() == [[False, True, False], [False, True, False]]
    assert background_entropy(local_logits, labels, 4) is None
    # the default K keeps the paper's proportion: 200 of ImageNet-1K's 1,000 classes
    assert [default_top_k(k) for k in (1000, 200, 100, 10, 2)] == [200, 40, 20, 2, 1]


def test_a_context_learned_on_another_clip_of_the_same_width_is_refused(
        trained, clip_dir: str, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two tiny CLIPs alike in every shape, built from different seeds (as ViT-B/32 and ViT-B/16 share
    the text width 512): a context learned on one is refused by the other, naming both, unless the
    user says allow_other_clip; the same CLIP loaded in bfloat16 still accepts it."""
    from reguide_tasks.models.clip_context import PROBE_KEY
    from reguide_tasks.models.clip_train_cli import main

    _, result = trained
    other = str(build_tiny_clip(tmp_path / "other_clip", [*CIFAR, "a photo of a {}."], seed=1))
    assert len(load_context(result.context_path, 32).config[PROBE_KEY]) == 64
    with pytest.raises(ValueError, match=rf"learned on another CLIP \({clip_dir}\) than this one \({other}\).*allow_other_clip=true"):
        ClipOoD(pretrained=other, prompt_context=str(result.context_path), device="cpu")
    assert ClipOoD(pretrained=other, prompt_context=str(result.context_path), device="cpu", allow_other_clip="true").prompt_context is not None
    assert ClipOoD(pretrained=clip_dir, prompt_context=str(result.context_path), device="cpu", dtype="bfloat16").prompt_context is not None

    # --init_context in the trainer: refused before training, through the CLI; accepted with --allow_other_clip
    command = _cli(other, data_root, tmp_path / "init", "--epochs", "1", "--augment", "none", "--init_context", str(result.context_path))[1:]
    capsys.readouterr()
    assert main(command) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' loading bars: the model is needed to compare
    assert error.startswith(f"reguide-clip-train: error: --init_context {result.context_path}: learned on another CLIP ({clip_dir}) than this one ({other})")
    assert error.endswith("pass --allow_other_clip to use it anyway") and not (tmp_path / "init" / STATE_FILE).exists()
    assert main([*command, "--allow_other_clip"]) == 0
    assert load_context(tmp_path / "init" / CONTEXT_FILE, 32).config["pretrained"] == other


def test_a_run_is_not_resumed_on_other_k_shot_images(clip_dir: str, data_root: Path, tmp_path: Path) -> None:
    """Same settings, another training list (here: another data root whose list lost one drawn image):
    the k-shot draw differs, so the saved run is not resumed on it."""
    import shutil

    config = TrainConfig(clip_dir, "cifar10", epochs=1, augment="none", **FAST)
    out = tmp_path / "run"
    train(config, out, data_root=data_root, device="cpu", progress=False)
    other = tmp_path / "other_data"
    shutil.copytree(data_root, other)
    drawn = sample_k_shot(train_documents("cifar10", other), CIFAR, SHOTS, config.seed)[0]["image"]
    list_path = train_list_path(get_benchmark("cifar10"), other)
    lines = list_path.read_text(encoding="utf-8").splitlines(keepends=True)
    list_path.write_text("".join(line for line in lines if not drawn.endswith(line.split()[0])), encoding="utf-8")
    assert len(list_path.read_text(encoding="utf-8").splitlines()) == len(lines) - 1
    before = (out / STATE_FILE).read_bytes()
    with pytest.raises(TrainError, match=r"trained on other k-shot images .*kshot_images\.txt.*the training list changed"):
        train(config, out, data_root=other, device="cpu", progress=False)
    assert (out / STATE_FILE).read_bytes() == before
    assert train(config, out, data_root=data_root, device="cpu", progress=False).already_done
