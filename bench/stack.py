"""A throwaway stack for a benchmark: its own state dir and ports, first models trained with
the quick preset, the demo data (or part of it) streamed through Kafka and indexed."""

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from pipeline.data.items import DataItem
from pipeline.produce import produce_items
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.train.job import item_samples, train_and_register
from schemas.items import Modality
from services.stack import Stack

# Clear of `make run` (9092/8000) and of the test suite (19092/18000); overridable so a
# benchmark can run beside another checkout's. One at a time: the runner is sequential.
BENCH_BOOTSTRAP = os.environ.get("TWINSTREAM_BENCH_BOOTSTRAP", "127.0.0.1:29092")
BENCH_HTTP_PORT = int(os.environ.get("TWINSTREAM_BENCH_HTTP_PORT", "28000"))
INGEST_TIMEOUT_S = 1800.0


@contextmanager
def bench_stack(
    items: Mapping[Modality, Sequence[DataItem]], log: bool = False, **overrides: object
) -> Iterator[Stack]:
    """`overrides` are Settings fields (e.g. ingest_actors=2)."""
    with tempfile.TemporaryDirectory(prefix="twinstream-bench-") as state:
        settings = Settings(
            state_dir=Path(state),
            kafka_bootstrap=BENCH_BOOTSTRAP,
            http_port=BENCH_HTTP_PORT,
            **overrides,  # type: ignore[arg-type]
        )
        store = MetadataStore.from_settings(settings)
        for modality, data in items.items():
            samples = item_samples(modality, data)
            train_and_register(settings, store, modality, samples, activate=True, preset="quick")
        stack = Stack(settings, log=print if log else lambda _: None)
        try:
            stack.start()
            sent = {m: produce_items(settings, data) for m, data in items.items()}
            stack.wait_indexed({m: [i.id for i in s] for m, s in sent.items()}, INGEST_TIMEOUT_S)
            yield stack
        finally:
            stack.stop()
