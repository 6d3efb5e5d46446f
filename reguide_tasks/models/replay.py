"""``reguide_replay``: answer every request from the authors' released responses (no images, no GPU).

The release (daintlab/ReGuide, MIT) keeps one folder per run: ``response/baseline/<bench>-<pct>%/
<model>/<dataset>.jsonl`` (``{prompt: {image_id: answer}}``), ``response/reguide/<bench>-<pct>%/
stage1/<model>/...`` (same format) and ``.../stage2/<model>/...`` (``{image_id: {prompt: answer}}``).
Documents are matched by normalized image path; the request's prompt says which stage it is.

Model args:
- ``responses``: the release root (the folder holding ``response/``) or its ``response/`` folder;
  default: the GPT-4o sample shipped in the package.
- ``model``: the model folder name in the release (``gpt``, ``qwen``, ...); default ``gpt``.
- ``run``: the run folder (``imagenet200-5%``); default: the one matching the task's document set,
  else every run of the benchmark (smaller subsets first).
- ``missing``: ``fail`` (default: stop before answering and say how many documents of which dataset
  have no released answer) or ``skip`` (answer them with :data:`NO_ANSWER` and log the counts: such a
  document is no answer of the model, so the task leaves it out of every metric, ``fail_rate``
  included, and counts it in ``not_in_release_<dataset>``).
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path

from lmms_eval.api.model import lmms
from loguru import logger
from tqdm import tqdm

from reguide_tasks.data.release import (
    RELEASE_DIR,
    ReleaseError,
    normalize_image_path,
    read_release_file,
)
from reguide_tasks.lmms.run_state import RUN
from reguide_tasks.lmms.task_yamls import task_variants
from reguide_tasks.models.model_args import reject_unknown
from reguide_tasks.vocab import NO_ANSWER, prompt_stage

STAGES = ("baseline", "stage1", "stage2")
MISSING_POLICIES = ("fail", "skip")
SUBSET_RUN = {"subset25": "25%", "subset5": "5%"}


class MissingAnswers(RuntimeError):
    pass


def _response_root(responses: str | Path) -> Path:
    root = Path(responses)
    if (root / "response").is_dir():
        root = root / "response"
    if not (root / "baseline").is_dir() and not (root / "reguide").is_dir():
        raise FileNotFoundError(f"{responses}: no released responses here (expected response/baseline/ or response/reguide/ inside)")
    return root


def _stage_dirs(root: Path, stage: str, run: str, model: str) -> Path:
    if stage == "baseline":
        return root / "baseline" / run / model
    return root / "reguide" / run / stage / model


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.jsonl*") if p.name.endswith((".jsonl", ".jsonl.gz")))


def _pairs(path: Path, data: object, stage: str):
    """``(image id, answer)`` of one released file, its layout checked: ReleaseError naming the key."""
    if not isinstance(data, dict):
        raise ReleaseError(f"{path}: expected one JSON object, got {type(data).__name__}")
    for outer, inner in data.items():
        if not isinstance(inner, dict):
            what = "prompt -> answer" if stage == "stage2" else "image id -> answer"
            raise ReleaseError(f"{path}: key {outer[:80]!r}: expected an object of {what}, got {type(inner).__name__}")
        for key, answer in inner.items():
            image_id = outer if stage == "stage2" else key
            if not isinstance(answer, str):
                raise ReleaseError(f"{path}: image {image_id[:120]!r}: the answer is {type(answer).__name__}, not text")
            yield image_id, answer


def _outside_root(key: str) -> bool:
    """A normalized image id that could only name a file outside the data root ('..', NUL)."""
    return ".." in key.split("/") or "\0" in key


@lru_cache(maxsize=32)
def load_answers(folder: str, stage: str) -> dict[str, str]:
    """normalized image path -> answer, for every file of one run folder. ReleaseError for a file
    of another layout or an image with two different answers; ids with '..' never match a document
    and are dropped (counted in a warning)."""
    answers: dict[str, str] = {}
    where: dict[str, Path] = {}
    outside = 0
    for path in _files(Path(folder)):
        for image_id, answer in _pairs(path, read_release_file(path), stage):
            key = normalize_image_path(image_id)
            if _outside_root(key):
                outside += 1
                continue
            if key in answers and answers[key] != answer:
                raise ReleaseError(f"{path}: image {image_id[:120]!r} has two different answers (also in {where[key].name}): a duplicated document; fix the release")
            answers.setdefault(key, answer)
            where.setdefault(key, path)
    if outside:
        logger.warning(f"reguide_replay: {outside} released answers in {folder} name an image outside the data root ('..'): ignored")
    return answers


class ReplayModel(lmms):
    needs_images = False

    def __init__(
        self,
        responses: str | None = None,
        model: str = "gpt",
        run: str = "",
        missing: str = "fail",
        batch_size: int | str | None = None,  # passed by the lmms-eval CLI; unused
        max_batch_size: int | None = None,
        device: str | None = None,
        **unknown,
    ) -> None:
        reject_unknown("reguide_replay", unknown, self.__init__)
        super().__init__()
        RUN.images_required = False
        if missing not in MISSING_POLICIES:
            raise ValueError(f"reguide_replay: missing={missing!r}; choose one of {', '.join(MISSING_POLICIES)}")
        self.root = _response_root(responses or RELEASE_DIR)
        self.model_name = model
        self.run = run
        self.missing = missing
        self._task_runs = {v.name: f"{v.benchmark}-{SUBSET_RUN[v.subset]}" for v in task_variants() if v.subset in SUBSET_RUN}
        self.missing_counts: Counter[str] = Counter()
        # Per instance, so that a long run pays each of these once rather than once per request.
        self._runs: dict[tuple[str, str], list[str]] = {}
        self._answers: dict[tuple[str, str], dict[str, str]] = {}
        self._docs: dict[tuple[str, str], tuple] = {}
        # (task, split, stage) -> released answers that name no document of the task: never scored
        self.unlisted: dict[tuple[str, str, str], int] = {}

    @property
    def device(self):
        # lmms-eval counts each rank's requests in a tensor on ``lm.device`` when world_size > 1.
        import torch

        return torch.device("cpu")

    def _runs_for(self, benchmark: str, task_name: str) -> list[str]:
        if self.run:
            return [self.run]
        if task_name in self._task_runs:
            return [self._task_runs[task_name]]
        if (benchmark, task_name) not in self._runs:
            candidates = sorted({p.name for p in (self.root / "baseline").glob(f"{benchmark}-*")} | {p.name for p in (self.root / "reguide").glob(f"{benchmark}-*")})
            self._runs[(benchmark, task_name)] = sorted(candidates, key=lambda name: float(name.rsplit("-", 1)[1].rstrip("%") or 0))
        return self._runs[(benchmark, task_name)]

    def _run_answers(self, stage: str, run: str) -> dict[str, str]:
        """The released answers of one run folder; {} when the release has no such folder."""
        if (stage, run) not in self._answers:
            folder = _stage_dirs(self.root, stage, run, self.model_name)
            self._answers[(stage, run)] = load_answers(str(folder), stage) if folder.is_dir() else {}
        return self._answers[(stage, run)]

    def lookup(self, doc: dict, stage: str, task_name: str) -> str | None:
        for run in self._runs_for(doc["benchmark"], task_name):
            answer = self._run_answers(stage, run).get(doc["doc_key"])
            if answer is not None:
                return answer
        return None

    def _doc(self, task: str, split: str, doc_id: int) -> dict:
        """The fields a lookup needs, read column by column once per task split: decoding one Arrow
        row per request (~50 us) cost more than the lookup itself."""
        docs = self.task_dict[task][split]
        cached = self._docs.get((task, split))
        if cached is None or cached[0] is not docs:
            names = ("doc_key", "benchmark", "dataset")
            if hasattr(docs, "select_columns"):  # a datasets.Dataset: one batch read (iterating a column decodes row by row)
                columns = docs.select_columns(list(names))[:]
                rows = [dict(zip(names, values)) for values in zip(*(columns[name] for name in names))]
            else:
                rows = docs
            cached = self._docs[(task, split)] = (docs, rows)
        return cached[1][doc_id]

    def generate_until(self, requests) -> list[str]:
        found: list[str | None] = []
        missing: Counter[str] = Counter()
        for request in tqdm(requests, disable=self.rank != 0, desc="Replaying released answers"):
            context, _kwargs, _to_visual, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            stage = prompt_stage(context)
            if (task, split, stage) not in self.unlisted:
                self._count_unlisted(task, split, stage, doc["benchmark"])
            answer = self.lookup(doc, stage, task)
            if answer is None:
                missing[f"{stage}/{doc['dataset']}"] += 1
            found.append(answer)
        if missing:
            summary = ", ".join(f"{key}: {n}" for key, n in sorted(missing.items()))
            total = sum(missing.values())
            if self.missing == "fail":
                raise MissingAnswers(
                    f"reguide_replay: {total} of {len(requests)} requests have no released answer in {self.root} "
                    f"(model {self.model_name}; {summary}). Point responses= at a release holding them, or pass missing=skip to leave them out of the metrics (counted as not_in_release_<dataset>)."
                )
            logger.warning(f"reguide_replay: {total} of {len(requests)} requests have no released answer ({summary}); left out of every metric and counted as not_in_release_<dataset> (missing=skip)")
            self.missing_counts.update(missing)
        return [answer if answer is not None else NO_ANSWER for answer in found]

    def _count_unlisted(self, task: str, split: str, stage: str, benchmark: str) -> None:
        """Count (and log once) the released answers of the runs this task reads that name an image
        not in its document list: they answer no request, so no metric sees them. Expected when the
        task is a subset of the release's run or --limit is given; a sign of the wrong run otherwise."""
        listed = {row["doc_key"] for row in self._docs[(task, split)][1]}
        runs = self._runs_for(benchmark, task)
        released = set().union(*(self._run_answers(stage, run) for run in runs))
        self.unlisted[(task, split, stage)] = n = len(released - listed)
        if n and self.rank == 0:
            logger.info(f"reguide_replay: {n} of the {len(released)} released {stage} answers in {', '.join(runs)} (model {self.model_name}) "
                        f"name images not in {task}'s {len(listed)} documents: ignored, no metric reads them")

    def loglikelihood(self, requests):
        raise NotImplementedError("reguide_replay only replays generated answers")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("reguide_replay answers generate_until (and agentic rounds) only")
