"""``reguide-clip-train``: learn a CoOp prompt context for ``clip_ood`` on k-shot ID training images.

    reguide-clip-train --pretrained openai/clip-vit-base-patch16 --benchmark imagenet200 \\
        --shots 16 --data_root ./data --output_dir runs/coop_imagenet200_16shot

reads OpenOOD's ``<data root>/benchmark_imglist/<benchmark>/train_<id dataset>.txt``, draws 16 images
per class (seed ``--seed``), trains, and writes ``<output_dir>/context.safetensors``. Evaluate it
with ``reguide-eval --model clip_ood --model_args pretrained=...,prompt_context=<output_dir>/context.safetensors,score=mcm``
(any score rule: mcm, glmcm, msp, maxlogit, energy). Rerun the same command after an interruption
to resume from the last saved epoch. See docs/clip_finetuning.md.
"""

from __future__ import annotations

import argparse
import math
import sys

from reguide_tasks.data.benchmarks import (
    BENCHMARKS,
    get_benchmark,
    register_benchmark_file,
)
from reguide_tasks.models.clip_train import train
from reguide_tasks.models.clip_train_config import (
    AUGMENTS,
    MIXED_PRECISION,
    TrainConfig,
    TrainError,
)

PROG = "reguide-clip-train"


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig("", "")
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", required=True, help="CLIP hub id or local folder (CLIPModel.from_pretrained)")
    p.add_argument("--benchmark", required=True, metavar="NAME|FILE", help=f"{', '.join(sorted(BENCHMARKS))}, or a benchmark file of your own (.yaml; pass it again to resume)")
    p.add_argument("--output_dir", required=True, help="where the context, the resume state and the k-shot list go")
    p.add_argument("--data_root", default=None, help="OpenOOD data root (default: $REGUIDE_DATA_ROOT or ./data)")
    p.add_argument("--train_list", default="", help="training list to read instead of <data_root>/benchmark_imglist/<benchmark>/train_<id>.txt")
    p.add_argument("--shots", type=int, default=d.shots, help=f"training images per class (CoOp: 1, 2, 4, 8, 16; default {d.shots})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of the k-shot draw, the init and the shuffles (default {d.seed})")
    p.add_argument("--n_ctx", type=int, default=None, help="context vectors (default 16, or the token count of --ctx_init)")
    p.add_argument("--class_specific", action="store_true", help="one context per class (CoOp's CSC) instead of one shared context")
    p.add_argument("--ctx_init", default=d.ctx_init, help="initialize the context from these words, e.g. 'a photo of a' (default: random, std 0.02)")
    p.add_argument("--init_context", default=d.init_context, help="initialize from a saved context file (context.safetensors or a CoOp checkpoint)")
    p.add_argument("--allow_other_clip", action="store_true", help="accept an --init_context learned on another CLIP of the same width (refused by default)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--batch_size", type=int, default=d.batch_size, help=f"images per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"SGD learning rate (default {d.lr})")
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight_decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup_epochs", type=int, default=d.warmup_epochs, help=f"epochs at --warmup_lr before the cosine (default {d.warmup_epochs})")
    p.add_argument("--warmup_lr", type=float, default=d.warmup_lr)
    p.add_argument("--augment", choices=AUGMENTS, default=d.augment, help="flip_crop (CoOp's random resized crop + flip, default) or none (image features computed once)")
    p.add_argument("--locoop_lambda", type=float, default=d.locoop_lambda, help="LoCoOp's OoD regularisation weight (0 = off; LoCoOp uses 0.25)")
    p.add_argument("--locoop_top_k", type=int, default=d.locoop_top_k, help="LoCoOp: a patch is background when the image's class is not in its top k (default 0 = LoCoOp's proportion, 20%% of the classes: its 200 of ImageNet-1K's 1000; CIFAR-10 2, ImageNet200 40)")
    p.add_argument("--local_features", choices=("value", "tokens"), default=d.local_features, help="LoCoOp's local features (as clip_ood's GL-MCM)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cuda or cpu")
    p.add_argument("--mixed_precision", choices=MIXED_PRECISION, default="no", help="accelerate's mixed precision (default no)")
    p.add_argument("--num_workers", type=int, default=0, help="image loading workers (default 0)")
    p.add_argument("--save_every", type=int, default=1, help="epochs between checkpoints (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def benchmark_name(given: str) -> str:
    """A benchmark name, or a benchmark file (registered here); ValueError naming what is wrong."""
    if given.endswith((".yaml", ".yml")):
        return register_benchmark_file(given).name
    return get_benchmark(given).name


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {name: getattr(args, name) for name in TrainConfig.__dataclass_fields__}
    return TrainConfig(**{**values, "benchmark": benchmark_name(args.benchmark)})


def percent(fraction: float | None) -> str:
    """An accuracy for the summary line; one not recorded (None, NaN) is said so."""
    if fraction is None or math.isnan(fraction):
        return "not measured"
    return f"{100 * fraction:.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:  # an unknown benchmark, a malformed benchmark file (the message names the field)
        parser.error(str(exc))
    try:
        result = train(config, args.output_dir, data_root=args.data_root, device=args.device, mixed_precision=args.mixed_precision,
                       num_workers=args.num_workers, save_every=args.save_every, progress=not args.quiet, allow_other_clip=args.allow_other_clip)
    except TrainError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    if result.already_done:
        print(f"{result.context_path}: already trained ({config.epochs} epochs); nothing to do")
    elif result.resumed_from >= config.epochs:
        print(f"all {config.epochs} epochs were done but the final save was interrupted: redone")
    elif result.resumed_from:
        print(f"resumed after epoch {result.resumed_from} of {config.epochs}")
    last = result.history[-1] if result.history else {}
    print(f"{config.method} {config.shots}-shot on {config.benchmark}: loss {last.get('loss', float('nan')):.4f}; "
          f"k-shot accuracy zero-shot {percent(result.zero_shot_accuracy)} -> learned {percent(result.accuracy)}")
    print(f"context: {result.context_path}")
    own = f" --benchmark {args.benchmark}" if args.benchmark.endswith((".yaml", ".yml")) else ""
    print(f"evaluate: reguide-eval --model clip_ood --model_args pretrained={config.pretrained},prompt_context={result.context_path},score=mcm "
          f"--tasks reguide_baseline_{config.benchmark}{own} --batch_size 64")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
