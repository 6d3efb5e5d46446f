"""CLIP zero-shot OoD scores on features (pure torch; no model loading).

Conventions
-----------
- Inputs are UNNORMALIZED features; every function L2-normalizes what it needs.
  ``image`` is ``[B, D]``, ``patches`` is ``[B, P, D]`` (projected patch / local features),
  ``text`` is ``[K, D]`` (one row per ID class).
- A score is HIGHER for MORE in-distribution (as in :mod:`reguide_tasks.metrics.ood`).
- ``cos`` = cosine similarity image-class, ``logits`` = ``logit_scale * cos`` (CLIP's own logits;
  ``logit_scale`` is the model's ``logit_scale.exp()``, 100 for OpenAI CLIP).
- Scores (T = ``temperature``):

  - ``mcm`` (Ming et al. 2022): ``max_k softmax(cos / T)_k``; T = 1 in the MCM paper.
  - ``glmcm`` (Miyai et al. 2023): ``MCM(global) + lambda_local * max_{p,k} softmax(cos_p / T)_k``,
    the local part over all patches ``p`` (each patch's softmax is over the classes).
  - ``msp`` (Hendrycks & Gimpel 2017): ``max_k softmax(logits / T)_k``, the maximum softmax
    probability of CLIP's own classifier; MSP proper is T = 1 (the default). On cosines this is
    MCM at temperature ``T / logit_scale`` (1/100 for OpenAI CLIP at T = 1), so MSP and MCM(T = 1)
    can rank the same images differently.
  - ``maxlogit``: ``max_k logits_k``.
  - ``energy``: ``T * logsumexp(logits / T)`` (negative free energy).

- :func:`class_values` gives, per image, one value per class whose maximum equals the score
  bit-for-bit (the values a text answer reports per class, see :mod:`reguide_tasks.models.clip_ood`).
- Computation is in float32 at least (half-precision features are upcast).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SCORES = ("mcm", "glmcm", "msp", "maxlogit", "energy")

__all__ = [
    "SCORES",
    "ScoreOutput",
    "class_values",
    "compute_scores",
    "cosine",
    "energy_score",
    "glmcm_score",
    "local_mcm_score",
    "maxlogit_score",
    "mcm_score",
    "msp_score",
    "normalize",
]


def normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalize the last dimension, in float32 or wider."""
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return x / x.norm(dim=-1, keepdim=True)


def cosine(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``[..., K]`` between features ``[..., D]`` and class features ``[K, D]``."""
    return normalize(features) @ normalize(text).to(features.device).T


def mcm_score(image: torch.Tensor, text: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """MCM: max over classes of ``softmax(cos / T)``; ``[B]``."""
    return torch.softmax(cosine(image, text) / temperature, dim=-1).amax(dim=-1)


def local_mcm_score(patches: torch.Tensor, text: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Local MCM: max over patches and classes of the per-patch ``softmax(cos / T)``; ``[B]``."""
    return torch.softmax(cosine(patches, text) / temperature, dim=-1).amax(dim=(-2, -1))


def glmcm_score(image: torch.Tensor, patches: torch.Tensor, text: torch.Tensor, temperature: float = 1.0, lambda_local: float = 1.0) -> torch.Tensor:
    """GL-MCM: ``MCM(global) + lambda_local * local MCM``; ``[B]``."""
    return mcm_score(image, text, temperature) + lambda_local * local_mcm_score(patches, text, temperature)


def msp_score(image: torch.Tensor, text: torch.Tensor, logit_scale: float = 100.0, temperature: float = 1.0) -> torch.Tensor:
    """MSP: max over classes of ``softmax(logit_scale * cos / T)``; ``[B]``."""
    return torch.softmax(logit_scale * cosine(image, text) / temperature, dim=-1).amax(dim=-1)


def maxlogit_score(image: torch.Tensor, text: torch.Tensor, logit_scale: float = 100.0) -> torch.Tensor:
    """MaxLogit: ``max_k logit_scale * cos_k``; ``[B]``."""
    return (logit_scale * cosine(image, text)).amax(dim=-1)


def energy_score(image: torch.Tensor, text: torch.Tensor, logit_scale: float = 100.0, temperature: float = 1.0) -> torch.Tensor:
    """Energy score ``T * logsumexp(logits / T)`` (higher = more ID); ``[B]``."""
    logits = logit_scale * cosine(image, text)
    return temperature * torch.logsumexp(logits / temperature, dim=-1)


@dataclass(frozen=True)
class ScoreOutput:
    """Per-image results: ``scores [B]``, ``values [B, K]`` (max over K == score), ``predictions [B]``."""

    scores: torch.Tensor
    values: torch.Tensor
    predictions: torch.Tensor


def class_values(
    score: str,
    image: torch.Tensor,
    text: torch.Tensor,
    *,
    patches: torch.Tensor | None = None,
    temperature: float = 1.0,
    lambda_local: float = 1.0,
    logit_scale: float = 100.0,
) -> torch.Tensor:
    """Per-class values ``[B, K]`` whose row maximum IS the score (exactly, not just numerically).

    - ``mcm``: the softmax probabilities ``softmax(cos / T)``.
    - ``glmcm``: global probabilities + ``lambda_local * local MCM`` (the same shift for every class;
      the shifted maximum is computed by the very same float operation as the score).
    - ``msp``: the softmax probabilities of the logits, ``softmax(logits / T)``.
    - ``maxlogit``: the logits.
    - ``energy``: ``logits - max(logits) + energy``; the top class gets ``0 + energy`` == energy and
      the others ``(non-positive) + energy`` <= energy, since rounding is monotonic.

    The argmax class is the zero-shot prediction for every score.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r} (known: {', '.join(SCORES)})")
    cos = cosine(image, text)
    if score == "mcm":
        return torch.softmax(cos / temperature, dim=-1)
    if score == "glmcm":
        if patches is None:
            raise ValueError("glmcm needs patch features")
        local = local_mcm_score(patches, text, temperature)
        return torch.softmax(cos / temperature, dim=-1) + lambda_local * local[:, None]
    logits = logit_scale * cos
    if score == "msp":
        return torch.softmax(logits / temperature, dim=-1)
    if score == "maxlogit":
        return logits
    energy = temperature * torch.logsumexp(logits / temperature, dim=-1)
    return (logits - logits.amax(dim=-1, keepdim=True)) + energy[:, None]


def compute_scores(
    score: str,
    image: torch.Tensor,
    text: torch.Tensor,
    *,
    patches: torch.Tensor | None = None,
    temperature: float = 1.0,
    lambda_local: float = 1.0,
    logit_scale: float = 100.0,
) -> ScoreOutput:
    """Scores, per-class values and predictions of one batch (see :func:`class_values`)."""
    values = class_values(score, image, text, patches=patches, temperature=temperature, lambda_local=lambda_local, logit_scale=logit_scale)
    scores, predictions = values.max(dim=-1)
    return ScoreOutput(scores=scores, values=values, predictions=predictions)
