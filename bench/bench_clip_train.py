"""Images/s of ``reguide-clip-train``'s epochs vs CLIP's inference forward pass alone, same images, same run.

The baseline is what evaluating those images costs: load and preprocess each image, the vision
tower and projection, cosine with cached class features (no gradients). A training epoch does the
same image work (with CoOp's augmentation, ``flip_crop``, a fresh crop per epoch) plus, per batch,
the class prompts through the text encoder with the learned context, the backward pass into the
context, and the optimizer step. With ``--augment none`` the image features are computed once
and an epoch is the text side only (that mode is timed too). The ratio is training images/s over
forward images/s, both measured here, best of ``--repeats`` alternating runs.

The model is a random CLIP built from a config (offline, ``reguide_tasks/testing/tiny_clip.py``),
the images label-coded training fixtures (``make_train_fixture``), the classes CIFAR-10's.
``--preset vit-b16`` builds a random CLIP of ViT-B/16's shape (vision 768 wide, 12 layers, patch 16,
224 px; text 512 wide, 12 layers; MLP ratio 4; projection 512), whose cost is the real model's.

    python bench/bench_clip_train.py [--preset tiny|vit-b16] [--shots 4] [--epochs 2] [--device cpu]

Prints one line per side and the ratios, then a JSON summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.models.clip_scores import normalize
from reguide_tasks.models.clip_train import TrainConfig, _Trainer
from reguide_tasks.testing.fixtures import make_train_fixture
from reguide_tasks.testing.tiny_clip import build_tiny_clip

PRESETS = {
    "tiny": dict(width=128, layers=4, heads=4, image_size=64, patch_size=8, projection_dim=64, max_text_length=32),
    "vit-b16": dict(width=768, layers=12, heads=12, image_size=224, patch_size=16, projection_dim=512, max_text_length=77,
                    text_width=512, text_heads=8, mlp_ratio=4),
}


def forward_pass(trainer: _Trainer, text: torch.Tensor) -> int:
    """The inference forward over the k-shot images (loaded from disk, preprocessed, scored); images done."""
    done = 0
    with torch.no_grad():
        for pixel_values, _ in trainer._loader("none"):
            image, _ = trainer._image_features(pixel_values)
            torch.softmax(image @ text.T, dim=-1).amax(dim=-1).tolist()
            done += len(pixel_values)
    if trainer.accelerator.device.type == "cuda":
        torch.cuda.synchronize()
    return done


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--shots", type=int, default=4, help="images per class (10 classes)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed training run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-ctx", type=int, default=16)
    parser.add_argument("--class-specific", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed-precision", default="no", choices=("no", "fp16", "bf16"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    classes = get_benchmark("cifar10").classes

    with tempfile.TemporaryDirectory() as tmp:
        clip = str(build_tiny_clip(os.path.join(tmp, "clip"), [*classes, "a photo of a {}."], **preset))
        make_train_fixture(os.path.join(tmp, "data"), "cifar10", args.shots, size=preset["image_size"])
        rates: dict[str, float] = {}
        trainers = {}
        for augment in ("flip_crop", "none"):
            config = TrainConfig(clip, "cifar10", shots=args.shots, n_ctx=args.n_ctx, class_specific=args.class_specific,
                                 epochs=args.epochs, batch_size=args.batch_size, warmup_epochs=0, augment=augment)
            trainers[augment] = _Trainer(config, Path(tmp) / f"out_{augment}", os.path.join(tmp, "data"), args.device, args.mixed_precision, 0, False)
        base = trainers["flip_crop"]
        text = normalize(base._class_features().detach().float())
        cached = trainers["none"]._clean_features()
        n_images = len(base.docs)

        def train_epochs(trainer: _Trainer, features) -> None:
            for epoch in range(args.epochs):
                trainer._epoch(epoch, features)
            if trainer.accelerator.device.type == "cuda":
                torch.cuda.synchronize()

        runs = {
            "forward": lambda: forward_pass(base, text),
            "train_flip_crop": lambda: train_epochs(base, None),
            "train_cached": lambda: train_epochs(trainers["none"], cached),
        }
        for fn in runs.values():  # warm-up
            fn()
        best = {name: float("inf") for name in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                best[name] = min(best[name], timed(fn))
        rates = {"forward": n_images / best["forward"]}
        rates.update({name: args.epochs * n_images / best[name] for name in ("train_flip_crop", "train_cached")})

    summary = {
        "preset": args.preset, "device": args.device, "threads": torch.get_num_threads(), "images": n_images,
        "classes": len(classes), "batch_size": args.batch_size, "n_ctx": args.n_ctx, "class_specific": args.class_specific,
        "mixed_precision": args.mixed_precision, "forward_images_per_s": rates["forward"],
        "train_images_per_s": rates["train_flip_crop"], "train_cached_images_per_s": rates["train_cached"],
        "ratio_train_to_forward": rates["train_flip_crop"] / rates["forward"],
        "ratio_cached_train_to_forward": rates["train_cached"] / rates["forward"],
        "seconds_per_epoch": n_images / rates["train_flip_crop"], "seconds_per_epoch_cached": n_images / rates["train_cached"],
    }
    print(f"preset={args.preset} device={args.device} threads={summary['threads']} images={n_images} classes={len(classes)} "
          f"batch={args.batch_size} n_ctx={args.n_ctx} class_specific={args.class_specific}")
    print(f"CLIP forward alone (inference)        : {rates['forward']:9.1f} images/s")
    print(f"training, flip_crop (CoOp default)    : {rates['train_flip_crop']:9.1f} images/s  ratio {summary['ratio_train_to_forward']:.3f}")
    print(f"training, augment none (cached images): {rates['train_cached']:9.1f} images/s  ratio {summary['ratio_cached_train_to_forward']:.3f}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
