"""A retraining run's progress bar: each phase owns one span of it, so the candidate task and
the coordinator, in different processes, move one bar forward without knowing each other's
share."""

from collections.abc import Callable
from typing import Any

from pipeline.store.metadata import MetadataStore
from schemas.runs import RunPhase

# (start, end) of each phase on the bar; most of a run is training.
SPANS: dict[RunPhase, tuple[float, float]] = {
    RunPhase.QUEUED: (0.0, 0.0),
    RunPhase.COLLECTING: (0.01, 0.05),
    RunPhase.TRAINING: (0.05, 0.75),
    RunPhase.EVALUATING: (0.75, 0.8),
    RunPhase.RE_EMBEDDING: (0.8, 0.99),
    RunPhase.REJECTED: (1.0, 1.0),
    RunPhase.PROMOTED: (1.0, 1.0),
}


class RunProgress:
    """Writes a run's phase and progress to its row in the store."""

    def __init__(self, store: MetadataStore, run_id: str) -> None:
        self._store = store
        self._run_id = run_id

    def at(self, phase: RunPhase, fraction: float = 0.0, **fields: Any) -> None:
        """`fraction` of the way through `phase`; a failed run keeps the progress it had."""
        if phase is not RunPhase.FAILED:
            low, high = SPANS[phase]
            fields["progress"] = low + (high - low) * fraction
        self._store.update_run(self._run_id, phase=phase.value, **fields)

    def through(self, phase: RunPhase) -> Callable[[float], None]:
        """A callback for the work inside `phase`, given the fraction of it done."""
        low, high = SPANS[phase]
        return lambda fraction: self._store.update_run(
            self._run_id, progress=low + (high - low) * fraction
        )
