"""What a ``reguide-clip-train`` run is: its config (checked before any work), its result, its schedule.

Every field of :class:`TrainConfig` determines the learned context, so a saved run resumes only under
the same config (see :mod:`reguide_tasks.models.clip_train`); device, precision, workers and folders
are not part of it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reguide_tasks.models.clip_features import LOCAL_FEATURES

AUGMENTS = ("flip_crop", "none")
MIXED_PRECISION = ("no", "fp16", "bf16")
DEFAULT_N_CTX = 16


class TrainError(ValueError):
    """Bad training input or an output folder that cannot be resumed; the message says what to do."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the learned context (the resume check compares these fields)."""

    pretrained: str
    benchmark: str
    shots: int = 16
    seed: int = 1
    n_ctx: int | None = None  # default 16, or the words of ctx_init / the init_context's length
    class_specific: bool = False
    ctx_init: str = ""  # e.g. "a photo of a": start from these words' token embeddings
    init_context: str = ""  # start from a saved context file
    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    augment: str = "flip_crop"
    locoop_lambda: float = 0.0
    locoop_top_k: int = 0  # 0: LoCoOp's proportion, 20% of the classes (200 of ImageNet-1K's 1,000)
    local_features: str = "value"
    train_list: str = ""  # default: <data root>/benchmark_imglist/<benchmark>/train_<id>.txt

    def check(self) -> None:
        problems = []
        if self.shots < 1:
            problems.append(f"--shots must be >= 1 (CoOp uses 1, 2, 4, 8, 16), not {self.shots}")
        if self.epochs < 1 or self.batch_size < 1:
            problems.append("--epochs and --batch_size must be >= 1")
        if self.n_ctx is not None and self.n_ctx < 1:
            problems.append(f"--n_ctx must be >= 1, not {self.n_ctx}")
        if self.lr <= 0:
            problems.append("--lr must be > 0")
        if not 0 <= self.warmup_epochs < self.epochs:
            problems.append(f"--warmup_epochs must be in 0..{self.epochs - 1} (fewer than --epochs)")
        if self.augment not in AUGMENTS:
            problems.append(f"--augment must be one of {', '.join(AUGMENTS)}")
        if self.locoop_lambda < 0:
            problems.append("--locoop_lambda must be >= 0 (0 = plain CoOp)")
        if self.local_features not in LOCAL_FEATURES:
            problems.append(f"--local_features must be one of {', '.join(LOCAL_FEATURES)}")
        if self.ctx_init and self.init_context:
            problems.append("give --ctx_init (words) or --init_context (a file), not both")
        if problems:
            raise TrainError("; ".join(problems))

    @property
    def method(self) -> str:
        return ("LoCoOp" if self.locoop_lambda > 0 else "CoOp") + ("-CSC" if self.class_specific else "")


@dataclass
class TrainResult:
    output_dir: Path
    context_path: Path
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: loss, accuracy (augmented batches), lr
    zero_shot_accuracy: float = math.nan
    accuracy: float = math.nan  # the learned context's, on the un-augmented k-shot images
    resumed_from: int = 0  # epochs already done when this run started
    already_done: bool = False


def epoch_lr(config: TrainConfig, epoch: int) -> float:
    """Constant warm-up lr, then a cosine from ``lr`` over the remaining epochs (0-based ``epoch``)."""
    if epoch < config.warmup_epochs:
        return config.warmup_lr
    span = max(1, config.epochs - config.warmup_epochs)
    return 0.5 * config.lr * (1 + math.cos(math.pi * (epoch - config.warmup_epochs) / span))


def epoch_seed(config: TrainConfig, epoch: int) -> int:
    """The seed of one epoch's shuffle and augmentation draws (the same on a resumed run)."""
    return (config.seed * 1_000_003 + epoch) % 2**63


def config_fields(config: TrainConfig) -> dict[str, Any]:
    """The config as the JSON-able dict stored in checkpoints and compared on resume."""
    return dataclasses.asdict(config)
