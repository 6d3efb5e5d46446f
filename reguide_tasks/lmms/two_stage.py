"""A round-synchronous runner for lmms-eval's ``generate_until_agentic`` requests.

lmms-eval 0.7.3 (``evaluator._run_generate_until_agentic``) loops document by document and round by
round, sending ONE request per model call: a batched backend (vLLM, SGLang, an API with concurrency,
HF with batch_size > 1) then runs at batch size 1. This runner keeps the same protocol and results
(the task's ``doc_to_text(doc, previous_output=..., round_idx=..., previous_round_info=...)`` decides
every next prompt) but sends round k of every still-active document in ONE ``generate_until`` call,
through the response cache when ``--use_cache`` is on, so ReGuide costs ~2 model passes.

:func:`reguide_tasks.lmms.runtime.install_batched_agentic_runner` swaps it into ``lmms_eval.evaluator``
(with every other patch of lmms-eval internals, behind one version guard).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from loguru import logger


@dataclass
class _DocState:
    context: str
    generation_kwargs: dict
    doc_to_visual: Callable
    doc_to_text: Callable
    doc_id: int
    task_name: str
    split: str
    metadata: Any
    max_steps: int
    outputs: list[str] = field(default_factory=list)
    round_info: Any = None
    final: str = ""
    done: bool = False


def _single_request(lm, state: _DocState):
    from lmms_eval.api.instance import Instance

    kwargs = copy.deepcopy(state.generation_kwargs)
    if getattr(lm, "is_simple", False):
        args = (state.context, kwargs, state.doc_to_visual, state.doc_id, state.task_name, state.split)
    else:
        context, to_visual = state.context, state.doc_to_visual

        def doc_to_messages(doc, _context=context, _to_visual=to_visual):
            content = []
            for visual in _to_visual(doc) or []:
                if isinstance(visual, dict):
                    content.append({"type": "audio", "url": visual})
                elif isinstance(visual, str):
                    content.append({"type": "video", "url": visual})
                else:
                    content.append({"type": "image", "url": visual})
            content.append({"type": "text", "text": _context})
            return [{"role": "user", "content": content}]

        args = (context, doc_to_messages, kwargs, state.doc_id, state.task_name, state.split)
    return Instance(request_type="generate_until", arguments=args, idx=0, metadata=state.metadata)


def _advance(lm, state: _DocState, output: str, round_idx: int) -> None:
    """Apply the task's ``doc_to_text`` step exactly as lmms-eval's sequential loop does."""
    state.outputs.append(output)
    state.final = output
    doc = lm.task_dict[state.task_name][state.split][state.doc_id]
    step = state.doc_to_text(doc, previous_output=state.outputs, round_idx=round_idx + 1, previous_round_info=state.round_info)
    if isinstance(step, tuple) and len(step) == 5:
        visuals, next_context, terminal, updated_outputs, next_info = step
        if updated_outputs is not None:
            state.outputs = list(updated_outputs)
            if state.outputs:
                state.final = state.outputs[-1]
        state.round_info = next_info
        if terminal:
            state.done = True
            return
        if next_context is not None:
            state.context = next_context
        if visuals is not None:
            state.doc_to_visual = lambda _doc, _visuals=visuals: _visuals
    elif isinstance(step, str):
        state.context = step
    else:
        state.done = True


def _finalize(state: _DocState) -> str:
    """lmms-eval's rule: a run that ends with round state but no JSON answer reports max steps."""
    if state.round_info is not None and not (isinstance(state.final, str) and state.final.strip().startswith("{")):
        info = state.round_info if isinstance(state.round_info, dict) else {}
        return json.dumps(
            {
                "success": False,
                "error": "max_agentic_steps_reached",
                "tool_calls": float(info.get("tool_calls", 0)),
                "valid_tool_calls": float(info.get("valid_tool_calls", info.get("tool_calls", 0))),
                "invalid_steps": float(info.get("invalid_steps", 0.0)),
                "state": info.get("state", {}),
                "last_model_output": state.final,
                "trace": state.outputs,
            },
            ensure_ascii=False,
        )
    return state.final


def run_agentic_batched(lm, requests, agentic_trace_mode: str = "basic", response_cache=None) -> list[str]:
    """Drop-in for ``lmms_eval.evaluator._run_generate_until_agentic``: one model call per round."""
    from lmms_eval.evaluator import unwrap_generation_output

    states = []
    for request in requests:
        context, generation_kwargs, doc_to_visual, doc_to_text, doc_id, task_name, split = request.args
        if not callable(doc_to_text):
            raise ValueError("generate_until_agentic requires callable doc_to_text")
        kwargs = copy.deepcopy(generation_kwargs)
        max_steps = int(kwargs.pop("max_agentic_steps", 12))
        states.append(_DocState(context, kwargs, doc_to_visual, doc_to_text, doc_id, task_name, split, request.metadata, max_steps))

    round_idx = 0
    while True:
        active = [s for s in states if not s.done and round_idx < s.max_steps]
        if not active:
            break
        logger.info(f"Agentic round {round_idx + 1}: {len(active)} requests in one batched call")
        batch = [_single_request(lm, s) for s in active]
        if response_cache is not None:
            raw = response_cache.execute(lm, "generate_until", batch)
        else:
            raw = lm.generate_until(batch)
        for state, output in zip(active, raw):
            text, _ = unwrap_generation_output(output)
            _advance(lm, state, text, round_idx)
        round_idx += 1
    return [_finalize(s) for s in states]

