"""Learned prompt-context files: what ``reguide-clip-train`` writes and ``clip_ood``'s ``prompt_context=`` reads.

Our format is a safetensors file holding one tensor ``ctx`` (``[n_ctx, H]`` unified or
``[K, n_ctx, H]`` class-specific, see :mod:`reguide_tasks.models.clip_features`) and, in the
file's metadata under :data:`CONFIG_KEY`, the JSON of the training config that made it (model,
benchmark, classes, shots, seed, epochs ...). Also read, for contexts trained elsewhere: a
``torch.save``-d tensor, or a dict holding it under ``"ctx"``, optionally inside ``"state_dict"``,
as CoOp's prompt-learner checkpoints do (no config then).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CONFIG_KEY = "reguide_config"
CONTEXT_TENSOR = "ctx"
PROBE_KEY = "token_embedding_probe"  # in the config: which CLIP the context was learned on (see text_probe)


@dataclass(frozen=True)
class LearnedContext:
    ctx: torch.Tensor  # float32, CPU
    config: dict[str, Any] | None  # the training config, when the file carries one

    @property
    def class_specific(self) -> bool:
        return self.ctx.ndim == 3

    @property
    def n_ctx(self) -> int:
        return int(self.ctx.shape[-2])


def save_context(path: str | os.PathLike, ctx: torch.Tensor, config: Mapping[str, Any]) -> Path:
    """Write ``ctx`` and its config atomically (a killed write leaves the previous file whole)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file({CONTEXT_TENSOR: ctx.detach().float().cpu().contiguous()}, str(partial), metadata={CONFIG_KEY: json.dumps(dict(config), sort_keys=True)})
    os.replace(partial, path)
    return path


def _read(path: Path) -> tuple[Any, dict[str, Any] | None]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                if CONTEXT_TENSOR not in handle.keys():
                    raise ValueError(f"{path}: no tensor {CONTEXT_TENSOR!r} in this safetensors file (found: {', '.join(handle.keys()) or 'none'})")
                metadata = handle.metadata() or {}
                config = json.loads(metadata[CONFIG_KEY]) if CONFIG_KEY in metadata else None
                return handle.get_tensor(CONTEXT_TENSOR), config
        except SafetensorError as exc:
            raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping):
        obj = obj.get("state_dict", obj)
        if not isinstance(obj, Mapping) or CONTEXT_TENSOR not in obj:
            raise ValueError(f"{path}: a dict must hold the context tensor under 'ctx' (or 'state_dict' -> 'ctx')")
        obj = obj[CONTEXT_TENSOR]
    return obj, None


def load_context(path: str | os.PathLike, hidden_size: int, classes: Sequence[str] | None = None) -> LearnedContext:
    """The context at ``path``, checked against the text hidden size ``H`` and, when given and the
    context is class-specific, the class list it is to prompt (count, and names when recorded)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompt context {path} not found (reguide-clip-train writes <output_dir>/context.safetensors)")
    ctx, config = _read(path)
    if not isinstance(ctx, torch.Tensor) or ctx.ndim not in (2, 3) or ctx.shape[-1] != hidden_size or ctx.shape[-2] < 1:
        shape = tuple(ctx.shape) if isinstance(ctx, torch.Tensor) else type(ctx).__name__
        raise ValueError(
            f"{path}: expected a tensor [n_ctx, {hidden_size}] or [n_classes, n_ctx, {hidden_size}] "
            f"({hidden_size} = this CLIP's text hidden size), got {shape}; was it trained on another CLIP?"
        )
    context = LearnedContext(ctx.detach().float(), config)
    if classes is not None:
        check_classes(context, classes, path)
    return context


def text_probe(model) -> list[float]:
    """A cheap fingerprint of a CLIP's text encoder: the first 8 values of its first 8 token embeddings.

    A context lives in the token-embedding space of the CLIP it was learned on; two CLIPs of the same
    width (ViT-B/32 and ViT-B/16, both 512) accept each other's contexts by shape alone.
    """
    return model.text_model.embeddings.token_embedding.weight[:8, :8].detach().float().cpu().flatten().tolist()


def check_model(context: LearnedContext, probe: Sequence[float], model_name: str, where: str | os.PathLike, override: str) -> None:
    """Refuse a context learned on another CLIP, when its config recorded which (files without a probe
    pass). The tolerance admits the same weights loaded in float16 / bfloat16; ``override`` names the
    option that skips this check."""
    stored = (context.config or {}).get(PROBE_KEY)
    if stored is None:
        return
    if len(stored) == len(probe) and torch.allclose(torch.tensor(stored), torch.tensor(list(probe)), rtol=2e-2, atol=1e-4):
        return
    trained = (context.config or {}).get("pretrained") or "a CLIP not named in the file"
    raise ValueError(
        f"{where}: learned on another CLIP ({trained}) than this one ({model_name}): their token embeddings differ, "
        f"so the context means something else here. Use it with {trained}, or pass {override} to use it anyway"
    )


def check_classes(context: LearnedContext, classes: Sequence[str], where: str | os.PathLike = "prompt context") -> None:
    """A class-specific context prompts exactly the classes it was trained for."""
    if not context.class_specific:
        return
    trained = (context.config or {}).get("classes")
    if context.ctx.shape[0] != len(classes):
        made = f" (trained on {context.config['benchmark']})" if context.config and "benchmark" in context.config else ""
        raise ValueError(f"{where}: a class-specific context of {context.ctx.shape[0]} classes{made} cannot prompt these {len(classes)} classes")
    if trained is not None and list(trained) != list(classes):
        first = next(i for i, (a, b) in enumerate(zip(trained, classes)) if a != b)
        raise ValueError(f"{where}: trained for other classes (class {first} is {trained[first]!r} there, {classes[first]!r} here)")
