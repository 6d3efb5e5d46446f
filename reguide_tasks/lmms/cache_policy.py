"""Keep failed API requests out of lmms-eval's response cache.

lmms-eval 0.7.3's ``ResponseCache`` stores every non-empty answer, including the placeholders its API
models return once their retries are spent (``[LMMS_EVAL_REQUEST_FAILED after N retries] ...``,
``[LMMS_EVAL_BUDGET_EXCEEDED]``). A run resumed after an outage would then replay the outage instead
of asking again. :func:`install` makes the cache treat those placeholders as misses: they are scored as
failures in this run and requested again by the next.
"""

from __future__ import annotations

from typing import Any

PLACEHOLDER_PREFIX = "[LMMS_EVAL_"


def is_placeholder(response: Any) -> bool:
    text = getattr(response, "text", response)
    return isinstance(text, str) and text.lstrip().startswith(PLACEHOLDER_PREFIX)


def install() -> None:
    from lmms_eval.caching.response_cache import ResponseCache

    if getattr(ResponseCache._is_valid_response, "_reguide", False):
        return
    original = ResponseCache._is_valid_response

    def _is_valid_response(response: Any, request_type: str) -> bool:
        return not is_placeholder(response) and original(response, request_type)

    _is_valid_response._reguide = True  # type: ignore[attr-defined]
    ResponseCache._is_valid_response = staticmethod(_is_valid_response)
