"""Parse + score throughput over the authors' real released answers, one core (this process, one thread).

Corpora (the package's copy of the release): the ImageNet200 5% GPT-4o baseline answers (ID + 4 OoD
sets), the ImageNet200 25% Qwen baseline answers (a weak model: refusals, missing dicts, repetition
loops) and the CIFAR10 25% GPT-4o ID answers. Each answer is scored against its document (matched
by normalized image path) at three levels:

- ``parse``: :func:`reguide_tasks.answers.parsing.parse_answer` with the prompt's options and examples;
- ``parse+score``: plus the S_max OoD score and, for ID documents, correctness;
- ``process_results``: the task's whole per-document hook (parse, score, the record, the per-document
  metric items), what lmms-eval calls once per document.

Cold = the first pass in this process (class tables and typo caches built on the way); warm = the
median of the following passes. Target: >= 10,000 answers/s.

    python bench/bench_parse_throughput.py [--seconds 2.0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from reguide_tasks.answers.parsing import parse_answer
from reguide_tasks.answers.scoring import is_correct, ood_score
from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.data.documents import subset_documents
from reguide_tasks.data.release import (
    RELEASE_DIR,
    normalize_image_path,
    read_release_file,
)
from reguide_tasks.lmms.hooks import baseline_process_results
from reguide_tasks.prompts.render import example_confidences
from reguide_tasks.vocab import REJECTION_CLASS

CORPORA = {
    "imagenet200 5% gpt-4o": ("imagenet200", "response/baseline/imagenet200-5%/gpt"),
    "imagenet200 25% qwen": ("imagenet200", "response/baseline/imagenet200-25%/qwen"),
    "cifar10 25% gpt-4o (ID)": ("cifar10", "response/baseline/cifar10-25%/gpt"),
}
TARGET_CORPORA = ("imagenet200 5% gpt-4o", "imagenet200 25% qwen")  # the target is over these together
TARGET = 10_000.0


def load_corpus(benchmark: str, folder: Path) -> list[tuple[dict, str]]:
    """(document, answer) for every released answer of a folder whose image is in a released subset."""
    docs = {d["doc_key"]: d for subset in get_benchmark(benchmark).subsets for d in subset_documents(benchmark, subset)}
    pairs = []
    for path in sorted(folder.glob("*.jsonl*")):
        for by_image in read_release_file(path).values():
            for image_id, answer in by_image.items():
                doc = docs.get(normalize_image_path(image_id))
                if doc is not None:
                    pairs.append((doc, answer))
    return pairs


def levels(benchmark: str) -> dict[str, Callable[[dict, str], object]]:
    bench = get_benchmark(benchmark)
    options = (*bench.classes, REJECTION_CLASS)
    examples = example_confidences(benchmark)

    def parse(doc: dict, answer: str) -> object:
        return parse_answer(answer, options, examples)

    def parse_score(doc: dict, answer: str) -> object:
        parsed = parse_answer(answer, options, examples)
        score = ood_score(parsed, bench.classes, "max_id")
        return score, (is_correct(parsed, doc["label_name"]) if doc["role"] == "id" else None)

    def process_results(doc: dict, answer: str) -> object:
        return baseline_process_results(doc, [answer])

    return {"parse": parse, "parse+score": parse_score, "process_results": process_results}


def passes(fn: Callable[[dict, str], object], pairs: Sequence[tuple[dict, str]], seconds: float) -> tuple[float, float]:
    """(cold answers/s, warm answers/s): the first pass, then the median of passes filling ``seconds``."""
    def one_pass() -> float:
        start = time.perf_counter()
        for doc, answer in pairs:
            fn(doc, answer)
        return len(pairs) / (time.perf_counter() - start)

    cold = one_pass()
    warm, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(warm) < 3:
        warm.append(one_pass())
    return cold, statistics.median(warm)


def slowest(fn: Callable[[dict, str], object], pairs: Sequence[tuple[dict, str]], n: int = 3) -> list[tuple[float, int]]:
    """The n slowest answers: (microseconds, best of 3 tries so that a GC pause does not count; answer length)."""
    timed = []
    for doc, answer in pairs:
        tries = []
        for _ in range(3):
            start = time.perf_counter()
            fn(doc, answer)
            tries.append(time.perf_counter() - start)
        timed.append((min(tries) * 1e6, len(answer)))
    return sorted(timed, reverse=True)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="warm passes per corpus and level fill at least this long")
    args = parser.parse_args()
    if hasattr(os, "sched_getaffinity"):
        print(f"CPUs available: {len(os.sched_getaffinity(0))}; this benchmark uses one thread")
    n_target = 0
    totals: dict[str, float] = {}  # seconds per level over TARGET_CORPORA, at the warm rate
    for name, (benchmark, folder) in CORPORA.items():
        pairs = load_corpus(benchmark, RELEASE_DIR / folder)
        n_target += len(pairs) if name in TARGET_CORPORA else 0
        mean_len = sum(len(a) for _, a in pairs) / len(pairs)
        print(f"\n{name}: {len(pairs)} answers, mean {mean_len:.0f} characters, longest {max(len(a) for _, a in pairs)}")
        for level, fn in levels(benchmark).items():
            cold, warm = passes(fn, pairs, args.seconds)
            if name in TARGET_CORPORA:
                totals[level] = totals.get(level, 0.0) + len(pairs) / warm
            print(f"  {level:16s} cold {cold:9,.0f} /s   warm {warm:9,.0f} /s   {'ok' if warm >= TARGET else 'BELOW TARGET'}")
        worst = ", ".join(f"{us:,.0f} us ({length} chars)" for us, length in slowest(levels(benchmark)["process_results"], pairs))
        print(f"  slowest answers (process_results): {worst}")
    print(f"\n{' + '.join(TARGET_CORPORA)}: {n_target} answers, warm, answers/s: " + ", ".join(f"{level} {n_target / seconds:,.0f}" for level, seconds in totals.items()))
    print(f"target >= {TARGET:,.0f} answers/s for parse+score: {'met' if n_target / totals['parse+score'] >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
