"""CLIP features on a ``transformers`` ``CLIPModel``: images (global and local) and class texts with a
learned prompt context (CoOp). Shared by ``clip_ood`` (inference) and ``reguide-clip-train``
(gradients flow into the context; CLIP itself stays frozen).

Context prompts are ``[SOS] ctx_1..ctx_n <class-name tokens> [EOS]``: token embeddings with the
context vectors in place of the ``n`` placeholder tokens, plus position embeddings, through the
causal text encoder; a class's feature is its EOS position's output after ``final_layer_norm`` and
``text_projection`` (unnormalized). Prompts are padded only to the longest of the batch: the mask is
causal, so padding after EOS never reaches the EOS output.

A context is ``[n_ctx, H]`` (one for every class, CoOp's unified context) or ``[K, n_ctx, H]``
(class-specific, CoOp's CSC; row ``k`` belongs to class ``k``), ``H`` the text hidden size.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

LOCAL_FEATURES = ("value", "tokens")
TEXT_CHUNK = 256  # prompts per text-encoder forward


@dataclass(frozen=True)
class ContextPrompts:
    """Token ids ``[K, L]`` of the class prompts with ``n_ctx`` placeholders, and each EOS position ``[K]``."""

    ids: torch.Tensor
    eos_at: torch.Tensor
    n_ctx: int


def encode_texts(model, tokenizer, texts: Sequence[str], max_length: int) -> torch.Tensor:
    """Unnormalized projected features ``[N, D]`` of plain texts through the model's own text path."""
    device = model.text_projection.weight.device
    out = []
    for start in range(0, len(texts), TEXT_CHUNK):
        tok = tokenizer(list(texts[start:start + TEXT_CHUNK]), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        text_out = model.text_model(input_ids=tok["input_ids"].to(device), attention_mask=tok["attention_mask"].to(device))
        out.append(model.text_projection(text_out.pooler_output))
    return torch.cat(out)


def context_prompts(tokenizer, classes: Sequence[str], n_ctx: int, max_length: int) -> ContextPrompts:
    """The prompts of ``classes`` for a context of ``n_ctx`` vectors (class names cut to fit ``max_length``)."""
    sos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if sos is None or eos is None:
        raise ValueError("a prompt context needs a tokenizer with BOS and EOS tokens")
    room = max_length - n_ctx - 2
    if room < 1:
        raise ValueError(f"{n_ctx} context vectors leave no room for a class name in {max_length} positions")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    names = [ids[:room] for ids in tokenizer(list(classes), add_special_tokens=False)["input_ids"]]
    length = n_ctx + 2 + max(len(ids) for ids in names)
    ids = torch.full((len(classes), length), pad, dtype=torch.long)
    ids[:, 0] = sos
    eos_at = torch.empty(len(classes), dtype=torch.long)
    for row, name in enumerate(names):
        ids[row, 1 + n_ctx:1 + n_ctx + len(name)] = torch.tensor(name, dtype=torch.long)
        eos_at[row] = 1 + n_ctx + len(name)
        ids[row, eos_at[row]] = eos
    return ContextPrompts(ids, eos_at, n_ctx)


def causal_mask(length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Additive causal mask ``[1, 1, L, L]``: 0 on and below the diagonal, dtype-min above."""
    mask = torch.full((length, length), torch.finfo(dtype).min, dtype=dtype, device=device).triu(1)
    return mask[None, None]


def run_text_encoder(model, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    encoder = model.text_model.encoder
    if "causal_attention_mask" in inspect.signature(encoder.forward).parameters:  # transformers 4.x
        out = encoder(inputs_embeds=hidden, attention_mask=None, causal_attention_mask=mask)
    else:
        out = encoder(inputs_embeds=hidden, attention_mask=mask)
    return out[0] if isinstance(out, tuple) else out.last_hidden_state


def encode_with_context(model, prompts: ContextPrompts, ctx: torch.Tensor) -> torch.Tensor:
    """Unnormalized projected class features ``[K, D]``; differentiable in ``ctx`` (see the module docstring)."""
    text_model = model.text_model
    device = text_model.embeddings.token_embedding.weight.device
    ids = prompts.ids.to(device)
    n_classes, n_ctx = ids.shape[0], prompts.n_ctx
    if ctx.shape[-2] != n_ctx:
        raise ValueError(f"the prompts hold {n_ctx} context positions, the context has {ctx.shape[-2]}")
    embeds = text_model.embeddings.token_embedding(ids)
    ctx = ctx.to(device=device, dtype=embeds.dtype)
    ctx = ctx.expand(n_classes, -1, -1) if ctx.ndim == 2 else ctx
    if ctx.shape[0] != n_classes:
        raise ValueError(f"a class-specific context of {ctx.shape[0]} classes cannot prompt {n_classes} classes")
    embeds = torch.cat([embeds[:, :1], ctx, embeds[:, 1 + n_ctx:]], dim=1)  # the context replaces the placeholders
    hidden = text_model.embeddings(inputs_embeds=embeds)  # adds position embeddings
    encoded = run_text_encoder(model, hidden, causal_mask(ids.shape[1], hidden.dtype, hidden.device))
    encoded = text_model.final_layer_norm(encoded)
    pooled = encoded[torch.arange(n_classes, device=device), prompts.eos_at.to(device)]
    return model.text_projection(pooled)


def value_path(model, hidden: torch.Tensor) -> torch.Tensor:
    """The last vision block with self-attention replaced by its value path (GL-MCM / MaskCLIP)."""
    layer = model.vision_model.encoder.layers[-1]
    attn = layer.self_attn
    x = hidden + attn.out_proj(attn.v_proj(layer.layer_norm1(hidden)))
    return x + layer.mlp(layer.layer_norm2(x))


def image_features(model, pixel_values: torch.Tensor, local: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Projected global features ``[B, D]`` and, with ``local`` (``value`` | ``tokens``), local ``[B, P, D]``.

    ``value``: the last block re-run on its input with attention replaced by the value path (as the
    GL-MCM authors' code); ``tokens``: the last layer's patch tokens. Both go through
    ``post_layernorm`` and ``visual_projection``.
    """
    if local is not None and local not in LOCAL_FEATURES:
        raise ValueError(f"unknown local_features {local!r} (known: {', '.join(LOCAL_FEATURES)})")
    vision = model.vision_model
    captured: list[torch.Tensor] = []
    handle = None
    if local == "value":
        def grab_input(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            captured.append(args[0] if args else kwargs["hidden_states"])

        handle = vision.encoder.layers[-1].register_forward_pre_hook(grab_input, with_kwargs=True)
    try:
        out = vision(pixel_values=pixel_values)
    finally:
        if handle is not None:
            handle.remove()
    global_features = model.visual_projection(out.pooler_output)
    if local is None:
        return global_features, None
    tokens = out.last_hidden_state[:, 1:] if local == "tokens" else value_path(model, captured[0])[:, 1:]
    return global_features, model.visual_projection(vision.post_layernorm(tokens))
