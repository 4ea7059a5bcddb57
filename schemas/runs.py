"""The vocabulary of retraining runs: what starts one, where it is, how it ended, and the
training presets a client may ask for."""

from enum import StrEnum


class RunTrigger(StrEnum):
    """What started a run: the CLI, `POST /v1/retrain`, or the RETRAIN_SCHEDULE."""

    CLI = "cli"
    API = "api"
    SCHEDULE = "schedule"


class RunStatus(StrEnum):
    """Whether a run waits, runs or has finished, and how."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED)


class RunPhase(StrEnum):
    """Where a run is: queued → collecting → training → evaluating, then rejected, or
    re-embedding → promoted; failed from any of them."""

    QUEUED = "queued"
    COLLECTING = "collecting"
    TRAINING = "training"
    EVALUATING = "evaluating"
    REJECTED = "rejected"
    RE_EMBEDDING = "re-embedding"
    PROMOTED = "promoted"
    FAILED = "failed"


class TrainPreset(StrEnum):
    """Training presets: `default` is what the service trains; `quick` trains fewer epochs
    (a weaker model in a fraction of the time)."""

    DEFAULT = "default"
    QUICK = "quick"
