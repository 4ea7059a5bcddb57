"""What an ingest actor has done, as plain picklable numbers for a metrics scrape.

The actor runs in its own process and the API replica scrapes it through Ray,
so it keeps counters and bucketed distributions itself (no Prometheus objects,
which hold locks and do not pickle) and hands out copies.
"""

import bisect
import copy
from dataclasses import dataclass, field

from pipeline.ingest.unreadable import StoppedPartition

# Records per poll: bounded above by INGEST_BATCH_SIZE.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# One forward pass of the encoder over a batch, per modality.
EMBED_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Distribution:
    """A histogram: per-bucket counts (the last one open-ended) and the sum observed."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus `le` buckets, each counting everything up to its bound."""
        bounds = [*(str(float(b)) for b in self.bounds), "+Inf"]
        running, out = 0, []
        for bound, count in zip(bounds, self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass
class IngestStats:
    indexed: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    batches: int = 0
    # Batches that failed and were replayed from the holders' offsets, and why the last did.
    retries: int = 0
    last_error: str | None = None
    # Times the actor found itself polling nothing while behind the log, and sought again.
    stalls: int = 0
    # Times the consumer, holding nothing for long although it should, left and joined again.
    rejoins: int = 0
    # The partitions ("topic:partition") the consumer holds, as of the snapshot.
    held: list[str] = field(default_factory=list)
    # Partitions stopped at a batch the consumer cannot read, until a restart.
    stopped: list[StoppedPartition] = field(default_factory=list)
    batch_size: Distribution = field(default_factory=lambda: Distribution(BATCH_SIZE_BUCKETS))
    embed_seconds: Distribution = field(default_factory=lambda: Distribution(EMBED_SECONDS_BUCKETS))

    def counts(self) -> dict[str, int]:
        return {
            "indexed": self.indexed,
            "deleted": self.deleted,
            "dead_lettered": self.dead_lettered,
            "batches": self.batches,
            "retries": self.retries,
            "stalls": self.stalls,
            "rejoins": self.rejoins,
        }

    def snapshot(self) -> "IngestStats":
        return copy.deepcopy(self)
