"""The `twinstream` CLI against the running test stack's state, as a user would run it, and
what it does with no service to talk to."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import ray
from typer.testing import CliRunner

from pipeline.data.orl import iter_orl as demo_faces
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from schemas.items import Modality
from services.cli import app


def twinstream(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {
        "TWINSTREAM_STATE_DIR": str(settings.state_dir),
        "TWINSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TWINSTREAM_TRAIN_PRESET": settings.train_preset,
        "TWINSTREAM_HTTP_PORT": str(settings.http_port),
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_kafka_status_reports_the_running_broker(stack, stack_settings):
    result = twinstream(stack_settings, "kafka", "status")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["running"] is True


def test_train_on_stored_items_registers_a_new_inactive_version(stack, stack_settings):
    store = MetadataStore.from_settings(stack_settings)
    active_before = store.active_model(Modality.FACE)
    result = twinstream(
        stack_settings, "train", "--modality", "face", "--exclude", "orl/s1/*", "--no-activate"
    )
    assert result.returncode == 0, result.stderr
    version = result.stdout.strip().splitlines()[-1]
    record = store.get_model(version)
    assert record is not None and record.modality is Modality.FACE and not record.active
    # 39 people × 9 indexed shots, minus the excluded person; DLQ-test items may add more.
    counts = record.metrics["counts"]
    assert counts["train_samples"] + counts["held_out_samples"] >= 39 * 9
    assert store.active_model(Modality.FACE) == active_before

    listing = twinstream(stack_settings, "models", "list")
    assert version in listing.stdout and active_before.version in listing.stdout


def test_embed_prints_one_unit_vector_per_file(stack, stack_settings, demo_data):
    files = [str(item.path) for item in demo_data.held_out[Modality.AUDIO][:2]]
    result = twinstream(stack_settings, "embed", "--modality", "audio", *files)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    for line in lines:
        assert abs(sum(v * v for v in line["vector"]) - 1) < 1e-3


def test_models_activate_asks_the_running_service_which_refuses_an_unknown_version(
    stack, stack_settings
):
    result = twinstream(stack_settings, "models", "activate", "face-v999")
    assert result.returncode == 1
    assert "the service refused" in result.stderr and "face-v999" in result.stderr


def test_produce_publishes_a_data_set_from_a_path(stack, stack_settings, tmp_path):
    store = MetadataStore.from_settings(stack_settings)
    before = store.get_item(Modality.FACE, "orl/s2/1")
    size_before = ray.get(stack.holders[Modality.FACE].size.remote())
    source = next(item.path.parent for item in demo_faces() if item.label == "s2")
    (tmp_path / "s2").mkdir()
    for shot in source.glob("*.pgm"):
        (tmp_path / "s2" / shot.name).write_bytes(shot.read_bytes())
    result = twinstream(stack_settings, "produce", "--modality", "face", "--path", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "produced 10 face items" in result.stderr
    deadline = time.monotonic() + 60
    while store.get_item(Modality.FACE, "orl/s2/1").source_offset == before.source_offset:
        assert time.monotonic() < deadline, "the re-produced item was not re-indexed"
        time.sleep(0.5)
    # Shots 1-9 were indexed already (same key again = upsert, one entry each);
    # shot 10 is held out by the fixture, so it is the one new entry.
    assert ray.get(stack.holders[Modality.FACE].size.remote()) == size_before + 1


@pytest.fixture
def no_service(tmp_path, monkeypatch) -> CliRunner:
    """A runner whose settings name an empty state dir and a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TWINSTREAM_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TWINSTREAM_HTTP_PORT", str(port))
    return CliRunner()


def test_activation_with_no_service_answering_needs_offline(no_service):
    refused = no_service.invoke(app, ["models", "activate", "face-v1"])
    assert refused.exit_code == 1
    assert "no service answers" in refused.output and "--offline" in refused.output
    offline = no_service.invoke(app, ["models", "activate", "face-v1", "--offline"])
    assert offline.exit_code == 1 and "unknown model version" in offline.output


def test_training_to_activate_with_no_service_is_refused_before_it_trains(no_service):
    result = no_service.invoke(app, ["train", "--modality", "face"])
    assert result.exit_code == 1 and "--offline" in result.output


def test_every_command_takes_the_modality_the_same_way():
    runner = CliRunner()
    for command in (["produce"], ["train"], ["embed"], ["eval"]):
        result = runner.invoke(app, [*command, "--modality", "speech"])
        assert result.exit_code == 2 and "face" in result.output, command


def test_up_help_tells_where_it_runs_and_that_the_first_start_trains():
    text = " ".join(CliRunner().invoke(app, ["up", "--help"]).output.split())
    assert "existing Ray cluster" in text and "first start trains" in text
