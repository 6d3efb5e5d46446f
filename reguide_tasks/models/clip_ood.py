"""``clip_ood``: CLIP OoD detection (MCM / GL-MCM / MSP / MaxLogit / Energy), zero-shot or with a
learned prompt context (CoOp), as an lmms-eval model.

It answers the baseline OoDD tasks in their own response format, so a CLIP reference number comes
out of the very same task, parser and metrics as the LVLM it is compared with::

    Prediction: <argmax ID class>
    Confidence: {'<class 1>': <v_1>, ..., '<class K>': <v_K>, 'none of these classes': 0.0}

The ID classes come from the DOCUMENT (``get_benchmark(doc["benchmark"]).classes``), never from the
prompt text, which is ignored.

Score -> per-class values (``max_k v_k`` IS the detector's score, bit-for-bit after parsing;
see :func:`reguide_tasks.models.clip_scores.class_values`):

- ``mcm``: ``v = softmax(cos / T)`` (MCM's probabilities).
- ``glmcm``: ``v = softmax(cos / T) + lambda_local * localMCM`` (one shift for every class).
- ``msp``: ``v = softmax(logits / T)``, ``logits = logit_scale * cos`` (MSP at the default T = 1).
- ``maxlogit``: ``v = logit_scale * cos`` (CLIP's logits).
- ``energy``: ``v = logits - max(logits) + T * logsumexp(logits / T)``.
- ``none of these classes`` is always ``0.0``; it is not an ID class, so it never enters S_max
  (with negative scores it can be the largest value written, which is harmless for S_max).

Numbers are written with :func:`format_number`: Python's shortest round-trip digits in positional
notation (no exponent), so ``float(text) == value`` exactly while the task's parser, which reads
``[+-]?digits[.digits]``, reads them whole.

Model args (``--model_args k=v,...``):

- ``pretrained``: a hub id or a local folder loadable by ``CLIPModel`` / ``AutoTokenizer`` /
  ``AutoImageProcessor`` (anything saved with ``save_pretrained``, fine-tuned checkpoints included).
- ``score``: ``mcm`` (default) | ``glmcm`` | ``msp`` | ``maxlogit`` | ``energy``.
- ``temperature`` (T, default 1.0, as in MCM), ``lambda_local`` (GL-MCM, default 1.0).
- ``local_features`` (GL-MCM): ``value`` (default; as the GL-MCM authors' code: the last vision
  block re-run with its attention replaced by the value path, ``h + out(v(ln1 h))`` then its MLP,
  then ``post_layernorm`` and ``visual_projection``) or ``tokens`` (the last layer's patch tokens
  through ``post_layernorm`` and ``visual_projection``).
- ``template`` (default ``a photo of a {}.``) or ``prompt_ensemble=true`` (averages the normalized
  text features of :data:`ENSEMBLE_TEMPLATES`, then renormalizes).
- ``prompt_context``: a learned CoOp-style context: the ``context.safetensors`` that
  ``reguide-clip-train`` writes (unified ``[n_ctx, H]`` or class-specific ``[K, n_ctx, H]``, with
  its training config), or a ``torch.save``-d tensor / CoOp prompt-learner checkpoint (see
  :mod:`reguide_tasks.models.clip_context`). The class text is then
  ``[SOS] ctx_1..ctx_n <class-name tokens> [EOS]`` fed as embeddings through the causal text
  encoder (:mod:`reguide_tasks.models.clip_features`). A class-specific context answers only the
  class list it was trained for. Excludes ``template`` / ``prompt_ensemble``. A context whose
  config records another CLIP (a token-embedding fingerprint that differs: ViT-B/32 and ViT-B/16
  have the same width) is refused unless ``allow_other_clip=true``.
- ``batch_size`` (images per forward, default 64; NOTE the lmms-eval CLI passes its own
  ``--batch_size``, default 1, so set that flag, e.g. ``--batch_size 64``), ``device`` (default
  ``cuda`` if available else ``cpu``), ``dtype`` (``float32`` default, ``float16``, ``bfloat16``),
  ``prefetch`` (``auto`` default = true on CUDA, false on CPU: load and preprocess the next batch of
  images in a background thread while the device works; on CPU the thread only competes for cores).

Text features are computed once per (class list, templates, context) and cached.

Why one module of this length: it is one lmms-eval model class (argument checks, text-feature cache,
batched image pipeline with prefetch, answers in the released format); the score formulas themselves
live in :mod:`reguide_tasks.models.clip_scores`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from PIL import Image
from tqdm import tqdm

from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.models.clip_context import (
    check_classes,
    check_model,
    load_context,
    text_probe,
)
from reguide_tasks.models.clip_features import (
    LOCAL_FEATURES,
    context_prompts,
    encode_texts,
    encode_with_context,
    image_features,
)
from reguide_tasks.models.clip_scores import SCORES, compute_scores, normalize
from reguide_tasks.models.model_args import reject_unknown
from reguide_tasks.vocab import REJECTION_CLASS

DEFAULT_TEMPLATE = "a photo of a {}."
ENSEMBLE_TEMPLATES = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a cropped photo of a {}.",
    "a bright photo of a {}.",
    "a low resolution photo of a {}.",
)
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}
_Item = tuple[int, Mapping[str, Any], Callable[[Mapping[str, Any]], Any]]  # (request index, doc, doc_to_visual)


def format_number(value: float) -> str:
    """Shortest round-trip digits of ``value`` without an exponent (``1e-05`` -> ``0.00001``)."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = np.format_float_positional(float(value), unique=True, trim="0")
    return text


@lru_cache(maxsize=32)
def _answer_keys(classes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"'{name}': " for name in classes)


def format_answer(classes: Sequence[str], values: Sequence[float], prediction: str) -> str:
    """The baseline answer: prediction line, then every ID class's value and the rejection class at 0.

    Built with C-level ``map`` / ``join`` (200 classes per image add up); exponents are rare and
    trigger the slower positional formatting of the whole row.
    """
    numbers = list(map(repr, map(float, values)))
    if "e" in "".join(numbers):
        numbers = list(map(format_number, values))
    pairs = ", ".join(map(str.__add__, _answer_keys(tuple(classes)), numbers))
    return f"Prediction: {prediction}\nConfidence: {{{pairs}, '{REJECTION_CLASS}': 0.0}}"


def as_bool(value: Any) -> bool:
    """lmms-eval passes 'true'/'false' as bools already; accept strings and ints too."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return bool(value)


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r} (known: {', '.join(_DTYPES)})") from None


def load_prompt_context(path: str | os.PathLike, hidden_size: int) -> torch.Tensor:
    """The context tensor saved at ``path`` (see :mod:`reguide_tasks.models.clip_context`)."""
    return load_context(path, hidden_size).ctx


def _first_image(visuals: Any) -> Image.Image:
    if not isinstance(visuals, (list, tuple)):
        visuals = [visuals]
    if not visuals:
        raise ValueError("doc_to_visual returned no image")
    image = visuals[0]
    if isinstance(image, (str, os.PathLike)):
        image = Image.open(image)
    return image.convert("RGB")


class ClipOoD(lmms):
    """CLIP zero-shot OoD reference model; see the module docstring for args and the answer format."""

    def __init__(
        self,
        pretrained: str = "openai/clip-vit-base-patch16",
        score: str = "mcm",
        temperature: float = 1.0,
        lambda_local: float = 1.0,
        local_features: str = "value",
        template: str = DEFAULT_TEMPLATE,
        prompt_ensemble: bool | str = False,
        prompt_context: str | None = None,
        allow_other_clip: bool | str = False,
        batch_size: int | str | None = 64,
        device: str | None = None,
        dtype: str | torch.dtype | None = "float32",
        prefetch: bool | str = "auto",
        max_batch_size: int | None = None,  # passed by the lmms-eval CLI; unused
        **unknown: Any,
    ) -> None:
        reject_unknown("clip_ood", unknown, self.__init__)
        super().__init__()
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.score = str(score).lower()
        if self.score not in SCORES:
            raise ValueError(f"unknown score {score!r} (known: {', '.join(SCORES)})")
        self.local_features = str(local_features).lower()
        if self.local_features not in LOCAL_FEATURES:
            raise ValueError(f"unknown local_features {local_features!r} (known: {', '.join(LOCAL_FEATURES)})")
        self.temperature = float(temperature)
        self.lambda_local = float(lambda_local)
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        ensemble = as_bool(prompt_ensemble)
        if prompt_context and (ensemble or template != DEFAULT_TEMPLATE):
            raise ValueError("prompt_context replaces the templates: do not combine it with template / prompt_ensemble")
        if "{}" not in str(template):
            raise ValueError(f"template must contain '{{}}': {template!r}")
        self.templates: tuple[str, ...] = ENSEMBLE_TEMPLATES if ensemble else (str(template),)
        self.batch_size_per_gpu = self._parse_batch_size(batch_size)

        self._rank, self._world_size = 0, 1
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:  # data parallel under `accelerate launch`: one process per GPU
            from accelerate import Accelerator

            accelerator = Accelerator()
            self._rank, self._world_size = accelerator.process_index, accelerator.num_processes
            device = f"cuda:{accelerator.local_process_index}"
        if device in (None, "", "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = torch.device(device)
        self._dtype = resolve_dtype(dtype)
        self.prefetch = self._device.type == "cuda" if str(prefetch).lower() == "auto" else as_bool(prefetch)

        self.pretrained = pretrained
        self.model = CLIPModel.from_pretrained(pretrained).to(device=self._device, dtype=self._dtype).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(pretrained)
        self.image_processor = AutoImageProcessor.from_pretrained(pretrained)
        self.logit_scale = float(self.model.logit_scale.detach().float().exp())

        text_config = self.model.config.text_config
        self.max_text_length = int(text_config.max_position_embeddings)
        self.prompt_context_path = str(prompt_context) if prompt_context else None
        self.prompt_context = load_context(prompt_context, text_config.hidden_size) if prompt_context else None
        if self.prompt_context is not None and not as_bool(allow_other_clip):
            check_model(self.prompt_context, text_probe(self.model), pretrained, self.prompt_context_path, "allow_other_clip=true")
        if self.prompt_context is not None and self.prompt_context.n_ctx + 3 > self.max_text_length:
            raise ValueError(f"{self.prompt_context.n_ctx} context vectors leave no room for a class name in {self.max_text_length} positions")

        self._text_cache: dict[tuple, torch.Tensor] = {}
        self.text_encodings = 0  # class lists encoded so far (cache misses)

    # ------------------------------------------------------------------ lmms-eval plumbing

    @staticmethod
    def _parse_batch_size(batch_size: int | str | None) -> int:
        if batch_size in (None, "", "auto") or str(batch_size).startswith("auto"):
            return 64
        value = int(batch_size)
        if value < 1:
            raise ValueError("batch_size must be >= 1")
        return value

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError("clip_ood only answers generate_until (baseline OoDD) tasks")

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("clip_ood does not support multi-round generation")

    # ------------------------------------------------------------------ text features

    def class_text_features(self, classes: Sequence[str]) -> torch.Tensor:
        """Normalized class features ``[K, D]`` (float32, on the model's device), cached per class list."""
        key = (tuple(classes), self.templates, self.prompt_context_path)
        cached = self._text_cache.get(key)
        if cached is None:
            cached = self._encode_classes(tuple(classes))
            self._text_cache[key] = cached
            self.text_encodings += 1
        return cached

    @torch.inference_mode()
    def _encode_classes(self, classes: tuple[str, ...]) -> torch.Tensor:
        if self.prompt_context is not None:
            return normalize(self._encode_with_context(classes))
        per_template = [normalize(self._encode_texts([t.format(c) for c in classes])) for t in self.templates]
        if len(per_template) == 1:
            return per_template[0]
        return normalize(torch.stack(per_template).mean(dim=0))

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Unnormalized projected text features ``[N, D]`` through the model's own text path."""
        return encode_texts(self.model, self.tokenizer, texts, self.max_text_length).float()

    def _encode_with_context(self, classes: tuple[str, ...]) -> torch.Tensor:
        """CoOp features: ``[SOS] ctx <name> [EOS]`` embeddings through the causal text encoder."""
        check_classes(self.prompt_context, classes, self.prompt_context_path)
        prompts = context_prompts(self.tokenizer, classes, self.prompt_context.n_ctx, self.max_text_length)
        return encode_with_context(self.model, prompts, self.prompt_context.ctx.to(self._dtype)).float()

    # ------------------------------------------------------------------ image features

    @torch.inference_mode()
    def image_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Projected global features ``[B, D]`` and, for GL-MCM, local features ``[B, P, D]``."""
        pixel_values = pixel_values.to(device=self._device, dtype=self._dtype, non_blocking=True)
        return image_features(self.model, pixel_values, self.local_features if self.score == "glmcm" else None)

    # ------------------------------------------------------------------ answering

    def score_images(self, pixel_values: torch.Tensor, classes: Sequence[str]):
        """:class:`reguide_tasks.models.clip_scores.ScoreOutput` of a batch of preprocessed images."""
        text = self.class_text_features(classes)
        image, patches = self.image_features(pixel_values)
        return compute_scores(self.score, image, text, patches=patches, temperature=self.temperature, lambda_local=self.lambda_local, logit_scale=self.logit_scale)

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        pixel_values = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return pixel_values.pin_memory() if self._device.type == "cuda" else pixel_values

    @staticmethod
    def doc_classes(doc: Mapping[str, Any]) -> tuple[str, ...]:
        """ID class names of a document's benchmark (KeyError / ValueError when it has none)."""
        try:
            name = doc["benchmark"]
        except (KeyError, TypeError):
            raise ValueError("clip_ood needs documents with a 'benchmark' field (the baseline OoDD tasks)") from None
        return get_benchmark(name).classes

    def _pixel_batches(self, chunks: list[list[_Item]]) -> Iterator[torch.Tensor]:
        """Preprocessed images of each chunk, in order; with ``prefetch`` the next chunk is prepared
        in a background thread while the caller works on the current one."""

        def prepare(chunk: list[_Item]) -> torch.Tensor:
            return self.preprocess([_first_image(to_visual(doc)) for _, doc, to_visual in chunk])

        if not self.prefetch:
            yield from map(prepare, chunks)
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(prepare, chunks[0]) if chunks else None
            for n in range(len(chunks)):
                pixel_values = pending.result()
                pending = pool.submit(prepare, chunks[n + 1]) if n + 1 < len(chunks) else None
                yield pixel_values

    def generate_until(self, requests: list[Instance]) -> list[str]:
        pbar = tqdm(total=len(requests), disable=(self.rank != 0), desc="Model Responding")
        # requests grouped by class list, in batches; answers go back in request order
        groups: dict[tuple[str, ...], list[_Item]] = {}
        for i, request in enumerate(requests):
            _context, _gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            groups.setdefault(self.doc_classes(doc), []).append((i, doc, doc_to_visual))
        batches = [(classes, items[s:s + self.batch_size]) for classes, items in groups.items() for s in range(0, len(items), self.batch_size)]

        responses: list[str] = [""] * len(requests)
        for (classes, chunk), pixel_values in zip(batches, self._pixel_batches([chunk for _, chunk in batches])):
            result = self.score_images(pixel_values, classes)
            for (i, _, _), row, pred in zip(chunk, result.values.tolist(), result.predictions.tolist()):
                responses[i] = format_answer(classes, row, classes[pred])
                context, gen_kwargs = requests[i].args[:2]
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), responses[i])
            pbar.update(len(chunk))
        pbar.close()
        return responses
