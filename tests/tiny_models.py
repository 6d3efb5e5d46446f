"""Tiny random-weight vision-language checkpoints built offline, for end-to-end tests of real model paths.

:func:`build_tiny_llava` writes a ``LlavaForConditionalGeneration`` (CLIP vision tower + Llama text
model, a few thousand parameters per layer) and its ``LlavaProcessor`` to a folder that
``from_pretrained`` / lmms-eval's ``llava_hf`` load with the hub switched off. The tokenizer is a
byte-level BPE trained in memory on our own prompt texts, so every prompt encodes without unknown
tokens and in few tokens (whole class names become single tokens). The weights are random (seeded):
answers are noise; what these checkpoints test is the path, not the numbers.

Conventions: images are ``image_size`` square (32 by default, the fixture images' size), one image
gives ``(image_size / patch_size) ** 2`` ``<image>`` tokens (the CLS feature is dropped, strategy
``default``); the chat template accepts string contents (``<image>`` already in the text, the
``llava_hf`` simple path) and list contents with ``{"type": "image"}`` / ``{"type": "text"}`` items
(the chat path).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

IMAGE_TOKEN = "<image>"
BOS, EOS, PAD = "<s>", "</s>", "<pad>"

# One template for the tokenizer (simple path: content is a string) and the processor (chat path:
# content is a list of typed items). Vicuna-like, as llava-1.5.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}" + IMAGE_TOKEN + "\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] != 'user' %}{{ eos_token }}{% endif %}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def prompt_corpus() -> list[str]:
    """Every prompt our tasks send (baseline, stage 1, stage 2 with and without suggestions), both benchmarks."""
    from reguide_tasks.data.benchmarks import BENCHMARKS
    from reguide_tasks.prompts.render import (
        load_examples,
        render_baseline,
        render_stage1,
        render_stage2,
    )

    texts = []
    for name, bench in BENCHMARKS.items():
        classes = bench.classes
        texts += [
            render_baseline(classes, load_examples(name)),
            render_stage1(classes, 20, 20),
            render_stage2(classes, []),
            render_stage2(classes, ["lookalike one", "faraway two"]),
        ]
    return texts


def build_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """Byte-level BPE trained on ``texts``; special tokens ``<s>`` ``</s>`` ``<pad>`` ``<image>`` (ids 0..3).

    Byte-level: any text encodes (no unknown token); decoding round-trips the text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD, IMAGE_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts) + [CHAT_TEMPLATE], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IMAGE_TOKEN],
        chat_template=CHAT_TEMPLATE,
        model_max_length=16384,
    )


def build_tiny_llava(
    path: str | Path,
    texts: Iterable[str] | None = None,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    image_size: int = 32,
    patch_size: int = 8,
    vocab_size: int = 2048,
    max_positions: int = 16384,
    seed: int = 0,
) -> Path:
    """Write a tiny random LLaVA checkpoint + processor to ``path`` (created); return ``path``.

    ``texts`` trains the tokenizer (default: :func:`prompt_corpus`). ``max_positions`` must cover
    the longest prompt in tokens plus the image tokens and the generated tokens.
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_bpe_tokenizer(prompt_corpus() if texts is None else texts, vocab_size)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    vision = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2 or 1,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    n_image_tokens = (image_size // patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=n_image_tokens,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(path)

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,  # CLIP's CLS feature, dropped by the "default" strategy
    )
    processor.save_pretrained(path)
    return path


QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
# Qwen2-VL's ChatML layout; images become <|vision_start|><|image_pad|><|vision_end|> (the processor
# repeats the pad token once per merged patch).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' or 'video' in item %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_qwen_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """Byte-level BPE like :func:`build_bpe_tokenizer`, with Qwen2-VL's special tokens (``<|im_end|>`` = EOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts) + [QWEN_CHAT_TEMPLATE, "system user assistant You are a helpful assistant."], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
        chat_template=QWEN_CHAT_TEMPLATE,
        model_max_length=16384,
    )


def build_tiny_qwen2_vl(
    path: str | Path,
    texts: Iterable[str] | None = None,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    vocab_size: int = 2048,
    max_positions: int = 16384,
    max_pixels: int = 56 * 56,
    seed: int = 0,
) -> Path:
    """Write a tiny random Qwen2-VL checkpoint + processor to ``path``; return ``path``.

    Images are resized to at most ``max_pixels`` (default 56x56: 16 patches of 14, 4 image tokens
    after the 2x2 merge); lmms-eval's ``qwen2_vl`` passes its own ``max_pixels`` / ``min_pixels``.
    """
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import (
        Qwen2VLVideoProcessor,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen_tokenizer(prompt_corpus() if texts is None else texts, vocab_size)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    head_dim = hidden // heads
    # M-RoPE splits each head's rotary half into (time, height, width) sections.
    mrope_section = [head_dim // 4, head_dim // 8, head_dim // 2 - head_dim // 4 - head_dim // 8]
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads // 2 or 1,
        "max_position_embeddings": max_positions,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = {
        "depth": layers,
        "embed_dim": hidden,
        "hidden_size": hidden,
        "num_heads": 2,
        "mlp_ratio": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.save_pretrained(path)

    pixels = {"min_pixels": 28 * 28, "max_pixels": max_pixels}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python tests/tiny_models.py OUT_DIR``: write a tiny LLaVA there (for trying ``llava_hf`` by hand)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python tests/tiny_models.py OUT_DIR", file=sys.stderr)
        return 2
    print(build_tiny_llava(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
