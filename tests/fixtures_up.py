"""`twinstream up` as a user starts it: a subprocess in its own process group.

For tests that need a whole stack of their own (killed, or configured unlike the
session's): its own state directory, broker and HTTP port, so its consumer group and
Ray never meet the session stack's. The store is seeded with the session's trained
models, so a start needs no training.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from schemas.items import Modality
from tests.fixtures_kafka import TEST_BOOTSTRAP
from tests.fixtures_stack import TEST_HTTP_PORT

START_TIMEOUT_S = 240


def _port_after(address: str, step: int) -> str:
    host, port = address.rsplit(":", 1)
    return f"{host}:{int(port) + step}"


@pytest.fixture
def own_settings(stack, stack_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A fresh state dir whose store knows the session's trained models, and its own broker."""
    settings = Settings(
        state_dir=tmp_path / "state",
        kafka_bootstrap=_port_after(TEST_BOOTSTRAP, 100),
        http_port=TEST_HTTP_PORT + 10,
        train_preset="quick",
        max_item_bytes=stack_settings.max_item_bytes,
    )
    source, target = (
        MetadataStore.from_settings(stack_settings),
        MetadataStore.from_settings(settings),
    )
    for modality in Modality:
        target.register_model(replace(source.active_model(modality), active=True))
    assert run_cli(settings, "kafka", "start").returncode == 0
    try:
        yield settings
    finally:
        run_cli(settings, "kafka", "stop")


def _env(settings: Settings) -> dict[str, str]:
    key = settings.api_key
    return os.environ | {
        "TWINSTREAM_API_INGRESS": settings.api_ingress,
        **({} if key is None else {"TWINSTREAM_API_KEY": key.get_secret_value()}),
        "TWINSTREAM_STATE_DIR": str(settings.state_dir),
        "TWINSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TWINSTREAM_HTTP_PORT": str(settings.http_port),
        "TWINSTREAM_TRAIN_PRESET": settings.train_preset,
        "TWINSTREAM_MAX_ITEM_BYTES": str(settings.max_item_bytes),
        "TWINSTREAM_INDEX_SHARDS": str(settings.index_shards),
        "TWINSTREAM_INDEX_REPLICAS": str(settings.index_replicas),
        **(
            {} if settings.ray_address is None else {"TWINSTREAM_RAY_ADDRESS": settings.ray_address}
        ),
        **(
            {}
            if settings.ingest_actors is None
            else {"TWINSTREAM_INGEST_ACTORS": str(settings.ingest_actors)}
        ),
    }


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class UpProcess:
    """One `twinstream up` in its own process group, output in files for the post-mortem."""

    def __init__(self, settings: Settings, attempt: int) -> None:
        self._settings = settings
        self.out = settings.state_dir.parent / f"up-{attempt}.out"
        with open(self.out, "w") as out, open(self.out.with_suffix(".err"), "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "up"],
                env=_env(settings),
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "twinstream ready" not in self.out.read_text():
            assert self.process.poll() is None, self.out.with_suffix(".err").read_text()[-3000:]
            assert time.monotonic() < deadline, "twinstream up did not get ready"
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL to the group: the CLI, Ray's daemons and every actor die at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        wait_port_free(self._settings.http_port)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=120)


def pipeline_state(api: httpx.Client, up: UpProcess) -> str:
    """What the stack says about itself, for a test that waited on it in vain: /readyz, the
    ingest and dead-letter metrics and the end of `twinstream up`'s output."""
    ready = api.get("/readyz").text
    metrics = [
        line
        for line in api.get("/metrics").text.splitlines()
        if line.startswith(("twinstream_ingest", "twinstream_dead_letters", "twinstream_index"))
        and "_bucket" not in line
    ]
    err = up.out.with_suffix(".err").read_text()[-2000:]
    return f"/readyz {ready}\n" + "\n".join(metrics) + f"\nup's stderr:\n{err}"


def wait_port_free(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"port {port} still taken after the kill")
