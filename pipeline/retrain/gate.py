"""The promotion gate: a candidate replaces the active model only if it is measurably better
on the same held-out identities."""

from dataclasses import dataclass

from pipeline.evaluation.scoring import Scores

# Lower is better for the gate's metric (an error rate).
GATE_METRIC = "eer"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def judge(candidate: Scores, active: Scores | None, min_improvement: float) -> Decision:
    new = candidate.metrics[GATE_METRIC]
    if active is None:
        return Decision(True, f"no active model; candidate {GATE_METRIC} {new:.4f}")
    old = active.metrics[GATE_METRIC]
    if old - new > min_improvement:
        return Decision(True, f"{GATE_METRIC} {new:.4f} beats the active model's {old:.4f}")
    return Decision(
        False,
        f"{GATE_METRIC} {new:.4f} does not beat the active model's {old:.4f}"
        f" by more than {min_improvement:.4f}",
    )
