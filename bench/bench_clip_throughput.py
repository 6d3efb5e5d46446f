"""Images/s of ``clip_ood.generate_until`` vs a direct batched transformers CLIP forward.

Both sides get the same PIL images and do the same work per batch: CLIP image preprocessing, the
vision tower, projection, cosine with cached class features, the score. ``clip_ood`` also looks up
the document, formats the answer text and keeps lmms-eval's bookkeeping, which is the overhead
measured. The model is a random CLIP of width 128 built from a config (offline, see
``reguide_tasks/testing/tiny_clip.py``); the class list is CIFAR-10 (or ImageNet200 with ``--benchmark``).

    python bench/bench_clip_throughput.py [--images 256] [--size 64] [--device cpu] [--repeats 5]

Prints one line per side (best of ``--repeats`` timed runs, the two sides alternating, after one
warm-up each) and the ratio
(target >= 0.8), then a JSON summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from lmms_eval.api.instance import Instance
from PIL import Image
from transformers import AutoImageProcessor, CLIPModel

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.models.clip_ood import DEFAULT_TEMPLATE, ClipOoD
from reguide_tasks.testing.tiny_clip import build_tiny_clip


def random_images(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)) for _ in range(n)]


@torch.inference_mode()
def direct_run(model: CLIPModel, processor, text: torch.Tensor, images: list[Image.Image], batch_size: int, device: torch.device) -> list[float]:
    """The plain transformers loop: preprocess, vision tower, projection, MCM (T=1)."""
    scores: list[float] = []
    for start in range(0, len(images), batch_size):
        pixels = processor(images=images[start:start + batch_size], return_tensors="pt")["pixel_values"].to(device)
        feats = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        feats = feats / feats.norm(dim=-1, keepdim=True)
        scores.extend(torch.softmax(feats @ text.T, dim=-1).amax(dim=-1).tolist())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return scores


def clip_ood_run(model: ClipOoD, images: list[Image.Image], benchmark: str) -> list[str]:
    docs = [{"benchmark": benchmark, "image": i} for i in range(len(images))]
    model.task_dict = {"bench": {"test": docs}}

    def doc_to_visual(doc: dict) -> list[Image.Image]:
        return [images[doc["image"]]]

    requests = [Instance("generate_until", ("", {}, doc_to_visual, i, "bench", "test"), idx=0, metadata={"task": "bench", "doc_id": i, "repeats": 1}) for i in range(len(images))]
    answers = model.generate_until(requests)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return answers


def best_rates(fn_a, fn_b, n_images: int, repeats: int) -> tuple[float, float]:
    """Best images/s of each of two functions, timed alternately (a shared machine's load hits both)."""
    fn_a(), fn_b()  # warm-up
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for k, fn in enumerate((fn_a, fn_b)):
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return n_images / best[0], n_images / best[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=64, help="image side (pixels) of the random images and of the model input")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--benchmark", default="cifar10", choices=("cifar10", "imagenet200"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prefetch", default="auto", choices=("auto", "true", "false"), help="clip_ood's prefetch arg")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    classes = get_benchmark(args.benchmark).classes
    images = random_images(args.images, args.size)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(build_tiny_clip(
            tmp, [*classes, DEFAULT_TEMPLATE], width=args.width, layers=args.layers, heads=max(1, args.width // 32),
            image_size=args.size, patch_size=8, projection_dim=args.width // 2,
        ))
        ours = ClipOoD(pretrained=path, batch_size=args.batch_size, device=args.device, prefetch=args.prefetch)
        model = CLIPModel.from_pretrained(path).to(device).eval()
        processor = AutoImageProcessor.from_pretrained(path)
    text = ours.class_text_features(classes)  # same class features for both sides (cached in clip_ood)

    # same numbers from both sides
    answers = clip_ood_run(ours, images[:8], args.benchmark)
    reference = direct_run(model, processor, text, images[:8], args.batch_size, device)
    from reguide_tasks.answers.parsing import parse_answer
    from reguide_tasks.answers.scoring import score_max_id

    parsed = [score_max_id(parse_answer(a, classes).confidences, classes) for a in answers]
    max_diff = max(abs(a - b) for a, b in zip(parsed, reference))

    rate_ours, rate_direct = best_rates(
        lambda: clip_ood_run(ours, images, args.benchmark),
        lambda: direct_run(model, processor, text, images, args.batch_size, device),
        args.images, args.repeats,
    )
    ratio = rate_ours / rate_direct
    print(f"device={device} threads={torch.get_num_threads()} images={args.images}x{args.size}px batch={args.batch_size} width={args.width} classes={len(classes)}")
    print(f"direct transformers forward : {rate_direct:9.1f} images/s")
    print(f"clip_ood.generate_until     : {rate_ours:9.1f} images/s")
    print(f"ratio clip_ood / direct      : {ratio:9.3f}  (target >= 0.8; max |score diff| {max_diff:.2e})")
    summary = {"device": str(device), "images": args.images, "size": args.size, "batch_size": args.batch_size, "classes": len(classes),
               "prefetch": ours.prefetch, "threads": torch.get_num_threads(),
               "direct_images_per_s": rate_direct, "clip_ood_images_per_s": rate_ours, "ratio": ratio, "max_score_diff": max_diff}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
