"""``reguide_scripted``: a deterministic lmms-eval model whose OoDD metrics are known exactly.

It answers every prompt of our tasks in the authors' format from the document alone (no weights; it
opens each request's images as a real model would, but ignores their content): the ID confidence of a document is
:func:`scripted_score`, a hash of its key, higher on ID than on OoD documents with overlap, so tests
can compute the expected AUROC / FPR with scikit-learn and compare. Stage 1 returns 40 suggestions
(two of them ID classes and one duplicate, which filtering must drop); stage 2 lowers OoD scores.

Model args: ``fail_every`` (every k-th document by hash answers a refusal; 0 = never),
``call_latency`` / ``item_latency`` (seconds slept per ``generate_until`` call and per request: a
stand-in for a batched backend's cost, used by ``bench/``; the per-request part is slept request by
request), ``log_calls`` (a file path: one line ``task<TAB>doc_id<TAB>stage<TAB>prompt hash`` is
appended per answered request, so tests count model calls across processes and restarts; the hash
is lmms-eval's response-cache content hash, sha256 of the prompt, 16 hex digits).
"""

from __future__ import annotations

import ast
import hashlib
import time
import zlib
from collections.abc import Mapping, Sequence

import torch
from lmms_eval.api.model import lmms
from tqdm import tqdm

from reguide_tasks.data.benchmarks import ID_ROLES, get_benchmark
from reguide_tasks.models.model_args import reject_unknown
from reguide_tasks.vocab import REJECTION_CLASS, prompt_stage

NEAR_SUGGESTIONS = tuple(f"scripted lookalike {i}" for i in range(1, 19))
FAR_SUGGESTIONS = tuple(f"scripted faraway {i}" for i in range(1, 20))
REFUSAL = "I'm sorry, I can't help with that."


def _hash(doc_key: str) -> int:
    return zlib.crc32(doc_key.encode("utf-8"))


def scripted_score(doc_key: str, role: str, stage: str = "baseline") -> float:
    """The max ID confidence the scripted model gives a document (a multiple of 0.1)."""
    in_distribution = role in ID_ROLES  # a covariate-shifted ID image is ID
    base = 50.0 if in_distribution else 10.0
    score = base + (_hash(doc_key) % 500) / 10.0
    if stage == "stage2" and not in_distribution:
        score = round(score / 2, 1)
    return score


def scripted_fails(doc_key: str, fail_every: int) -> bool:
    return fail_every > 0 and (_hash(doc_key) // 7) % fail_every == 0


def scripted_suggestions(id_classes: Sequence[str]) -> list[str]:
    """18 near + an ID class + a duplicate, then 19 far + another ID class: 40 items, 37 survive filtering."""
    return [*NEAR_SUGGESTIONS, id_classes[0], NEAR_SUGGESTIONS[0], *FAR_SUGGESTIONS, id_classes[-1].upper()]


def _options_of(prompt: str) -> list[str]:
    start = prompt.index("[")
    end = prompt.index("] and assign", start)
    return list(ast.literal_eval(prompt[start : end + 1]))


def _classification_answer(doc: Mapping, options: Sequence[str], score: float, aux: Sequence[str]) -> str:
    id_classes = get_benchmark(doc["benchmark"]).classes
    top = doc["label_name"] if doc["role"] in ID_ROLES else id_classes[0]
    confidences = {name: 0.0 for name in options}
    confidences[top] = score
    if aux and doc["role"] not in ID_ROLES:
        confidences[aux[0]] = 90.0
    confidences[REJECTION_CLASS] = round(100.0 - score, 1)
    prediction = max(confidences, key=lambda name: confidences[name])
    body = ", ".join(f"{name!r}: {value}" for name, value in confidences.items())  # "Geoffroy's spider monkey" as Python writes it
    return f"Prediction: {prediction}\nConfidence: {{{body}}}"


def content_hash(context: str) -> str:
    """lmms-eval's response-cache content hash of a prompt (sha256, first 16 hex digits)."""
    return hashlib.sha256(context.encode("utf-8")).hexdigest()[:16]


class ScriptedOoDModel(lmms):
    def __init__(
        self,
        fail_every: int | str = 0,
        call_latency: float | str = 0.0,
        item_latency: float | str = 0.0,
        log_calls: str = "",
        batch_size: int | str | None = None,  # passed by the lmms-eval CLI; unused
        max_batch_size: int | None = None,
        device: str | None = None,
        **unknown,
    ) -> None:
        reject_unknown("reguide_scripted", unknown, self.__init__)
        super().__init__()
        self.fail_every = int(fail_every)
        self.call_latency = float(call_latency)
        self.item_latency = float(item_latency)
        self.log_calls = str(log_calls or "")
        self.calls = 0
        self.requests_seen = 0

    @property
    def device(self) -> torch.device:
        # lmms-eval counts each rank's requests in a tensor on ``lm.device`` when world_size > 1.
        return torch.device("cpu")

    def answer(self, context: str, doc: Mapping) -> str:
        if scripted_fails(doc["doc_key"], self.fail_every):
            return REFUSAL
        id_classes = get_benchmark(doc["benchmark"]).classes
        stage = prompt_stage(context)
        if stage == "stage1":
            return "Class suggested: " + ", ".join(scripted_suggestions(id_classes))
        options = _options_of(context)
        aux = [name for name in options[len(id_classes) : -1]]
        return _classification_answer(doc, options, scripted_score(doc["doc_key"], doc["role"], stage), aux)

    def _log(self, context: str, doc: Mapping, doc_id: int, task: str) -> None:
        stage = prompt_stage(context)
        # One short write per line in append mode: lines of concurrent ranks do not interleave.
        with open(self.log_calls, "a", encoding="utf-8") as handle:
            handle.write(f"{task}\t{doc_id}\t{stage}\t{content_hash(context)}\n")

    def generate_until(self, requests) -> list[str]:
        self.calls += 1
        self.requests_seen += len(requests)
        time.sleep(self.call_latency)
        answers = []
        for request in tqdm(requests, disable=self.rank != 0 or len(requests) < 2, desc="Scripted answers"):
            context, _gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            doc_to_visual(doc)  # open the images as a real model would: bad files surface here
            if self.item_latency:
                time.sleep(self.item_latency)
            answers.append(self.answer(context, doc))
            if self.log_calls:
                self._log(context, doc, doc_id, task)
        return answers

    def loglikelihood(self, requests):
        raise NotImplementedError("reguide_scripted only generates text")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("reguide_scripted answers generate_until (and agentic rounds) only")
