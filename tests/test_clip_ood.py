"""clip_ood: answers parse back to the detector's score; CoOp context; text-feature cache; scores."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything below is built locally

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from lmms_eval.api.instance import Instance
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

from reguide_tasks.answers.parsing import parse_answer
from reguide_tasks.answers.scoring import score_max_id
from reguide_tasks.data.benchmarks import get_benchmark
from reguide_tasks.models import clip_scores as cs
from reguide_tasks.models.clip_ood import (
    ENSEMBLE_TEMPLATES,
    ClipOoD,
    format_answer,
    format_number,
    load_prompt_context,
)
from reguide_tasks.testing.tiny_clip import build_tiny_clip
from reguide_tasks.vocab import REJECTION_CLASS

CIFAR = get_benchmark("cifar10").classes
IN200 = get_benchmark("imagenet200").classes
TASK, SPLIT = "fake_task", "test"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are too small for intra-op threads (they only add contention)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    texts = [*CIFAR, *IN200, *ENSEMBLE_TEMPLATES, "a photo of a {}"]
    return str(build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), texts))


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    """7 CIFAR-10 and 4 ImageNet200 documents, interleaved, each holding a random image."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(11):
        bench = "imagenet200" if i % 3 == 1 else "cifar10"
        pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        out.append({"doc_key": f"d{i}", "benchmark": bench, "dataset": bench, "role": "id", "pixels": pixels})
    return out


def doc_to_visual(doc: dict) -> list[Image.Image]:
    return [Image.fromarray(doc["pixels"])]


def run(model: ClipOoD, docs: list[dict]) -> list[str]:
    model.task_dict = {TASK: {SPLIT: docs}}
    requests = [
        Instance("generate_until", ("<prompt>", {"max_new_tokens": 8}, doc_to_visual, i, TASK, SPLIT), idx=0, metadata={"task": TASK, "doc_id": i, "repeats": 1})
        for i in range(len(docs))
    ]
    return model.generate_until(requests)


def parsed_scores(answers: list[str], docs: list[dict]) -> tuple[list[float], list[str]]:
    scores, predictions = [], []
    for answer, doc in zip(answers, docs):
        classes = get_benchmark(doc["benchmark"]).classes
        parsed = parse_answer(answer, (*classes, REJECTION_CLASS))
        assert parsed.status == "ok", (parsed.reason, answer[:200])
        assert parsed.confidences[REJECTION_CLASS] == 0.0
        scores.append(score_max_id(parsed.confidences, classes))
        predictions.append(parsed.prediction)
    return scores, predictions


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


@torch.inference_mode()
def direct(path: str, docs: list[dict], score: str, temperature: float = 1.0, lambda_local: float = 1.0,
           local: str = "value", templates: tuple[str, ...] = ("a photo of a {}.",)) -> tuple[list[float], list[str]]:
    """Scores and predictions from plain ``CLIPModel.forward`` calls, one image at a time (the reference)."""
    model = CLIPModel.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    processor = AutoImageProcessor.from_pretrained(path)
    scale = model.logit_scale.exp()
    probe = tokenizer(["a photo of a cat."], return_tensors="pt")
    text_cache: dict[tuple[str, ...], torch.Tensor] = {}
    scores, predictions = [], []
    for doc in docs:
        classes = get_benchmark(doc["benchmark"]).classes
        pixel_values = processor(images=doc_to_visual(doc), return_tensors="pt")["pixel_values"]
        if classes not in text_cache:  # text_embeds of the forward are normalized; average, renormalize
            per_template = []
            for template in templates:
                tok = tokenizer([template.format(c) for c in classes], padding=True, return_tensors="pt")
                per_template.append(model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=pixel_values).text_embeds)
            text_cache[classes] = _unit(torch.stack(per_template).mean(0))
        text_features = text_cache[classes]
        out = model(input_ids=probe["input_ids"], pixel_values=pixel_values, output_hidden_states=True)
        cos = out.image_embeds @ text_features.T
        if score == "mcm":
            value = torch.softmax(cos / temperature, -1).max()
        elif score == "msp":
            value = torch.softmax(scale * cos / temperature, -1).max()
        elif score == "maxlogit":
            value = (scale * cos).max()
        elif score == "energy":
            value = temperature * torch.logsumexp(scale * cos / temperature, -1)[0]
        else:
            vision = out.vision_model_output
            if local == "tokens":
                tokens = vision.last_hidden_state[:, 1:]
            else:  # GL-MCM: last block with attention replaced by its value path
                layer = model.vision_model.encoder.layers[-1]
                h = vision.hidden_states[-2]
                h = h + layer.self_attn.out_proj(layer.self_attn.v_proj(layer.layer_norm1(h)))
                tokens = (h + layer.mlp(layer.layer_norm2(h)))[:, 1:]
            patches = _unit(model.visual_projection(model.vision_model.post_layernorm(tokens)))
            local_mcm = torch.softmax(patches @ text_features.T / temperature, -1).max()
            value = torch.softmax(cos / temperature, -1).max() + lambda_local * local_mcm
        scores.append(float(value))
        predictions.append(classes[int(cos.argmax())])
    return scores, predictions


CONFIGS = [
    dict(score="mcm"),
    dict(score="mcm", temperature=0.01),
    dict(score="glmcm"),
    dict(score="glmcm", local_features="tokens", lambda_local=0.5, temperature=0.1),
    dict(score="msp"),
    dict(score="maxlogit"),
    dict(score="energy", temperature=2.0),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_parsed_answers_equal_direct_computation(clip_dir: str, docs: list[dict], config: dict) -> None:
    model = ClipOoD(pretrained=clip_dir, batch_size=3, device="cpu", prefetch=config["score"] != "maxlogit", **config)
    answers = run(model, docs)
    scores, predictions = parsed_scores(answers, docs)
    want_scores, want_predictions = direct(clip_dir, docs, config["score"], config.get("temperature", 1.0), config.get("lambda_local", 1.0), config.get("local_features", "value"))
    assert scores == pytest.approx(want_scores, abs=1e-5, rel=0)
    assert predictions == want_predictions
    # and EXACTLY the model's own float32 scores (the text round-trips)
    for doc, parsed_score in zip(docs, scores):
        pixels = model.preprocess(doc_to_visual(doc))
        own = model.score_images(pixels, get_benchmark(doc["benchmark"]).classes).scores
        assert parsed_score == pytest.approx(float(own[0]), abs=1e-5)  # batch of 3 vs 1: float noise
    assert len(set(scores)) > 1  # not a constant answer
    if config["score"] in ("maxlogit", "energy"):
        assert any(a.count("'") == 2 * 11 and "Confidence: {" in a for a in answers)  # CIFAR answers: 10 classes + rejection


def test_parsed_scores_are_bit_exact(clip_dir: str, docs: list[dict]) -> None:
    """Batch of one through generate_until == the float32 score of the same batch, bit for bit."""
    for score in ("mcm", "glmcm", "energy"):
        model = ClipOoD(pretrained=clip_dir, score=score, batch_size=1, device="cpu", temperature=0.05)
        doc = docs[0]
        (answer,) = run(model, [doc])
        own = model.score_images(model.preprocess(doc_to_visual(doc)), CIFAR).scores
        assert score_max_id(parse_answer(answer, (*CIFAR, REJECTION_CLASS)).confidences, CIFAR) == float(own[0])


def test_prompt_ensemble_matches_direct(clip_dir: str, docs: list[dict]) -> None:
    model = ClipOoD(pretrained=clip_dir, prompt_ensemble="true", device="cpu", temperature=0.05)
    scores, predictions = parsed_scores(run(model, docs), docs)
    want_scores, want_predictions = direct(clip_dir, docs, "mcm", temperature=0.05, templates=ENSEMBLE_TEMPLATES)
    assert scores == pytest.approx(want_scores, abs=1e-5, rel=0)
    assert predictions == want_predictions
    single = parsed_scores(run(ClipOoD(pretrained=clip_dir, device="cpu", temperature=0.05), docs), docs)[0]
    assert max(abs(a - b) for a, b in zip(scores, single)) > 1e-4


def _template_context(clip_dir: str, words: str) -> torch.Tensor:
    """The token embeddings of ``words``: as context vectors they must reproduce the template."""
    model = CLIPModel.from_pretrained(clip_dir)
    ids = AutoTokenizer.from_pretrained(clip_dir)(words, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    return model.text_model.embeddings.token_embedding(ids).detach().clone()


def test_prompt_context_reproduces_template_and_changes_scores(clip_dir: str, docs: list[dict], tmp_path: Path) -> None:
    ctx = _template_context(clip_dir, "a photo of a")
    assert ctx.shape == (4, 32)
    torch.save(ctx, tmp_path / "ctx.pt")
    torch.save({"state_dict": {"ctx": ctx, "token_prefix": torch.zeros(1)}, "epoch": 50}, tmp_path / "coop.pth")
    torch.save(torch.randn(4, 32) * 0.5, tmp_path / "random.pt")

    reference = parsed_scores(run(ClipOoD(pretrained=clip_dir, template="a photo of a {}", device="cpu", temperature=0.05), docs), docs)
    via_context = parsed_scores(run(ClipOoD(pretrained=clip_dir, prompt_context=str(tmp_path / "ctx.pt"), device="cpu", temperature=0.05), docs), docs)
    assert via_context[0] == pytest.approx(reference[0], abs=1e-5, rel=0)
    assert via_context[1] == reference[1]
    via_coop = parsed_scores(run(ClipOoD(pretrained=clip_dir, prompt_context=str(tmp_path / "coop.pth"), device="cpu", temperature=0.05), docs), docs)
    assert via_coop == via_context

    learned = ClipOoD(pretrained=clip_dir, prompt_context=str(tmp_path / "random.pt"), device="cpu", temperature=0.05)
    changed = parsed_scores(run(learned, docs), docs)[0]
    assert max(abs(a - b) for a, b in zip(changed, reference[0])) > 1e-3


def test_prompt_context_checks(clip_dir: str, tmp_path: Path) -> None:
    torch.save(torch.zeros(4, 31), tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"\[n_ctx, 32\]"):
        load_prompt_context(tmp_path / "bad.pt", 32)
    torch.save({"weights": torch.zeros(4, 32)}, tmp_path / "nokey.pt")
    with pytest.raises(ValueError, match="'ctx'"):
        load_prompt_context(tmp_path / "nokey.pt", 32)
    torch.save(torch.zeros(4, 32), tmp_path / "ok.pt")
    with pytest.raises(ValueError, match="replaces the templates"):
        ClipOoD(pretrained=clip_dir, prompt_context=str(tmp_path / "ok.pt"), prompt_ensemble=True, device="cpu")


def test_text_features_cached_per_class_list(clip_dir: str, docs: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    model = ClipOoD(pretrained=clip_dir, device="cpu", batch_size=2)
    calls: list[tuple[str, ...]] = []
    original = model._encode_classes
    monkeypatch.setattr(model, "_encode_classes", lambda classes: calls.append(classes) or original(classes))
    first = run(model, docs)
    assert sorted(calls) == sorted([CIFAR, IN200])  # one encoding per class list, not per batch
    assert run(model, docs) == first
    assert len(calls) == 2 and model.text_encodings == 2


def test_answer_format_round_trips_through_parser() -> None:
    classes = ("cat", "dog", "hen", "ship", "truck", "goldfish", "ant")
    values = [-3.5, 1e-05, 1e-30, 123456.789, 0.1 + 0.2, -2.5e-7, 7.0]
    answer = format_answer(classes, values, "cat")
    assert "e-" not in answer and "e+" not in answer
    parsed = parse_answer(answer, (*classes, REJECTION_CLASS))
    assert parsed.status == "ok" and parsed.prediction == "cat"
    assert [parsed.confidences[c] for c in classes] == values  # exact, not approximate
    assert score_max_id(parsed.confidences, classes) == 123456.789
    assert format_number(1e22) == "10000000000000000000000.0" and float(format_number(5e-324)) == 5e-324


def test_rejects_what_it_cannot_answer(clip_dir: str, docs: list[dict]) -> None:
    model = ClipOoD(pretrained=clip_dir, device="cpu")
    with pytest.raises(ValueError, match="benchmark"):
        run(model, [{"pixels": docs[0]["pixels"]}])
    with pytest.raises(NotImplementedError):
        model.loglikelihood([])
    with pytest.raises(NotImplementedError):
        model.generate_until_multi_round([])
    with pytest.raises(ValueError, match="unknown score"):
        ClipOoD(pretrained=clip_dir, score="odin", device="cpu")
    with pytest.raises(TypeError, match="unknown model args"):
        ClipOoD(pretrained=clip_dir, device="cpu", temprature=2)
    assert run(model, []) == []


def test_create_from_arg_string(clip_dir: str) -> None:
    model = ClipOoD.create_from_arg_string(
        f"pretrained={clip_dir},score=glmcm,temperature=0.5,lambda_local=2,prompt_ensemble=true,dtype=float32,prefetch=false",
        {"batch_size": "16", "max_batch_size": None, "device": "cpu"},
    )
    assert (model.score, model.temperature, model.lambda_local, model.batch_size) == ("glmcm", 0.5, 2.0, 16)
    assert model.templates == ENSEMBLE_TEMPLATES and model.prefetch is False and model.device.type == "cpu"
    assert (model.rank, model.world_size) == (0, 1)


def test_bfloat16_weights_still_answer(clip_dir: str, docs: list[dict]) -> None:
    half = parsed_scores(run(ClipOoD(pretrained=clip_dir, dtype="bfloat16", device="cpu", score="glmcm"), docs), docs)[0]
    full = parsed_scores(run(ClipOoD(pretrained=clip_dir, device="cpu", score="glmcm"), docs), docs)[0]
    assert half == pytest.approx(full, abs=0.05)


# ---------------------------------------------------------------- clip_scores on random features

@pytest.fixture(scope="module")
def features() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 8, generator=g), torch.randn(16, 5, 8, generator=g), torch.randn(6, 8, generator=g)


@pytest.mark.parametrize("score", cs.SCORES)
def test_class_values_max_is_the_score_exactly(features, score: str) -> None:
    image, patches, text = features
    kw = dict(temperature=0.3, logit_scale=50.0)
    out = cs.compute_scores(score, image, text, patches=patches, lambda_local=0.7, **kw)
    expected = {
        "mcm": lambda: cs.mcm_score(image, text, 0.3),
        "glmcm": lambda: cs.glmcm_score(image, patches, text, 0.3, 0.7),
        "msp": lambda: cs.msp_score(image, text, 50.0, 0.3),
        "maxlogit": lambda: cs.maxlogit_score(image, text, 50.0),
        "energy": lambda: cs.energy_score(image, text, 50.0, 0.3),
    }[score]()
    assert torch.equal(out.values.amax(-1), expected)
    assert torch.equal(out.scores, expected)
    assert torch.equal(out.predictions, cs.cosine(image, text).argmax(-1))


def test_score_formulas(features) -> None:
    image, patches, text = features
    cos = (image / image.norm(dim=1, keepdim=True)).double() @ (text / text.norm(dim=1, keepdim=True)).double().T
    assert cs.cosine(image, text).double() == pytest.approx(cos, abs=1e-6)
    probs = np.exp(cos.numpy() / 0.5) / np.exp(cos.numpy() / 0.5).sum(1, keepdims=True)
    assert cs.mcm_score(image, text, 0.5).numpy() == pytest.approx(probs.max(1), abs=1e-6)
    energy = [2.0 * math.log(sum(math.exp(20.0 * c / 2.0) for c in row)) for row in cos.tolist()]
    assert cs.energy_score(image, text, 20.0, 2.0).tolist() == pytest.approx(energy, abs=1e-4)
    # local MCM: each patch's softmax over classes, then the max over patches and classes
    per_patch = torch.stack([cs.mcm_score(patches[:, p], text, 0.5) for p in range(patches.shape[1])], 1)
    assert torch.allclose(cs.local_mcm_score(patches, text, 0.5), per_patch.amax(1))
    # T=1 on cosines in [-1, 1] caps MCM at e / (e + (K-1) / e): near uniform, as in the MCM paper
    assert float(cs.mcm_score(image, text, 1.0).max()) <= math.e / (math.e + 5 / math.e)
    with pytest.raises(ValueError):
        cs.compute_scores("glmcm", image, text)
    with pytest.raises(ValueError):
        cs.compute_scores("odin", image, text)


def test_msp_by_hand_and_where_it_ranks_unlike_mcm() -> None:
    """MSP = max softmax(logit_scale * cos) (T = 1); MCM = max softmax(cos / T), T = 1 as in the MCM paper."""
    # class k's feature is the k-th axis of 5; a unit image's first 4 coordinates are its cosines
    text = torch.eye(4, 5)
    # image A: two classes nearly tied, both fairly close; image B: one class ahead, the rest equal
    wanted = torch.tensor([[0.6, 0.5, 0.0, 0.0], [0.4, 0.1, 0.1, 0.1]], dtype=torch.float64)
    image = torch.cat([wanted, (1 - wanted.pow(2).sum(1, keepdim=True)).sqrt()], 1).float()
    cos = cs.cosine(image, text).double()
    assert cos == pytest.approx(wanted, abs=1e-6)
    msp = cs.msp_score(image, text, logit_scale=10.0).double()
    by_hand = [math.exp(10 * c[0]) / sum(math.exp(10 * x) for x in c) for c in cos.tolist()]
    assert msp.tolist() == pytest.approx(by_hand, abs=1e-6)
    # on fixed logits: softmax([3, 1, 0, 0]) max = e^3 / (e^3 + e + 2)
    logits_image = torch.tensor([[3.0, 1.0, 0.0, 0.0]])
    assert float(cs.msp_score(logits_image, torch.eye(4), logit_scale=float(logits_image.norm()))) == pytest.approx(math.e**3 / (math.e**3 + math.e + 2), abs=1e-6)
    mcm = cs.mcm_score(image, text, temperature=1.0)
    e = math.exp
    assert mcm.tolist() == pytest.approx([e(.6) / (e(.6) + e(.5) + 2), e(.4) / (e(.4) + 3 * e(.1))], abs=1e-6)  # 0.333, 0.310
    assert msp.tolist() == pytest.approx([e(6) / (e(6) + e(5) + 2), e(4) / (e(4) + 3 * e(1))], abs=1e-6)  # 0.728, 0.870
    assert mcm[0] > mcm[1]  # MCM(T=1) ~ how far the best cosine sits above the mean: A first
    assert msp[1] > msp[0]  # MSP ~ the margin of the best class over the runner-up: B first
    # MSP is MCM at temperature T / logit_scale
    assert torch.allclose(cs.msp_score(image, text, logit_scale=10.0), cs.mcm_score(image, text, temperature=0.1))
    out = cs.compute_scores("msp", image, text, logit_scale=10.0)
    assert torch.equal(out.scores, cs.msp_score(image, text, logit_scale=10.0))
