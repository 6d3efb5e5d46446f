"""Display labels of model identities ``(model, model_args)``: short, and long enough to tell apart
the identities that share a table; and reading ``k=v`` values out of ``model_args``.

CLIP reference rows (``clip_ood``) always say what they are: zero-shot or the learned context's
method and shots (read from the context file's config, see :func:`clip_kind`), and the score rule.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path

MODEL_ARG_KEYS = ("pretrained", "model", "responses")
CLIP_MODEL = "clip_ood"
CLIP_SCORE_NAMES = {"mcm": "MCM", "glmcm": "GL-MCM", "msp": "MSP", "maxlogit": "MaxLogit", "energy": "Energy"}
CONTEXT_CONFIG_KEY = "reguide_config"  # where reguide-clip-train keeps its config in the context file


def model_arg(model_args: str, key: str) -> str | None:
    """Value of ``key=`` in an lmms-eval ``model_args`` string (``k=v,k=v``), or None."""
    for part in model_args.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None


def _name_arg(model_args: str) -> tuple[str, str] | None:
    """The (key, value) naming the model in ``model_args``: pretrained=, else model=, else responses=."""
    return next(((k, v) for k in MODEL_ARG_KEYS if (v := model_arg(model_args, k))), None)


def _path_parts(value: str) -> list[str]:
    return [p for p in re.split(r"[/\\]", value) if p] or [value]


def _other_args(model_args: str) -> list[str]:
    """The ``k=v`` parts of ``model_args`` other than the naming one, stripped."""
    named = _name_arg(model_args)
    skip = named[0] if named else None
    return [p.strip() for p in model_args.split(",") if p.strip() and p.partition("=")[0].strip() != skip]


def _context_config(path: str) -> dict | None:
    """The training config in a ``context.safetensors`` header (stdlib only: 8-byte length, JSON); None
    when the file is absent, not safetensors, or carries none."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                return None
            header = json.loads(handle.read(length))
        config = json.loads(header.get("__metadata__", {}).get(CONTEXT_CONFIG_KEY, "null"))
        return config if isinstance(config, dict) else None
    except (OSError, ValueError, struct.error, AttributeError):
        return None


def clip_kind(model_args: str) -> str:
    """What a ``clip_ood`` row is: ``zero-shot, MCM``, ``CoOp 16-shot, MSP``, ``LoCoOp-CSC 4-shot, Energy``;
    a context without a readable config: ``learned context <folder>/<file>, MCM``."""
    score = (model_arg(model_args, "score") or "mcm").lower()
    rule = CLIP_SCORE_NAMES.get(score, score)
    context = model_arg(model_args, "prompt_context")
    if not context:
        return f"zero-shot, {rule}"
    config = _context_config(context)
    if config and config.get("method") and config.get("shots"):
        return f"{config['method']} {config['shots']}-shot, {rule}"
    shown = "/".join(Path(context).parts[-2:])
    return f"learned context {shown}, {rule}"


@dataclass
class _LabelState:
    model: str
    model_args: str
    depth: int = 1  # trailing path components of the name value shown
    extras: tuple[str, ...] = ()  # other model args shown (those that tell clashing runs apart)
    full: bool = False  # last resort: the whole model_args

    def text(self) -> str:
        if self.full:
            return f"{self.model} ({self.model_args})" if self.model_args else self.model
        named = _name_arg(self.model_args)
        inner = ["/".join(_path_parts(named[1])[-self.depth :])] if named else []
        if self.model == CLIP_MODEL:
            inner.append(clip_kind(self.model_args))
        inner += self.extras
        return f"{self.model} ({', '.join(inner)})" if inner else self.model


def identity_labels(placements: Iterable[tuple[Hashable, tuple[str, str]]]) -> dict[tuple[str, str], str]:
    """A label for each model identity ``(model, model_args)``, given the tables it is shown in:
    ``(table, identity)`` pairs, ``table`` any key of one table (the report's: benchmark x task).

    A label is ``model (short name)`` where the short name is the last path component of
    ``pretrained=`` (else ``model=``, else ``responses=``) in ``model_args``. Labels are lengthened
    only where different model identities would share one in the same table: more path components
    where the names differ, else the model args that differ, else the whole ``model_args``.
    ``clip_ood`` rows always carry :func:`clip_kind` (``clip_ood (clip-vit-base-patch16, CoOp 16-shot, MCM)``).
    """
    placements = list(placements)
    states = {identity: _LabelState(*identity) for _, identity in placements}
    for _ in range(16):
        tables: dict[tuple[Hashable, str], set[tuple[str, str]]] = {}
        for table, identity in placements:
            tables.setdefault((table, states[identity].text()), set()).add(identity)
        clashes = [sorted(ids) for ids in tables.values() if len(ids) > 1]
        if not clashes:
            break
        changed = False
        for group in clashes:
            names = {i: (_name_arg(i[1]) or ("", ""))[1] for i in group}
            for identity in group:
                state = states[identity]
                twins = [j for j in group if names[j] == names[identity]]
                if len(twins) > 1:
                    common = set.intersection(*(set(_other_args(j[1])) for j in twins))
                    extras = tuple(p for p in _other_args(identity[1]) if p not in common)
                    if extras != state.extras:
                        state.extras, changed = extras, True
                elif state.depth < len(_path_parts(names[identity])):
                    state.depth, changed = state.depth + 1, True
        if not changed:
            for group in clashes:
                for identity in group:
                    states[identity].full = True
    return {identity: state.text() for identity, state in states.items()}
