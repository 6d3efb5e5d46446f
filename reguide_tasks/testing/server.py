"""A small deterministic OpenAI-compatible server answering our OoDD prompts, with fault injection.

For tests and for trying the harness against a served backend without a GPU::

    python -m reguide_tasks.testing.server --port 0 --quality 0.8 --fault status:429,first=3,retry_after_ms=1
    OPENAI_API_KEY=EMPTY reguide-eval --model openai --model_args model=reguide-testing,base_url=http://127.0.0.1:PORT/v1 ...

Endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``; loopback only (127.0.0.1).

Answers. The text of the last user message decides the stage (:func:`reguide_tasks.vocab.prompt_stage`): stage 1
(contains ``"class names based on the given image"``) gets 40 suggestions (as ``reguide_scripted``:
two ID classes and a duplicate that filtering must drop); stage 2 (contains
``"'your confidence'"``) and the baseline prompt get ``Prediction: ...\\nConfidence: {...}`` over the
class list parsed from the prompt.

What the classification answers mean. The fixture images (:mod:`reguide_tasks.testing.fixtures`)
carry their label as a code of black and white cells (:mod:`reguide_tasks.testing.label_code`:
ID / near / far, dataset, ID class, fixture index), drawn in the pixels because lmms-eval re-encodes
every image it sends. The server reads it back and answers like a model of quality ``q``
(``--quality``, :class:`OoDDTestServer` ``quality``; default :data:`DEFAULT_QUALITY` = 0.8), with
draws seeded by the code, so reruns are identical (:func:`graded_confidences`):

- an ID image is right when its :func:`difficulty` is below ``q`` (a share q of the images): the
  true class at 85-99.9; else a wrong ID class at 35-60 (the true one half the rest);
- an OoD image is caught when its difficulty is below ``q``: an ID class at 5-30 and the rest to
  the rejection class, which wins; else it is fooled: an ID class at 62-84;
- in ReGuide's stage 2 the auxiliary (suggested) classes take the rest instead of the rejection
  class, and they also catch :data:`GUIDANCE` (half) of the OoD images the baseline is fooled by.

The ranges are disjoint, so ``q = 1`` gives ID accuracy 100 and AUROC 100 on every OoD set, ``q = 0``
gives 0, and in between every right answer outranks every wrong one; ReGuide is never below the
baseline, and above it on a dataset where it catches an image that outranked an ID one.
The default is noisy rather than perfect so that a demo run looks like a model, with ReGuide and the
baseline apart; ``--quality 1`` checks the pipeline (everything 100).

An image without a code (not a fixture, or too small to read) gets scores from the SHA-256 of the
first image's bytes (base64 data URL; the text when there is no image): :func:`image_score`, a
multiple of 0.1 in [0, 99.9], so different images get different, reproducible but meaningless
scores; stage 2 gives the first auxiliary class ``100 - score``.

Faults (:class:`Fault`, or a spec string for :func:`parse_fault` / ``--fault``): each rule counts
the requests it sees (optionally of one ``stage``); with ``m = n - after`` for the rule's n-th
request (1-based), it is faulted when ``m >= 1`` and (``m <= first`` or ``m % every == 0``; neither
given: always). ``per="image"`` counts distinct images instead, in order of first arrival, so the
same documents fail on every retry (a persistent fault; ``after`` lets several such rules share a
stage without overlapping). ``attempts=k`` (with ``per="image"``) faults only the first ``k``
attempts of each chosen image, so its retry is answered: a transient fault on a known document,
whatever order concurrent requests arrive in. The first matching rule wins; every rule's counter
advances on every request it sees.
Kinds: ``status`` (HTTP ``status`` with an OpenAI-style error body; ``retry_after_ms`` adds a
``retry-after-ms`` header, which the openai SDK obeys; ``retry_after_s`` a standard ``Retry-After``
header in seconds), ``sleep`` (wait ``seconds`` before a normal
answer: longer than the client timeout = a timeout), ``malformed`` (HTTP 200, truncated JSON body),
``empty`` (content ``""``), ``null`` (content ``null``), ``drop`` (close the connection without a
response), ``refusal`` (a well-formed refusal text), ``reset`` (HTTP 200 headers and half the body,
then a TCP reset: a connection reset mid-body).

Counters on the server object (thread-safe snapshots): ``requests`` per stage (every attempt),
``answered`` per stage (requests no fault was injected into; a ``sleep`` fault's late answer counts
under ``faults``), ``faults`` per kind, ``max_in_flight``, and ``log`` (one :class:`RequestLog` per
chat request, with monotonic start / end times, the label code read and the score sent).

Why one module of this length: a test server is only useful whole (reading a request, answering like a
model, injecting faults, counting), and tests start it as one ``python -m`` command.
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reguide_tasks.data.benchmarks import BENCHMARKS, get_benchmark
from reguide_tasks.testing.label_code import LabelCode, read_label_code
from reguide_tasks.vocab import REJECTION_CLASS, prompt_stage

HOST = "127.0.0.1"
DEFAULT_MODEL = "reguide-testing"
STAGES = ("baseline", "stage1", "stage2")
CLASS_LIST_MARK = "classes: "
EXCLUDED_MARK = "Do not provide the following category names as your suggestions: "
FAULT_KINDS = ("status", "sleep", "malformed", "empty", "null", "drop", "refusal", "reset")
MAX_BODY_BYTES = 64 * 1024 * 1024
REFUSAL = "I'm sorry, I can't help with that."
NEAR_SUGGESTIONS = tuple(f"served lookalike {i}" for i in range(1, 19))
FAR_SUGGESTIONS = tuple(f"served faraway {i}" for i in range(1, 20))
DEFAULT_QUALITY = 0.8
GUIDANCE = 0.5  # the share of the OoD images the baseline prompt is fooled by that auxiliary classes catch
GOLDEN = (5**0.5 - 1) / 2
# The max ID confidence of each outcome. Disjoint: every right answer outranks every wrong one, so q = 1
# separates ID from OoD perfectly, and a fooled OoD image outranks a misread ID image.
SCORE_RANGES = {"id_right": (85.0, 99.9), "ood_fooled": (62.0, 84.0), "id_wrong": (35.0, 60.0), "ood_caught": (5.0, 30.0)}


# ---------------------------------------------------------------- reading a request
def prompt_classes(text: str) -> list[str]:
    """The class list of a classification prompt: the ``[...]`` after "one of these N classes: "."""
    start = text.find("[", text.find(CLASS_LIST_MARK))
    end = text.find("]", start)
    while start >= 0 and end > start:  # a class name could contain ']': extend until it parses
        try:
            value = ast.literal_eval(text[start : end + 1])
        except (ValueError, SyntaxError):
            end = text.find("]", end + 1)
            continue
        if isinstance(value, list) and all(isinstance(name, str) for name in value):
            return value
        break
    raise ValueError("no class list in the prompt")


def _known_id_classes(names: Sequence[str]) -> tuple[str, ...] | None:
    for name in sorted(BENCHMARKS):
        classes = get_benchmark(name).classes
        if tuple(names[: len(classes)]) == tuple(classes):
            return tuple(classes)
    return None


def stage1_id_classes(text: str) -> list[str]:
    """The ID classes a stage-1 prompt forbids (a known benchmark's list when it matches exactly)."""
    for name in sorted(BENCHMARKS):
        classes = get_benchmark(name).classes
        if EXCLUDED_MARK + ", ".join(classes) in text:
            return list(classes)
    start = text.find(EXCLUDED_MARK)
    if start < 0:
        return ["object"]
    line = text[start + len(EXCLUDED_MARK) :].split("\n", 1)[0].rstrip(".")
    return [name.strip() for name in line.split(", ") if name.strip()] or ["object"]


def message_parts(body: Mapping[str, Any]) -> tuple[str, list[bytes]]:
    """Text and decoded image bytes of the last user message (an http(s) image URL counts as its bytes)."""
    messages = body.get("messages") or []
    users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
    if not users:
        return "", []
    content = users[-1].get("content")
    if isinstance(content, str):
        return content, []
    texts, images = [], []
    for part in content or []:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            url = part.get("image_url", {})
            url = url.get("url", "") if isinstance(url, Mapping) else str(url)
            header, _, data = url.partition(",")
            images.append(base64.b64decode(data) if header.startswith("data:") and ";base64" in header else url.encode())
    return "".join(texts), images


def digest_of(text: str, images: Sequence[bytes]) -> str:
    return hashlib.sha256(images[0] if images else text.encode("utf-8")).hexdigest()


def image_score(digest: str) -> float:
    """The ID confidence for an image digest: a multiple of 0.1 in [0, 99.9]."""
    return (int(digest[:8], 16) % 1000) / 10


# Words and single symbols: close to what BPE tokenizers count on these answers, where every quote,
# colon, comma and decimal point of a confidence dict is a token of its own.
_TOKEN = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """Tokens of ``text``, approximately (a word or a symbol each); what the latency model charges."""
    return len(_TOKEN.findall(text))


# ---------------------------------------------------------------- answers
def stage1_suggestions(id_classes: Sequence[str]) -> list[str]:
    """40 names: 18 near, an ID class, a duplicate, 19 far, another ID class; 37 survive filtering."""
    return [*NEAR_SUGGESTIONS, id_classes[0], NEAR_SUGGESTIONS[0], *FAR_SUGGESTIONS, id_classes[-1].upper()]


def digest_confidences(options: Sequence[str], id_classes: Sequence[str], aux: Sequence[str], digest: str) -> dict[str, float]:
    """For an image without a label code: an ID class from the digest gets :func:`image_score`; the
    first auxiliary class and the rejection class get ``100 - score``."""
    score = image_score(digest)
    confidences = dict.fromkeys(options, 0.0)
    confidences[id_classes[int(digest[8:16], 16) % len(id_classes)]] = score
    if aux:
        confidences[aux[0]] = round(100.0 - score, 1)
    if REJECTION_CLASS in confidences:
        confidences[REJECTION_CLASS] = round(100.0 - score, 1)
    return confidences


def difficulty(code: LabelCode) -> float:
    """In [0, 1); a model of quality q gets the image right when this is below q. Along the fixture
    index it is a golden-ratio sequence (offset per dataset), which spreads even three consecutive
    images of a dataset over [0, 1): any q from 0.39 to 0.61 gets at least one of them right and
    one wrong, and the share of right answers follows q closely on a few images."""
    offset = random.Random(f"{code.role}/{code.dataset}").random()
    return (offset + code.instance * GOLDEN) % 1.0


def _within(outcome: str, draw: float) -> float:
    low, high = SCORE_RANGES[outcome]
    return round(low + draw * (high - low), 1)


def graded_confidences(options: Sequence[str], id_classes: Sequence[str], aux: Sequence[str], code: LabelCode, quality: float) -> dict[str, float] | None:
    """What a model of quality ``quality`` answers for the image ``code`` describes (None when its
    class is not in ``id_classes``). ID: right (the true class, high confidence) or a wrong class at
    a middling confidence. OoD: caught (low ID confidence, the rest to the rejection class) or fooled
    (an ID class at a high confidence); auxiliary classes (ReGuide stage 2) take the rest instead of
    the rejection class and catch a further :data:`GUIDANCE` of the images the baseline is fooled by."""
    if code.role == "id" and code.label >= len(id_classes):
        return None
    rng = random.Random(code.seed())  # the same draws in every stage and on every rerun
    score_draw, class_draw, sink_draw = rng.random(), rng.random(), rng.random()
    u = difficulty(code)
    confidences = dict.fromkeys(options, 0.0)
    if code.role == "id":
        true = id_classes[code.label]
        others = [name for name in id_classes if name != true]
        if u < quality or not others:
            confidences[true] = _within("id_right", score_draw)
        else:
            score = _within("id_wrong", score_draw)
            confidences[others[int(class_draw * len(others))]] = score
            confidences[true] = round((100.0 - score) / 2, 1)
    else:
        caught = u < quality + (GUIDANCE * (1.0 - quality) if aux else 0.0)
        score = _within("ood_caught" if caught else "ood_fooled", score_draw)
        confidences[id_classes[int(class_draw * len(id_classes))]] = score
    sink = aux[int(sink_draw * len(aux))] if aux else REJECTION_CLASS  # where the rest of the confidence goes
    if sink in confidences:
        confidences[sink] = round(100.0 - sum(confidences.values()), 1)
    return confidences


def classification_answer(options: Sequence[str], digest: str, code: LabelCode | None = None, quality: float = DEFAULT_QUALITY) -> tuple[str, float]:
    """``Prediction: ...\\nConfidence: {...}`` over ``options`` (at least one class besides the
    rejection class); returns (answer, max ID confidence). Without a known benchmark's class list at
    the front, every option but the rejection class counts as an ID class. With a label ``code``
    the answer is :func:`graded_confidences`', else :func:`digest_confidences`'."""
    options = list(options)
    body_classes = [name for name in options if name != REJECTION_CLASS]
    id_classes = list(_known_id_classes(body_classes) or body_classes)
    aux = [name for name in body_classes if name not in id_classes]
    confidences = graded_confidences(options, id_classes, aux, code, quality) if code is not None else None
    if confidences is None:
        confidences = digest_confidences(options, id_classes, aux, digest)
    score = max(confidences[name] for name in id_classes)
    prediction = max(options, key=lambda name: confidences[name])
    pairs = ", ".join(f"'{name}': {value}" for name, value in confidences.items())
    return f"Prediction: {prediction}\nConfidence: {{{pairs}}}", score


def answer(text: str, digest: str, code: LabelCode | None = None, quality: float = DEFAULT_QUALITY) -> tuple[str, str, float | None]:
    """(stage, answer text, ID score or None for stage 1); ``code``: the image's label code, if any."""
    stage = prompt_stage(text)
    if stage == "stage1":
        return stage, "Class suggested: " + ", ".join(stage1_suggestions(stage1_id_classes(text))), None
    try:
        options = prompt_classes(text)
    except ValueError:
        options = []
    if all(name == REJECTION_CLASS for name in options):  # not one of our prompts: a minimal answer
        return stage, f"Prediction: {REJECTION_CLASS}\nConfidence: {{'{REJECTION_CLASS}': 100.0}}", None
    reply, score = classification_answer(options, digest, code, quality)
    return stage, reply, score


# ---------------------------------------------------------------- faults
@dataclass(frozen=True)
class Fault:
    """One fault rule; see the module docstring for the schedule."""

    kind: str
    first: int = 0
    every: int = 0
    after: int = 0
    stage: str | None = None
    per: str = "request"
    attempts: int = 0
    status: int = 500
    seconds: float = 0.0
    retry_after_ms: float | None = None
    retry_after_s: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {', '.join(FAULT_KINDS)})")
        if self.per not in ("request", "image"):
            raise ValueError(f"per must be 'request' or 'image', not {self.per!r}")
        if self.stage is not None and self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r} (known: {', '.join(STAGES)})")
        if min(self.first, self.every, self.after, self.attempts) < 0:
            raise ValueError("first, every, after and attempts must be >= 0")
        if self.attempts and self.per != "image":
            raise ValueError("attempts needs per=image (it counts the attempts of each image)")

    def hits(self, n: int) -> bool:
        """Whether the n-th (1-based) request / image this rule counts is faulted."""
        m = n - self.after
        if m < 1:
            return False
        if not self.first and not self.every:
            return True
        return m <= self.first or (self.every > 0 and m % self.every == 0)


def parse_fault(spec: str) -> Fault:
    """``"kind[:arg],key=value,..."``; the arg is the status for ``status``, the seconds for ``sleep``.

    E.g. ``status:429,first=3,retry_after_ms=1``, ``sleep:5,every=4``, ``empty,per=image,first=1``,
    ``malformed,stage=stage2,per=image,after=1,first=1`` (the second image of stage 2, every time).
    """
    head, *pairs = [piece.strip() for piece in spec.split(",") if piece.strip()]
    kind, _, arg = head.partition(":")
    fields: dict[str, Any] = {"kind": kind}
    if arg:
        fields["status" if kind == "status" else "seconds"] = arg
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"fault spec {spec!r}: expected key=value, got {pair!r}")
        fields[key] = value
    casts = {"first": int, "every": int, "after": int, "status": int, "seconds": float, "retry_after_ms": float, "retry_after_s": int, "stage": str, "per": str, "kind": str, "attempts": int}
    unknown = set(fields) - set(casts)
    if unknown:
        raise ValueError(f"fault spec {spec!r}: unknown keys {sorted(unknown)}")
    return Fault(**{key: casts[key](value) for key, value in fields.items()})


@dataclass
class _Rule:
    fault: Fault
    seen: int = 0
    images: OrderedDict = field(default_factory=OrderedDict)
    tries: Counter = field(default_factory=Counter)

    def fires(self, stage: str, digest: str) -> bool:
        if self.fault.stage is not None and self.fault.stage != stage:
            return False
        if self.fault.per == "image":
            n = self.images.setdefault(digest, len(self.images) + 1)
            self.tries[digest] += 1
            if self.fault.attempts and self.tries[digest] > self.fault.attempts:
                return False
        else:
            self.seen += 1
            n = self.seen
        return self.fault.hits(n)


@dataclass
class RequestLog:
    """One chat request: arrival order, stage, image digest, timing and what it got; ``label``: the
    image's label code (``role/dataset/label/instance``), ``""`` when it has none."""

    index: int
    stage: str
    image: str
    started: float
    ended: float = 0.0
    fault: str = ""
    score: float | None = None
    label: str = ""
    prompt_tokens: int = 0  # approx_tokens of the prompt text and of the answer
    output_tokens: int = 0
    latency: float = 0.0  # seconds the latency model slept before answering
    authorization: str = ""  # the request's Authorization header (tests check which key arrived)


# ---------------------------------------------------------------- the server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the counters instead
        return

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode("utf-8"), headers)

    def _send_raw(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_half_then_reset(self, body: bytes) -> None:
        """Headers for ``body`` and its first half, then a TCP RST (SO_LINGER 0) instead of the rest."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [{"id": self.server.owner.model, "object": "model", "owned_by": "reguide"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body stays unread: this connection cannot be reused
            self._send_json(413, {"error": {"message": "request body too large", "type": "invalid_request_error"}})
            return
        raw = self.rfile.read(length) if length > 0 else b""
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw)
            text, images = message_parts(body)
        except (ValueError, TypeError, AttributeError) as exc:
            self._send_json(400, {"error": {"message": f"bad request body: {exc}", "type": "invalid_request_error"}})
            return
        self.server.owner._serve_chat(self, body, text, images)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # socketserver's 5 drops connects beyond it while accept() lags (64+ in flight)
    owner: OoDDTestServer

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client gone after a timeout
        return


class OoDDTestServer:
    """The server; ``start()`` / ``stop()`` or a ``with`` block. ``url`` is the OpenAI ``base_url``.

    ``latency`` (seconds) is slept before every answer (makes concurrency observable), plus
    ``output_token_latency`` per output token of the answer and ``prompt_token_latency`` per prompt
    token (:func:`approx_tokens`): a served model's cost, which decoding dominates. ``quality`` in
    [0, 1]: how often the answers for label-coded images are right (see the module docstring).
    """

    def __init__(self, faults: Sequence[Fault | str] = (), port: int = 0, model: str = DEFAULT_MODEL, latency: float = 0.0, quality: float = DEFAULT_QUALITY,
                 output_token_latency: float = 0.0, prompt_token_latency: float = 0.0) -> None:
        self.model = model
        self.latency = float(latency)
        self.output_token_latency = float(output_token_latency)
        self.prompt_token_latency = float(prompt_token_latency)
        self.quality = check_quality(quality)
        self._rules = [_Rule(parse_fault(f) if isinstance(f, str) else f) for f in faults]
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when the last in-flight request ends
        self._stopping = threading.Event()
        self._log: list[RequestLog] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._httpd = _HTTPServer((HOST, port), _Handler, bind_and_activate=True)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    # -- lifecycle
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start(self) -> OoDDTestServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="oodd-test-server", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Wake sleeping handlers, stop serving and close the socket (bounded by ``timeout``)."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout)
            self._thread = None
        # A client can hold its answer before the handler thread has stamped ``ended``: wait for those
        # stamps, so the log read after stop() is complete.
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout)
        self._httpd.server_close()

    def __enter__(self) -> OoDDTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- counters
    @property
    def log(self) -> list[RequestLog]:
        with self._lock:
            return [replace(entry) for entry in self._log]

    @property
    def requests(self) -> Counter:
        """Chat requests received per stage (every attempt, faulted or not)."""
        return Counter(entry.stage for entry in self.log)

    @property
    def answered(self) -> Counter:
        """Chat requests per stage that got a normal answer."""
        return Counter(entry.stage for entry in self.log if not entry.fault)

    @property
    def faults(self) -> Counter:
        return Counter(entry.fault for entry in self.log if entry.fault)

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    # -- serving
    def _begin(self, stage: str, digest: str, label: str) -> tuple[RequestLog, Fault | None]:
        with self._lock:
            entry = RequestLog(len(self._log) + 1, stage, digest, time.monotonic(), label=label)
            self._log.append(entry)
            fired = [rule.fault for rule in self._rules if rule.fires(stage, digest)]  # every counter advances
            fault = fired[0] if fired else None
            entry.fault = fault.kind if fault else ""
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        return entry, fault

    def _serve_chat(self, handler: _Handler, body: Mapping[str, Any], text: str, images: list[bytes]) -> None:
        digest = digest_of(text, images)
        code = read_label_code(images[0]) if images else None
        stage, reply, score = answer(text, digest, code, self.quality)
        label = f"{code.role}/{code.dataset}/{code.label}/{code.instance}" if code else ""
        entry, fault = self._begin(stage, digest, label)
        entry.authorization = str(handler.headers.get("Authorization") or "")
        entry.prompt_tokens, entry.output_tokens = approx_tokens(text), approx_tokens(reply)
        entry.latency = self.latency + self.output_token_latency * entry.output_tokens + self.prompt_token_latency * entry.prompt_tokens
        try:
            if entry.latency:
                self._stopping.wait(entry.latency)
            self._respond(handler, body, stage, reply, score, entry, fault)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout) before the answer
            handler.close_connection = True
        finally:
            with self._lock:
                self._in_flight -= 1
                entry.ended = time.monotonic()
                self._idle.notify_all()

    def _respond(self, handler: _Handler, body: Mapping[str, Any], stage: str, reply: str, score: float | None, entry: RequestLog, fault: Fault | None) -> None:
        kind = fault.kind if fault else ""
        if kind == "status":
            headers = {"retry-after-ms": f"{fault.retry_after_ms:g}"} if fault.retry_after_ms is not None else {}
            if fault.retry_after_s is not None:
                headers["Retry-After"] = str(fault.retry_after_s)
            error = {"message": f"injected fault: HTTP {fault.status}", "type": "injected_fault", "code": fault.status}
            handler._send_json(fault.status, {"error": error}, headers)
            return
        if kind == "drop":
            handler.close_connection = True
            return
        if kind == "reset":
            handler._send_half_then_reset(json.dumps(self._completion(body, entry.index, reply)).encode("utf-8"))
            return
        if kind == "malformed":
            handler._send_raw(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assi')
            return
        if kind == "sleep":
            self._stopping.wait(fault.seconds)
        content: str | None = reply
        if kind == "empty":
            content = ""
        elif kind == "null":
            content = None
        elif kind == "refusal":
            content = REFUSAL
        if kind == "sleep" or not kind:
            entry.score = score
        handler._send_json(200, self._completion(body, entry.index, content))

    def _completion(self, body: Mapping[str, Any], index: int, content: str | None) -> dict:
        prompt_tokens = len(json.dumps(body.get("messages", ""))) // 4
        completion_tokens = len(content or "") // 4
        return {
            "id": f"chatcmpl-reguide-{index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or self.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
        }


def check_quality(quality: float) -> float:
    quality = float(quality)
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"quality must be in [0, 1], not {quality}")
    return quality


def _quality_arg(text: str) -> float:
    try:
        return check_quality(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Deterministic OpenAI-compatible OoDD test server (127.0.0.1).")
    parser.add_argument("--port", type=int, default=0, help="0 = an ephemeral port (printed)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept before every answer")
    parser.add_argument("--output-token-latency", type=float, default=0.0, help="plus seconds per output token of the answer (decoding)")
    parser.add_argument("--prompt-token-latency", type=float, default=0.0, help="plus seconds per prompt token (prefill)")
    parser.add_argument("--quality", type=_quality_arg, default=DEFAULT_QUALITY,
                        help=f"0..1: how often answers for label-coded fixture images are right (default {DEFAULT_QUALITY}; 1 = perfect)")
    parser.add_argument("--fault", action="append", default=[], help="a fault rule, e.g. status:429,first=3 (repeatable)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    args = parser.parse_args(argv)
    server = OoDDTestServer([parse_fault(spec) for spec in args.fault], args.port, args.model, args.latency, args.quality,
                            args.output_token_latency, args.prompt_token_latency).start()
    print(f"serving {server.url} (model {server.model}, quality {server.quality:g})", flush=True)
    try:
        if args.duration > 0:
            time.sleep(args.duration)
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"requests {dict(server.requests)}; answered {dict(server.answered)}; faults {dict(server.faults)}; max in flight {server.max_in_flight}", flush=True)


if __name__ == "__main__":
    main()
