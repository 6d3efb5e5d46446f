"""Prompt tokens per benchmark and tokenizer family: the table in docs/benchmarks.md.

    python utils/prompt_token_counts.py [--clip-bpe FILE] [--tiktoken NAME=RANKS_FILE ...]

Counts the baseline prompt, the stage-1 prompt and a stage-2 prompt with 40 auxiliary classes (the
stage-1 template's example suggestions, as ``reguide-eval --dry_run`` does) of every shipped
benchmark, text only (no chat template, no image tokens), with each tokenizer given:

- ``--clip-bpe``: CLIP's BPE merges file (``bpe_simple_vocab_16e6.txt.gz`` of openai/CLIP), made into
  a transformers ``CLIPTokenizer`` here;
- ``--tiktoken NAME=FILE``: a tiktoken ranks file (base64 token, rank per line) with the Qwen
  pre-tokenizer pattern (Qwen / Qwen2 / Qwen2-VL's vocabulary of 151,643 ranks);
- always: ``ceil(characters / 4)``, the rule of thumb ``--dry_run`` falls back to.

No tokenizer is downloaded: give the files (docs/benchmarks.md says where the figures came from).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import tempfile
from pathlib import Path

from reguide_tasks.data.benchmarks import BENCHMARKS
from reguide_tasks.prompts.render import load_examples, load_template, render_baseline, render_stage1, render_stage2

QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def _byte_alphabet() -> list[str]:
    """GPT-2 / CLIP's printable stand-in of every byte, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in sorted(chars, key=lambda b: (b not in printable, printable.index(b) if b in printable else b))]


def clip_counter(bpe_file: Path):
    """A CLIPTokenizer from CLIP's merges file: vocabulary = bytes, bytes + '</w>', the 48,894 merges, 2 specials."""
    from transformers import CLIPTokenizer

    lines = gzip.open(bpe_file, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    alphabet = _byte_alphabet()
    vocab = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    folder = Path(tempfile.mkdtemp(prefix="clip-bpe-"))
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    assert len(tokenizer) == 49408, len(tokenizer)
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def tiktoken_counter(ranks_file: Path):
    import base64

    import tiktoken

    ranks = {}
    for line in ranks_file.read_text(encoding="utf-8").splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    encoding = tiktoken.Encoding(name=ranks_file.stem, pat_str=QWEN_PATTERN, mergeable_ranks=ranks, special_tokens={})
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def prompts(name: str) -> dict[str, str]:
    bench = BENCHMARKS[name]
    stage1 = load_template("stage1")
    aux = [*stage1["example_near"][:20], *stage1["example_far"][:20]]
    return {
        "baseline": render_baseline(bench.classes, load_examples(name)),
        "stage 1": render_stage1(bench.classes),
        "stage 2 (40 aux.)": render_stage2(bench.classes, aux),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip-bpe", type=Path, help="CLIP's bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("--tiktoken", action="append", default=[], metavar="NAME=FILE", help="a tiktoken ranks file with the Qwen pattern")
    args = parser.parse_args(argv)
    counters = {"characters / 4": lambda text: math.ceil(len(text) / 4)}
    if args.clip_bpe:
        counters["CLIP BPE (49,408)"] = clip_counter(args.clip_bpe)
    for item in args.tiktoken:
        label, _, path = item.partition("=")
        counters[label] = tiktoken_counter(Path(path))
    print("| benchmark | prompt | characters | " + " | ".join(counters) + " |")
    print("|---|---|---:|" + "---:|" * len(counters))
    for name, bench in BENCHMARKS.items():
        if bench.fsood_of:
            continue  # a full-spectrum view prompts as its benchmark does
        for stage, text in prompts(name).items():
            print(f"| {name} | {stage} | {len(text):,} | " + " | ".join(f"{count(text):,}" for count in counters.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
