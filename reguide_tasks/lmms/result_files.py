"""What lmms-eval writes for our tasks, trimmed to what a reader needs.

- Results: lmms-eval adds ``<metric>_stderr``, ``_stderr_clt`` and ``_stderr_clustered`` entries to
  every metric and fills them with "N/A" when it cannot compute them. It never can for ours (an AUROC
  is no mean of per-document numbers; ``reguide-report`` gives bootstrap CIs), so 183 of a ReGuide
  task's 245 result keys were "N/A". :func:`drop_unavailable_stderr` removes those entries of our
  metrics, and lmms-eval's console table then hides its empty stderr column.
- Samples: every document's log row carried the whole prompt in ``input`` (13 KB for ImageNet200, the
  same text for every document) and one copy of its metric item per metric key (up to 40 keys, the
  same item each time). :func:`compact_samples` keeps the prompt in full on the first document that
  used it and writes ``[same prompt as doc_id N]`` on the others, and drops the per-key metric items:
  the ``oodd`` record holds everything they are computed from, and it is what ``reguide-report`` and
  ``reguide-audit`` read.

Applied by ``reguide-eval`` through :func:`reguide_tasks.lmms.runtime.install_result_file_trimming`;
only rows and entries of our tasks (those with an ``oodd`` key) are touched.
"""

from __future__ import annotations

import functools
from collections.abc import MutableMapping, Sequence

from reguide_tasks.vocab import RECORD_KEY, split_metric_key

STDERR_SUFFIXES = ("_stderr_clustered", "_stderr_clt", "_stderr")  # longest first
UNAVAILABLE = "N/A"
# A prompt shorter than this stays on every row: not worth a reference.
SHARED_PROMPT_MIN_CHARS = 200


@functools.lru_cache(maxsize=4096)  # a few dozen distinct keys, asked once per key per document
def is_our_metric(name: str) -> bool:
    """Whether ``name`` (no filter suffix) is a metric key of our tasks."""
    try:
        split_metric_key(name)
    except ValueError:
        return False
    return True


def _is_our_entry(entry: object) -> bool:
    return isinstance(entry, MutableMapping) and any(str(key).partition(",")[0] == RECORD_KEY for key in entry)


def drop_unavailable_stderr(results: MutableMapping) -> int:
    """Remove the "N/A" stderr entries of our metrics from an lmms-eval results dict, in place;
    return how many were removed. Computed stderr values (none of ours today) are kept."""
    removed = 0
    for entry in (results.get("results") or {}).values():
        if not _is_our_entry(entry):
            continue
        for key in list(entry):
            name = str(key).partition(",")[0]
            suffix = next((s for s in STDERR_SUFFIXES if name.endswith(s)), None)
            if suffix and entry[key] == UNAVAILABLE and is_our_metric(name[: -len(suffix)]):
                del entry[key]
                removed += 1
    return removed


def compact_samples(samples: Sequence[MutableMapping]) -> None:
    """Trim lmms-eval's logged samples of our tasks in place, before lmms-eval writes them."""
    first_doc_of_prompt: dict[str, object] = {}
    dropped: dict[object, bool] = {}  # key -> whether it is a per-key metric item (a few dozen keys)
    for sample in samples:
        if RECORD_KEY not in sample:
            continue
        for key in [k for k in sample if dropped.get(k, True)]:
            if key not in dropped:
                dropped[key] = key != RECORD_KEY and is_our_metric(str(key))
            if dropped[key]:
                del sample[key]
        arguments = sample.get("arguments")
        if not arguments or not isinstance(arguments[0], str) or len(arguments[0]) < SHARED_PROMPT_MIN_CHARS:
            continue
        first = first_doc_of_prompt.setdefault(arguments[0], sample.get("doc_id"))
        if first != sample.get("doc_id"):
            arguments[0] = f"[same prompt as doc_id {first}]"


ANSWER_FIELDS = ("resps", "filtered_resps")
RECORD_ANSWER_FIELDS = ("stage1", "stage2")  # a ReGuide record repeats both answers it read


def bytes_beyond_answers(row: MutableMapping) -> int:
    """Bytes of one samples-file row (as lmms-eval writes it) that are not the model's answers."""
    import json

    def size(value: object) -> int:
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))

    answers = sum(size(row[key]) for key in ANSWER_FIELDS if key in row)
    record = row.get(RECORD_KEY)
    if isinstance(record, MutableMapping):
        answers += sum(size(record[key]) for key in RECORD_ANSWER_FIELDS if key in record)
    return size(row) - answers


def samples_overhead(path: str) -> tuple[int, float]:
    """(documents, mean bytes per document beyond the model's answers) of a samples file."""
    import json

    with open(path, encoding="utf-8") as handle:
        sizes = [bytes_beyond_answers(json.loads(line)) for line in handle if line.strip()]
    return len(sizes), (sum(sizes) / len(sizes) if sizes else 0.0)
