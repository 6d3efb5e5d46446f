"""A tiny random-weight CLIP checkpoint built offline (no hub access), for tests and benchmarks.

The tokenizer is a word-level ``tokenizers`` model trained in memory on the given texts (lower-cased,
split on whitespace and punctuation, ``<|startoftext|> ... <|endoftext|>`` around every text, EOS
doubling as padding like CLIP's); unknown words map to ``[UNK]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import (
    Tokenizer,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    PreTrainedTokenizerFast,
)

SOS, EOS, UNK = "<|startoftext|>", "<|endoftext|>", "[UNK]"


def build_tokenizer(texts: Iterable[str], max_length: int) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the words of ``texts``; ids 0 = SOS, 1 = EOS (also pad), 2 = UNK."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([*texts, ". , ' -"], trainers.WordLevelTrainer(special_tokens=[SOS, EOS, UNK], min_frequency=1))
    tok.post_processor = processors.TemplateProcessing(single=f"{SOS} $A {EOS}", special_tokens=[(SOS, 0), (EOS, 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SOS, eos_token=EOS, unk_token=UNK, pad_token=EOS, model_max_length=max_length)


def build_tiny_clip(
    path: str | Path,
    texts: Iterable[str],
    *,
    width: int = 32,
    layers: int = 2,
    heads: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    projection_dim: int = 16,
    max_text_length: int = 32,
    seed: int = 0,
    text_width: int | None = None,
    text_heads: int | None = None,
    mlp_ratio: int = 2,
) -> Path:
    """Save a random CLIPModel + tokenizer + image processor under ``path`` (``save_pretrained``).

    ``text_width`` / ``text_heads`` (default: ``width`` / ``heads``) give the text tower its own
    size, as real CLIPs have (ViT-B/16: vision 768 wide, text 512); real CLIPs' ``mlp_ratio`` is 4.
    """
    path = Path(path)
    tokenizer = build_tokenizer(texts, max_text_length)
    common = dict(hidden_size=width, intermediate_size=mlp_ratio * width, num_hidden_layers=layers, num_attention_heads=heads)
    text = dict(common, hidden_size=text_width or width, intermediate_size=mlp_ratio * (text_width or width), num_attention_heads=text_heads or heads)
    config = CLIPConfig(
        text_config=dict(text, vocab_size=len(tokenizer), max_position_embeddings=max_text_length, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(common, image_size=image_size, patch_size=patch_size),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path
