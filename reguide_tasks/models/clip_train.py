"""CoOp prompt learning for the CLIP reference: a context learned on k-shot ID training images.

CLIP stays frozen; only the context vectors in front of each class name learn (unified
``[n_ctx, H]`` or class-specific ``[K, n_ctx, H]``, see :mod:`reguide_tasks.models.clip_features`),
by cross-entropy of CLIP's logits ``logit_scale * cos(image, class prompt)`` against the image's
class. Optionally LoCoOp's OoD regularisation: on each image's local (patch) features, the patches
whose top-``locoop_top_k`` classes miss the image's class are taken as background, and their
class-probability entropy is maximised (loss ``CE - locoop_lambda * mean entropy``; see
:mod:`reguide_tasks.models.clip_locoop`; default ``K``: LoCoOp's 20 % of the classes).

Defaults follow CoOp's ImageNet recipe: 16 context vectors, random init (std 0.02), SGD lr 0.002,
momentum 0.9, weight decay 5e-4, batch 32, 50 epochs, cosine schedule after one warm-up epoch at
lr 1e-5, random resized crop + flip. With ``augment="none"`` each image has one fixed feature,
computed once and cached, and an epoch is text-encoder passes only.

Every ``save_every`` epochs (and at the end) the output folder gets ``context.safetensors`` (the
context with this config, what ``clip_ood``'s ``prompt_context=`` reads) and ``train_state.pt``
(context, optimizer, epoch, history): a rerun of the same command resumes after the last saved
epoch, and continues exactly as the uninterrupted run would (each epoch's shuffle and augmentation
draws are seeded by (seed, epoch)). Both files are replaced atomically, so a kill never leaves a
torn checkpoint. A finished run rerun is a no-op. The k-shot image list is written beside them.

Accuracy: before training, the zero-shot accuracy of ``a photo of a {}.`` on the k-shot images;
after, the learned context's; both on the un-augmented images, recorded in the config.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.data.documents import DataError, load_image, require_images
from reguide_tasks.data.train_lists import (
    require_readable,
    sample_k_shot,
    train_documents,
)
from reguide_tasks.models.clip_context import (
    PROBE_KEY,
    check_model,
    load_context,
    save_context,
    text_probe,
)
from reguide_tasks.models.clip_features import (
    context_prompts,
    encode_texts,
    encode_with_context,
    image_features,
)
from reguide_tasks.models.clip_locoop import background_entropy, default_top_k
from reguide_tasks.models.clip_scores import normalize
from reguide_tasks.models.clip_train_config import (
    DEFAULT_N_CTX,
    MIXED_PRECISION,
    TrainConfig,
    TrainError,
    TrainResult,
    config_fields,
    epoch_lr,
    epoch_seed,
)

ZERO_SHOT_TEMPLATE = "a photo of a {}."
CONTEXT_FILE, STATE_FILE, IMAGES_FILE = "context.safetensors", "train_state.pt", "kshot_images.txt"


def _check_resumable(output_dir: Path, config: TrainConfig, kshot_sha256: str) -> dict[str, Any] | None:
    """The saved state in ``output_dir`` when it was made with ``config`` on the same k-shot images; TrainError when not."""
    state_path = output_dir / STATE_FILE
    if not state_path.is_file():
        return None
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        stored = json.loads(state["config"])
    except (OSError, EOFError, KeyError, TypeError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:  # not ours, or damaged
        raise TrainError(f"{state_path} is not a readable training state ({exc}); remove it or use another --output_dir") from None
    ours = config_fields(config)
    differ = [f"{k}: {stored.get(k)!r} there, {v!r} here" for k, v in ours.items() if stored.get(k) != v]
    if differ:
        raise TrainError(f"{output_dir} holds a training run with other settings ({'; '.join(differ)}): use another --output_dir, or rerun with those settings to resume it")
    if state.get("kshot_images_sha256", kshot_sha256) != kshot_sha256:  # same settings, another training list or data root
        raise TrainError(f"{output_dir} holds a run trained on other k-shot images (its list: {output_dir / IMAGES_FILE}): the training list changed; "
                         "use another --output_dir, or restore the list to resume it")
    return state


def _finished_context(output_dir: Path, state: dict[str, Any] | None, config: TrainConfig) -> dict[str, Any] | None:
    """The config stored in the context file when it is this run's final product, else None.

    The final save replaces ``train_state.pt`` (epoch E) before ``context.safetensors``: a kill between
    the two leaves the previous checkpoint's context (epochs_done < E, no accuracy), which must not count
    as finished; the rerun then redoes the final save.
    """
    if state is None or int(state["epoch"]) < config.epochs:
        return None
    try:
        stored = load_context(output_dir / CONTEXT_FILE, int(state["ctx"].shape[-1])).config or {}
    except (OSError, ValueError):  # absent or unreadable: the final save is redone
        return None
    if stored.get("epochs_done") != int(state["epoch"]) or stored.get("accuracy") is None:
        return None
    return stored


def _initial_context(config: TrainConfig, model, tokenizer, n_classes: int, hidden: int, classes: Sequence[str], allow_other_clip: bool = False) -> torch.Tensor:
    if config.init_context:
        try:
            context = load_context(config.init_context, hidden, classes)
            if not allow_other_clip:
                check_model(context, text_probe(model), config.pretrained, f"--init_context {config.init_context}", "--allow_other_clip")
        except ValueError as exc:
            raise TrainError(str(exc) if str(exc).startswith("--init_context") else f"--init_context: {exc}") from None
        ctx = context.ctx
        if context.class_specific != config.class_specific or (config.n_ctx is not None and context.n_ctx != config.n_ctx):
            raise TrainError(
                f"--init_context {config.init_context} holds a {'class-specific' if context.class_specific else 'unified'} context of "
                f"{context.n_ctx} vectors; pass matching --n_ctx / --class_specific (or leave --n_ctx out)"
            )
        return ctx.clone()
    if config.ctx_init:
        ids = tokenizer(config.ctx_init, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        if config.n_ctx is not None and config.n_ctx != len(ids):
            raise TrainError(f"--ctx_init {config.ctx_init!r} is {len(ids)} tokens but --n_ctx is {config.n_ctx}: leave --n_ctx out")
        with torch.no_grad():
            ctx = model.text_model.embeddings.token_embedding(ids.to(model.device)).float().cpu()
    else:
        generator = torch.Generator().manual_seed(config.seed)
        ctx = torch.randn(config.n_ctx or DEFAULT_N_CTX, hidden, generator=generator) * 0.02
    return ctx.expand(n_classes, -1, -1).clone() if config.class_specific else ctx


class _Images(torch.utils.data.Dataset):
    """The k-shot images as model input tensors, with the CLIP processor or CoOp's augmentation."""

    def __init__(self, docs: Sequence[Mapping], root: str | os.PathLike | None, processor, augment: str) -> None:
        self.docs, self.root, self.processor = list(docs), root, processor
        self.transform = None
        if augment == "flip_crop":
            from torchvision import transforms

            crop = processor.crop_size
            side = int(crop["height"]) if not isinstance(crop, (int, float)) else int(crop)  # a dict / SizeDict, or a bare int
            self.transform = transforms.Compose([
                transforms.RandomResizedCrop(side, scale=(0.08, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(processor.image_mean, processor.image_std),
            ])

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        doc = self.docs[index]
        image = load_image(doc, self.root)
        if self.transform is not None:
            return self.transform(image), int(doc["label"])
        return self.processor(images=[image], return_tensors="pt")["pixel_values"][0], int(doc["label"])


def _sha256(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _atomic_torch_save(obj: Any, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(obj, partial)
    os.replace(partial, path)


class _Trainer:
    """One training run; :func:`train` is the entry point."""

    def __init__(self, config: TrainConfig, output_dir: Path, data_root: str | os.PathLike | None, device: str, mixed_precision: str, num_workers: int, progress: bool,
                 allow_other_clip: bool = False) -> None:
        self.config, self.output_dir, self.data_root, self.allow_other_clip = config, output_dir, data_root, allow_other_clip
        self.num_workers, self.progress = num_workers, progress
        bench = get_benchmark(config.benchmark)
        self.classes = bench.classes
        # data first: a missing list, too many shots or missing images fail before any model loads
        docs = train_documents(config.benchmark, data_root, config.train_list or None)
        self.docs = sample_k_shot(docs, self.classes, config.shots, config.seed)
        require_images(self.docs, Path(data_root) if data_root else None)
        self.kshot_sha256 = _sha256([d["image"] for d in self.docs])
        self.state = _check_resumable(output_dir, config, self.kshot_sha256)
        self.finished = _finished_context(output_dir, self.state, config)
        if self.finished is not None:
            return
        require_readable(self.docs, data_root)  # a corrupt image: one error naming it, not a crash mid-epoch
        self._setup_model(device, mixed_precision)

    def _setup_model(self, device: str, mixed_precision: str) -> None:
        from accelerate import Accelerator
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        config = self.config
        try:
            self.accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision)
        except ValueError as exc:  # e.g. bf16 on a GPU without it; another precision set earlier in this process
            raise TrainError(f"accelerate refused --mixed_precision {mixed_precision} with --device {device} ({exc}); use --mixed_precision no") from None
        if self.accelerator.num_processes > 1:
            raise TrainError("reguide-clip-train runs in one process (a prompt context is small): start it with python / reguide-clip-train, not accelerate launch with several processes")
        self.model = CLIPModel.from_pretrained(config.pretrained).to(self.accelerator.device).eval().requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(config.pretrained)
        self.processor = AutoImageProcessor.from_pretrained(config.pretrained)
        self.logit_scale = float(self.model.logit_scale.detach().float().exp())
        self.max_length = int(self.model.config.text_config.max_position_embeddings)
        hidden = int(self.model.config.text_config.hidden_size)
        n_classes = len(self.classes)
        if config.locoop_lambda > 0 and not 1 <= self.top_k < n_classes:
            raise TrainError(f"--locoop_top_k must be in 1..{n_classes - 1} for {n_classes} classes, not {self.top_k}")
        ctx = _initial_context(config, self.model, self.tokenizer, n_classes, hidden, self.classes, self.allow_other_clip)
        if self.state is not None:
            saved = self.state["ctx"]
            if tuple(saved.shape) != tuple(ctx.shape):
                raise TrainError(f"{self.output_dir / STATE_FILE}: its context is {tuple(saved.shape)}, this model and class list need {tuple(ctx.shape)}; use another --output_dir")
            ctx = saved.float()
        self.ctx = torch.nn.Parameter(ctx.clone().to(self.accelerator.device))  # fp32 master copy; autocast casts it
        self.prompts = context_prompts(self.tokenizer, self.classes, ctx.shape[-2], self.max_length)
        optimizer = torch.optim.SGD([self.ctx], lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        self.optimizer = self.accelerator.prepare(optimizer)
        if self.state is not None:
            self.optimizer.load_state_dict(self.state["optimizer"])
            if self.accelerator.scaler is not None and self.state.get("scaler"):
                self.accelerator.scaler.load_state_dict(self.state["scaler"])

    @property
    def top_k(self) -> int:
        return self.config.locoop_top_k or default_top_k(len(self.classes))

    # -------------------------------------------------------------- features

    def _loader(self, augment: str, order: Sequence[int] | None = None, seed: int = 0) -> torch.utils.data.DataLoader:
        dataset = _Images(self.docs, self.data_root, self.processor, augment)
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.config.batch_size, sampler=list(order) if order is not None else None,
            num_workers=self.num_workers, generator=torch.Generator().manual_seed(seed),
            pin_memory=self.accelerator.device.type == "cuda",
        )

    def _image_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        local = self.config.local_features if self.config.locoop_lambda > 0 else None
        with torch.no_grad(), self.accelerator.autocast():
            image, patches = image_features(self.model, pixel_values.to(self.accelerator.device, non_blocking=True), local)
        return normalize(image.float()), (normalize(patches.float()) if patches is not None else None)

    def _clean_features(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Features of the un-augmented k-shot images, in list order (one pass, cached)."""
        images, patches, labels = [], [], []
        for pixel_values, label in tqdm(self._loader("none"), desc="k-shot image features", disable=not self.progress):
            image, local = self._image_features(pixel_values)
            images.append(image)
            labels.append(label)
            if local is not None:
                patches.append(local)
        return torch.cat(images), (torch.cat(patches) if patches else None), torch.cat(labels).to(self.accelerator.device)

    def _class_features(self) -> torch.Tensor:
        with self.accelerator.autocast():
            return normalize(encode_with_context(self.model, self.prompts, self.ctx).float())

    @torch.no_grad()
    def _accuracy(self, images: torch.Tensor, labels: torch.Tensor, text: torch.Tensor) -> float:
        return float((images @ text.T).argmax(-1).eq(labels).float().mean())

    # -------------------------------------------------------------- training

    def _loss(self, image: torch.Tensor, patches: torch.Tensor | None, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        text = self._class_features()
        logits = self.logit_scale * image @ text.T
        loss = torch.nn.functional.cross_entropy(logits, labels)
        if patches is not None:  # LoCoOp: background patches (class not in their top k) pushed to high entropy
            entropy = background_entropy(self.logit_scale * patches @ text.T, labels, self.top_k)  # local logits [B, P, K]
            if entropy is not None:
                loss = loss - self.config.locoop_lambda * entropy
        return loss, logits.argmax(-1).eq(labels).float().sum()

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self.optimizer.step()

    def _epoch(self, epoch: int, cached: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor] | None) -> dict[str, float]:
        config = self.config
        lr = epoch_lr(config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        seed = epoch_seed(config, epoch)
        torch.manual_seed(seed)  # augmentation draws in this process (num_workers=0)
        order = torch.randperm(len(self.docs), generator=torch.Generator().manual_seed(seed)).tolist()
        total_loss, correct, seen = 0.0, 0.0, 0
        if cached is not None:
            all_images, all_patches, all_labels = cached
            batches = ((all_images[idx], all_patches[idx] if all_patches is not None else None, all_labels[idx])
                       for idx in (torch.tensor(order[s:s + config.batch_size], device=all_images.device) for s in range(0, len(order), config.batch_size)))
        else:
            batches = ((*self._image_features(pixels), label.to(self.accelerator.device)) for pixels, label in self._loader(config.augment, order, seed))
        for image, patches, labels in batches:
            loss, batch_correct = self._loss(image, patches, labels)
            self._step(loss)
            total_loss += float(loss.detach()) * len(labels)
            correct += float(batch_correct)
            seen += len(labels)
        return {"epoch": epoch + 1, "loss": total_loss / seen, "accuracy": correct / seen, "lr": lr}

    def _metadata(self, epochs_done: int, history: list[dict[str, float]], zero_shot: float, accuracy: float | None) -> dict[str, Any]:
        ctx = self.ctx.detach()
        return {
            **config_fields(self.config),
            "method": self.config.method, "classes": list(self.classes), "n_classes": len(self.classes),
            "n_ctx": int(ctx.shape[-2]), "hidden_size": int(ctx.shape[-1]), "epochs_done": epochs_done,
            "kshot_images_sha256": self.kshot_sha256, "zero_shot_accuracy": zero_shot,
            "accuracy": accuracy, "final_loss": history[-1]["loss"] if history else None, PROBE_KEY: text_probe(self.model),
        }

    def _save(self, epochs_done: int, history: list[dict[str, float]], zero_shot: float, accuracy: float | None = None) -> Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        scaler = self.accelerator.scaler.state_dict() if self.accelerator.scaler is not None else None
        state = {"ctx": self.ctx.detach().float().cpu(), "optimizer": self.optimizer.state_dict(), "scaler": scaler,
                 "epoch": epochs_done, "history": json.dumps(history), "zero_shot_accuracy": zero_shot,
                 "config": json.dumps(config_fields(self.config)), "kshot_images_sha256": self.kshot_sha256}
        _atomic_torch_save(state, self.output_dir / STATE_FILE)  # the resume point first, then the product
        return save_context(self.output_dir / CONTEXT_FILE, self.ctx, self._metadata(epochs_done, history, zero_shot, accuracy))

    def run(self, save_every: int) -> TrainResult:
        config, out = self.config, self.output_dir
        (out / IMAGES_FILE).parent.mkdir(parents=True, exist_ok=True)
        (out / IMAGES_FILE).write_text("".join(f"{d['image']} {d['label']}\n" for d in self.docs), encoding="utf-8")
        if self.finished is not None:  # finished earlier: nothing to do
            meta = self.finished
            zero_shot = meta.get("zero_shot_accuracy")
            return TrainResult(out, out / CONTEXT_FILE, json.loads(self.state["history"]), math.nan if zero_shot is None else float(zero_shot),
                               float(meta["accuracy"]), int(self.state["epoch"]), True)
        clean = self._clean_features()
        if self.state is None:
            zero_shot_text = normalize(encode_texts(self.model, self.tokenizer, [ZERO_SHOT_TEMPLATE.format(c) for c in self.classes], self.max_length).float())
            zero_shot = self._accuracy(clean[0], clean[2], zero_shot_text)
            history, start = [], 0
        else:
            zero_shot, history, start = float(self.state["zero_shot_accuracy"]), json.loads(self.state["history"]), int(self.state["epoch"])
        cached = clean if config.augment == "none" else None
        bar = tqdm(range(start, config.epochs), desc=f"{config.method} {config.shots}-shot", initial=start, total=config.epochs, disable=not self.progress)
        for epoch in bar:
            history.append(self._epoch(epoch, cached))
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", acc=f"{history[-1]['accuracy']:.3f}")
            if (epoch + 1) % save_every == 0 and epoch + 1 < config.epochs:
                self._save(epoch + 1, history, zero_shot)
        bar.close()
        with torch.no_grad():  # a rerun after a kill inside the final save gets here with no epoch left, and redoes it
            accuracy = self._accuracy(clean[0], clean[2], self._class_features())
        self._save(config.epochs, history, zero_shot, accuracy)
        return TrainResult(out, out / CONTEXT_FILE, history, zero_shot, accuracy, start)


def _check_precision(mixed_precision: str, device: str) -> None:
    """Refuse a precision the device cannot run, before any work (accelerate would run fp16 on CPU as fp32)."""
    if mixed_precision not in MIXED_PRECISION:
        raise TrainError(f"--mixed_precision must be one of {', '.join(MIXED_PRECISION)}, not {mixed_precision!r}")
    gpu = torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    if mixed_precision == "fp16" and (device == "cpu" or not gpu):
        why = "with --device cpu:" if device == "cpu" else "needs a GPU and torch sees none here:"
        raise TrainError(f"--mixed_precision fp16 {why} accelerate runs fp16 only on a GPU (on the CPU it would silently train in fp32): "
                         "use --mixed_precision bf16 (CPU autocast) or no" + (", or --device cuda" if device == "cpu" and torch.cuda.is_available() else ""))


def train(
    config: TrainConfig,
    output_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    device: str = "auto",
    mixed_precision: str = "no",
    num_workers: int = 0,
    save_every: int = 1,
    progress: bool = True,
    allow_other_clip: bool = False,
) -> TrainResult:
    """Train (or resume, or find finished) the context of ``config`` into ``output_dir``.

    Every check of the input (config values, the training list, the shot count against the smallest
    class, the images, a saved state or ``init_context`` that does not fit) runs before training.
    ``allow_other_clip``: start from an ``init_context`` learned on another CLIP of the same width.
    """
    config.check()
    if save_every < 1:
        raise TrainError("--save_every must be >= 1")
    if device not in ("auto", "cpu", "cuda"):
        raise TrainError(f"--device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device is visible to torch here (use --device cpu, or auto)")
    _check_precision(mixed_precision, device)
    try:
        trainer = _Trainer(config, Path(output_dir), data_root, device, mixed_precision, num_workers, progress, allow_other_clip)
        return trainer.run(save_every)
    except DataError as exc:  # checked before training; an image that breaks during it lands here too
        raise TrainError(str(exc)) from None


__all__ = ["CONTEXT_FILE", "STATE_FILE", "TrainConfig", "TrainError", "TrainResult", "train"]
