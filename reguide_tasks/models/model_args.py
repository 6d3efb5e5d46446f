"""Model arguments checked by name: a typo in ``--model_args`` stops the run before any work, saying
which argument is unknown and which known one was probably meant (lmms-eval itself would pass it to
``__init__``, where a ``**kwargs`` would swallow it silently)."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping


def reject_unknown(model_id: str, unknown: Mapping[str, object], init: Callable) -> None:
    """TypeError naming every unknown argument of ``model_id`` and, where one is close, the argument of
    ``init`` (the model's bound ``__init__``) it was probably meant to be; nothing when ``unknown`` is
    empty. ``init`` also takes what lmms-eval's CLI passes to every model (``batch_size``,
    ``max_batch_size``, ``device``)."""
    if not unknown:
        return
    known = sorted(
        name for name, parameter in inspect.signature(init).parameters.items()
        if parameter.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    )
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError(f"{model_id}: unknown model args {', '.join(parts)}; its model args are: {', '.join(known)}")
