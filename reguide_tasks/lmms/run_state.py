"""What one process learns during a run and later steps read back: the one place for run-wide state.

lmms-eval calls our hooks as plain functions (no run object is passed), so the state of a run lives in
one explicit object, :data:`RUN`, instead of module globals scattered over the rooms:

- ``images_required``: False once a model that never opens images is built (``reguide_replay``);
  lmms-eval builds the model before it loads the tasks, so the document check reads it in time.
- ``excluded``: ``doc_key -> reason`` for documents whose image could not be read under
  ``--bad_images exclude``. The model call and ``process_results`` of a document run in the same
  process, so this is where they meet.
- ``documents_scored`` / ``request_failures`` / ``first_failure``: ``reguide-eval`` fails a run in
  which every request of this process failed (API retries spent, budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunState:
    images_required: bool = True
    excluded: dict[str, str] = field(default_factory=dict)
    documents_scored: int = 0
    request_failures: int = 0
    first_failure: str | None = None

    def count_scored(self, failed_request_reason: str | None) -> None:
        """One more document scored; ``failed_request_reason`` when it had no answer because the
        request itself failed."""
        self.documents_scored += 1
        if failed_request_reason:
            self.request_failures += 1
            if self.first_failure is None:
                self.first_failure = failed_request_reason

    def every_request_failed(self) -> bool:
        return bool(self.documents_scored) and self.request_failures == self.documents_scored

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


RUN = RunState()
