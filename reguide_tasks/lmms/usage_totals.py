"""Running token totals of an lmms-eval run, kept up to date in O(new answers) per call.

lmms-eval 0.7.3's API models (``openai``, ``async_openai``, ``gemini``) refresh their progress bar's
``tokens=`` after every answer with ``usage_metrics.get_running_totals()``, which sums the run's whole
usage history: one call costs O(answers so far), a run O(answers²). On the full ImageNet200 lists
as ReGuide (189,816 answers) that is about 40 min of one core (bench/bench_usage_totals.py), holding the GIL the request threads
need: ``bench/soak_served.py`` saw the answer rate fall from 125/s to 35/s within the first 40,000.

:class:`IncrementalTotals` gives the same figures by adding only the records appended since its last
call. :func:`reguide_tasks.lmms.runtime.install_running_usage_totals` puts it in place.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import Any

COUNTED = ("input_tokens", "output_tokens", "reasoning_tokens")


class IncrementalTotals:
    """A drop-in ``get_running_totals`` over lmms-eval's history list (appended to, cleared between
    runs: a cleared or replaced history is noticed and summed again from its start).

    >>> import threading
    >>> history = [{"input_tokens": 3, "output_tokens": 2, "reasoning_tokens": 0}]
    >>> totals = IncrementalTotals(history, threading.Lock())
    >>> totals()["total_tokens"]
    5
    >>> history.append({"input_tokens": 1, "output_tokens": 1, "reasoning_tokens": 1})
    >>> totals()
    {'input_tokens': 4, 'output_tokens': 3, 'reasoning_tokens': 1, 'total_tokens': 8, 'n_api_calls': 2}
    >>> history.clear(); history.append({"input_tokens": 7, "output_tokens": 0, "reasoning_tokens": 0})
    >>> totals()["total_tokens"]
    7
    """

    def __init__(self, history: MutableSequence[dict], lock: Any) -> None:
        self.history = history
        self.lock = lock
        self._seen = 0
        self._last: object = None  # the last record summed: tells an appended history from a new one
        self._sums = dict.fromkeys(COUNTED, 0)

    def __call__(self) -> dict[str, int]:
        with self.lock:
            if self._seen and (len(self.history) < self._seen or self.history[self._seen - 1] is not self._last):
                self._seen, self._sums = 0, dict.fromkeys(COUNTED, 0)  # reset_usage_metrics() ran
            new = self.history[self._seen :]
            for key in COUNTED:
                self._sums[key] += sum(record[key] for record in new)
            if new:
                self._seen, self._last = len(self.history), new[-1]
            sums, n_calls = dict(self._sums), self._seen
        return {**sums, "total_tokens": sum(sums.values()), "n_api_calls": n_calls}
