"""The `twinstream` CLI against the running test stack's state, as a user would run it, and
what it does with no service to talk to."""

import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import Result
from kafka import TopicPartition
from PIL import Image
from typer.testing import CliRunner

from pipeline.data.orl import iter_orl as demo_faces
from pipeline.kafka.clients import make_consumer
from pipeline.kafka.launcher import EmbeddedKafka
from pipeline.produce import Compression
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from schemas.items import ITEM_TOPICS, Modality
from services.cli import app
from tests.fixtures_stack import delete_and_wait
from tests.log_segments import stored_batch
from tests.test_codecs import CODECS


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "TWINSTREAM_STATE_DIR": str(settings.state_dir),
        "TWINSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TWINSTREAM_TRAIN_PRESET": settings.train_preset,
        "TWINSTREAM_HTTP_PORT": str(settings.http_port),
    }


def twinstream(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    """A command in its own process, as a user runs it."""
    env = os.environ | cli_env(settings)
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def invoke(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    """A command in this process: the same code, without a second start-up's seconds."""
    for name, value in cli_env(settings).items():
        monkeypatch.setenv(name, value)
    return CliRunner().invoke(app, list(args))


def test_commands_that_need_no_model_do_not_load_torch_or_ray():
    """`kafka`, `search`, `produce` and `models` start without the seconds torch and Ray take
    to import: only `up`, `train`, `embed`, `eval` and `bench` import them."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, services.cli; print(sorted({'torch', 'ray'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


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


def _offsets(settings: Settings, modality: Modality) -> dict[TopicPartition, int]:
    consumer = make_consumer(settings, None)
    try:
        topic = ITEM_TOPICS[modality]
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return consumer.end_offsets(partitions)
    finally:
        consumer.close()


def _records_since(settings: Settings, start: dict[TopicPartition, int]) -> dict[str, object]:
    """key -> record of everything written to the partitions since `start`."""
    consumer = make_consumer(settings, None, consumer_timeout_ms=5000)
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        end = consumer.end_offsets(list(start))
        records = {}
        for record in consumer:
            records[record.key.decode()] = record
            if all(consumer.position(tp) >= end[tp] for tp in start):
                break
        return records
    finally:
        consumer.close()


def _header(record, name: str) -> str | None:
    return dict(record.headers).get(name, b"").decode() or None


def _shots(label: str) -> list[bytes]:
    return [item.read_bytes() for item in demo_faces() if item.label == label]


def test_produce_sends_a_tree_keyed_by_path_and_labelled_by_folder(stack, stack_settings, tmp_path):
    alice, bob = _shots("s3"), _shots("s4")
    files = {
        "alice/1.pgm": alice[0],
        "alice/2020/2.pgm": alice[1],
        "bob/1.pgm": bob[0],
        "loose.pgm": bob[1],
        "notes.txt": b"not a face",
    }
    root = tmp_path / "mine"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    prefix = f"cli-tree/{uuid.uuid4().hex[:8]}/"
    start = _offsets(stack_settings, Modality.FACE)

    result = twinstream(
        stack_settings,
        "produce",
        "--modality",
        "face",
        "--id-prefix",
        prefix,
        "--compression",
        "gzip",
        str(root),
    )
    assert result.returncode == 0, result.stderr
    assert "produced 4 face items" in result.stderr

    records = _records_since(stack_settings, start)
    labels = {"alice/1": "alice", "alice/2020/2": "alice", "bob/1": "bob", "loose": None}
    assert set(records) == {prefix + name for name in labels}
    for name, label in labels.items():
        record = records[prefix + name]
        assert record.value == files[f"{name}.pgm"]
        assert _header(record, "modality") == "face"
        assert _header(record, "label") == label
        assert _header(record, "content-type") == "image/x-portable-graymap"
        assert abs(int(_header(record, "produced-at")) - time.time() * 1000) < 600_000
    ids = [prefix + name for name in labels]
    stack.wait_indexed({Modality.FACE: ids}, timeout_s=120)
    store = MetadataStore.from_settings(stack_settings)
    assert [store.get_item(Modality.FACE, i).label for i in ids] == list(labels.values())
    delete_and_wait(stack, stack_settings, {Modality.FACE: ids})


def _doubled(shot: bytes) -> bytes:
    """The shot at twice its size, pixel by pixel: kafka-python sends a batch uncompressed when
    the codec does not shorten it, and snappy and lz4 find nothing to shorten in a camera's
    pixels, but do in repeated ones."""
    image = Image.open(io.BytesIO(shot))
    doubled = image.resize((2 * image.width, 2 * image.height), Image.Resampling.NEAREST)
    out = io.BytesIO()
    doubled.save(out, format="PPM")
    return out.getvalue()


def test_produce_compresses_with_each_codec_and_labels_every_item_with_label(
    stack, stack_settings, tmp_path, monkeypatch
):
    shot = _doubled(_shots("s5")[0])
    start = _offsets(stack_settings, Modality.FACE)
    ids = []
    for codec in Compression:
        root = tmp_path / f"cli-{codec}-{uuid.uuid4().hex[:8]}"
        (root / "nested").mkdir(parents=True)
        (root / "nested" / "shot.pgm").write_bytes(shot)
        args = ["produce", "--modality", "face", "--label", "carol", "--compression", codec]
        result = invoke(stack_settings, monkeypatch, *args, str(root))
        assert result.exit_code == 0, result.output
        ids.append(f"{root.name}/nested/shot")

    records = _records_since(stack_settings, start)
    assert set(records) == set(ids)
    assert all(_header(r, "label") == "carol" and r.value == shot for r in records.values())
    data_dir = EmbeddedKafka(stack_settings).data_dir
    stored = [
        stored_batch(data_dir, TopicPartition(r.topic, r.partition), r.offset).codec
        for r in (records[i] for i in ids)
    ]
    assert stored == [CODECS.get(codec, 0) for codec in Compression]  # 0: none
    stack.wait_indexed({Modality.FACE: ids}, timeout_s=120)
    delete_and_wait(stack, stack_settings, {Modality.FACE: ids})


def test_produce_refuses_a_tree_with_two_files_for_one_id(stack_settings, tmp_path, monkeypatch):
    (tmp_path / "s1").mkdir()
    for name in ("1.pgm", "1.png"):
        (tmp_path / "s1" / name).write_bytes(b"x")
    result = invoke(stack_settings, monkeypatch, "produce", "--modality", "face", str(tmp_path))
    assert result.exit_code == 1
    assert "would both be item 's1/1'" in " ".join(result.output.split())


def test_produce_without_a_folder_refuses_folder_options(stack_settings, monkeypatch):
    args = ["produce", "--modality", "face", "--label", "x"]
    result = invoke(stack_settings, monkeypatch, *args)
    assert result.exit_code == 2 and "give one" in result.output


def _held_out_photo(demo_data, label: str, folder: Path) -> str:
    """A shot never indexed, as a file (restored: some of the shipped files are damaged)."""
    shot = next(i for i in demo_data.held_out[Modality.FACE] if i.label == label)
    path = folder / f"{label}.pgm"
    path.write_bytes(shot.read_bytes())
    return str(path)


def test_search_prints_a_json_line_per_file_or_id(
    stack, stack_settings, demo_data, tmp_path, monkeypatch
):
    photo = _held_out_photo(demo_data, "s5", tmp_path)
    args = ["search", "--modality", "face", "--k", "3", photo, "orl/s5/1", "no/such/item"]
    result = invoke(stack_settings, monkeypatch, *args)
    assert result.exit_code == 1, result.output
    by_file, by_id, unknown = (json.loads(line) for line in result.stdout.splitlines())
    assert by_file["item"] == photo and len(by_file["matches"]) == 3
    assert by_file["matches"][0]["label"] == "s5" and by_file["matches"][0]["same"] is True
    assert by_file["model_version"].startswith("face-v")
    assert by_id["item"] == "orl/s5/1" and by_id["matches"][0]["id"] == "orl/s5/1"
    assert by_id["matches"][0]["distance"] == pytest.approx(0, abs=1e-4)
    assert unknown == {
        "item": "no/such/item",
        "status": 404,
        "error": "no face item with id 'no/such/item' is indexed",
    }


def test_search_and_similarity_print_short_tables(stack, stack_settings, monkeypatch):
    table = invoke(
        stack_settings,
        monkeypatch,
        "search",
        "--modality",
        "face",
        "--k",
        "2",
        "--format",
        "table",
        "orl/s6/1",
    )
    assert table.exit_code == 0, table.output
    rows = [line.split("│")[1:-1] for line in table.stdout.splitlines() if "orl/s6/" in line]
    assert [cell.strip() for cell in rows[0]] == ["orl/s6/1", "orl/s6/1", "s6", "0.0000", "yes"]
    assert len(rows) == 2

    pair = invoke(
        stack_settings,
        monkeypatch,
        "similarity",
        "--modality",
        "face",
        "--format",
        "table",
        "orl/s6/1",
        "orl/s7/1",
    )
    assert pair.exit_code == 0, pair.output
    row = next(line for line in pair.stdout.splitlines() if "orl/s7/1" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]][:2] == ["orl/s6/1", "orl/s7/1"]
    assert "│ no " in row


def test_similarity_compares_a_file_with_an_id(stack, stack_settings, demo_data, monkeypatch):
    held_out = next(i for i in demo_data.held_out[Modality.FACE] if i.label == "s8")
    path = str(held_out.path)
    for other, same in (("orl/s8/1", True), ("orl/s9/1", False)):
        result = invoke(
            stack_settings, monkeypatch, "similarity", "--modality", "face", path, other
        )
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        assert (answer["a"], answer["b"], answer["same"]) == (path, other, same)
        assert answer["distance"] > 0 and answer["model_version"].startswith("face-v")
        assert set(answer["faces"]) == {"a"}

    refused = invoke(
        stack_settings, monkeypatch, "similarity", "--modality", "face", path, "no/such/item"
    )
    assert refused.exit_code == 1
    assert "the service refused: no face item with id 'no/such/item'" in refused.output


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


@pytest.mark.parametrize(
    "command", [["search", "orl/s1/1"], ["similarity", "orl/s1/1", "orl/s1/2"]]
)
def test_queries_with_no_service_answering_say_where_none_answered(no_service, command):
    result = no_service.invoke(app, [command[0], "--modality", "face", *command[1:]])
    assert result.exit_code == 1
    assert "no service answers at http://127.0.0.1:" in result.output
    assert "twinstream up" in result.output


def test_training_to_activate_with_no_service_is_refused_before_it_trains(no_service):
    result = no_service.invoke(app, ["train", "--modality", "face"])
    assert result.exit_code == 1 and "--offline" in result.output


def test_every_command_takes_the_modality_the_same_way():
    runner = CliRunner()
    for command in (["produce"], ["train"], ["embed"], ["eval"], ["search"], ["similarity"]):
        result = runner.invoke(app, [*command, "--modality", "speech"])
        assert result.exit_code == 2 and "face" in result.output, command


def test_up_help_tells_where_it_runs_and_that_the_first_start_trains():
    text = " ".join(CliRunner().invoke(app, ["up", "--help"]).output.split())
    assert "existing Ray cluster" in text and "first start trains" in text
