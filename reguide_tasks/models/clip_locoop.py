"""LoCoOp's OoD regularisation (Miyai et al., NeurIPS 2023): which patches are background, and their entropy.

Each image's local (patch) features are classified against the class prompts like the image itself.
A patch whose top-``K`` classes do not include the image's class is taken as background (an
OoD-like region: sky, floor, another object), and prompt learning maximises the entropy of its class
probabilities, so that no class claims it. The paper uses ``K = 200`` of ImageNet-1K's 1,000 classes;
:func:`default_top_k` keeps that proportion (20 %) for any class count.
"""

from __future__ import annotations

import torch

PAPER_TOP_K_FRACTION = 200 / 1000  # LoCoOp's K for ImageNet-1K


def default_top_k(n_classes: int) -> int:
    """LoCoOp's proportion of the classes (200 of 1,000), at least 1: CIFAR-10 2, ImageNet200 40."""
    return max(1, round(n_classes * PAPER_TOP_K_FRACTION))


def background_patches(local_logits: torch.Tensor, labels: torch.Tensor, top_k: int) -> torch.Tensor:
    """``[B, P]`` True where the patch's ``top_k`` classes (of ``local_logits [B, P, K]``) miss the image's label."""
    top = local_logits.topk(top_k, dim=-1).indices  # [B, P, top_k]
    return ~top.eq(labels[:, None, None]).any(-1)


def background_entropy(local_logits: torch.Tensor, labels: torch.Tensor, top_k: int) -> torch.Tensor | None:
    """Mean entropy of the class probabilities of the background patches; None when there are none."""
    background = background_patches(local_logits, labels, top_k)
    if not background.any():
        return None
    probs = local_logits[background].softmax(-1)
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
