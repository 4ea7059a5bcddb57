"""The `twinstream` command line: the same settings and state as the running service."""

import dataclasses
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.data.demo import demo_items
from pipeline.data.items import DataItem
from pipeline.data.tree import MEDIA_SUFFIXES, tree_items
from pipeline.decode.errors import DecodeError
from pipeline.inputs import decode_detailed
from pipeline.kafka.launcher import EmbeddedKafka
from pipeline.kafka.topics import ensure_topics
from pipeline.produce import Compression, produce_items
from pipeline.settings import Settings
from pipeline.store.artifacts import ArtifactUnavailableError, ModelArtifacts
from pipeline.store.metadata import MetadataStore
from schemas.api import DEFAULT_K, MAX_K
from schemas.items import Modality
from services.client import NoServiceError, RefusedError, ServiceClient, item_ref

# torch, Ray and Serve are imported by the commands that use them, so that one that only talks
# to the broker, the store or the running service starts at once.
if TYPE_CHECKING:
    from pipeline.embed.model import EmbeddingModel

# Markdown: docstrings wrap as paragraphs in --help instead of keeping their line breaks.
app = typer.Typer(
    help="Streaming similarity search for faces and audio.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
kafka_app = typer.Typer(
    help="The embedded Apache Kafka broker.", no_args_is_help=True, rich_markup_mode="markdown"
)
app.add_typer(kafka_app, name="kafka")
models_app = typer.Typer(
    help="Trained model versions: list them, switch between them.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(models_app, name="models")
console = Console(stderr=True)

READY_TIMEOUT_S = 900.0
ModalityOption = Annotated[Modality, typer.Option(help="which kind of item")]
OfflineOption = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="no service is running: make the version active in the store, for the next start",
    ),
]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    )


def _train(
    settings: Settings, store: MetadataStore, modality: Modality, samples: list, activate: bool
) -> str:
    from pipeline.train.job import train_and_register

    with _progress() as bar:
        task = bar.add_task(f"train {modality.value}", total=1.0)
        record = train_and_register(
            settings,
            store,
            modality,
            samples,
            activate=activate,
            progress=lambda done, phase: bar.update(
                task, completed=done, description=f"train {modality.value}: {phase}"
            ),
        ).record
    eer = record.metrics.get("eer")
    console.print(f"{record.version}: held-out EER {eer:.3f}, threshold {record.threshold:.3f}")
    return record.version


def _no_service(client: ServiceClient, version: str) -> typer.Exit:
    console.print(
        f"no service answers at {client.url}: start it, or pass --offline to make "
        f"{version} active in the store for the next start"
    )
    return typer.Exit(1)


def _activate(settings: Settings, store: MetadataStore, version: str, offline: bool) -> None:
    """Through the running service, so it re-embeds and switches without a pause; only
    with `offline` in the store, since a switch behind a running service's back would
    leave its index on the old model."""
    client = ServiceClient(settings, timeout_s=None)
    try:
        client.post(f"/v1/models/{version}/activate")
    except NoServiceError as error:
        if not offline:
            raise _no_service(client, version) from error
        try:
            store.activate_model(version)
        except LookupError as lookup:
            console.print(str(lookup))
            raise typer.Exit(1) from lookup
        console.print(f"{version} is active in the store: the next start uses it")
        return
    except RefusedError as error:
        console.print(f"the service refused: {error}")
        raise typer.Exit(1) from error
    console.print(f"{version} is active: the running service switched to it")


def _stored_model(settings: Settings, modality: Modality, version: str | None) -> "EmbeddingModel":
    """The named (or the active) version of `modality`; exits with the reason when there is
    none or no copy of its artifact is reachable."""
    from pipeline.embed.model import EmbeddingModel

    store = MetadataStore.from_settings(settings)
    record = store.get_model(version) if version else store.active_model(modality)
    if record is None or record.modality is not modality:
        console.print(f"no {modality.value} model {version or '(active)'}")
        raise typer.Exit(1)
    try:
        return EmbeddingModel.from_record(record, ModelArtifacts(store, settings.models_dir))
    except ArtifactUnavailableError as error:
        console.print(str(error))
        raise typer.Exit(1) from error


def _serve_until_signalled() -> None:
    """Ctrl-C and SIGTERM both mean a clean stop.

    Installed only now because ray.init replaces SIGTERM with a crash handler that
    aborts without shutting anything down, and a shell may start us with SIGINT ignored.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    signal.pause()


@app.command()
def up(
    demo: Annotated[
        bool, typer.Option(help="also stream the demo data sets and wait for them")
    ] = False,
) -> None:
    """Start the stack (Kafka, Ray, ingest actors, Serve API) and serve until Ctrl-C.

    Starts a local Ray, or runs on an existing Ray cluster when TWINSTREAM_RAY_ADDRESS is
    set; starts an embedded Kafka broker unless TWINSTREAM_KAFKA_BOOTSTRAP points to another
    machine's. The first start trains a model per modality on the demo data (minutes); later
    starts use the stored active ones.
    """
    from pipeline.train.job import demo_samples
    from services.stack import Stack

    settings = Settings()
    store = MetadataStore.from_settings(settings)
    stack = Stack(settings, log=console.print)
    stack.preflight()
    try:
        stack.start_kafka()
        for modality in Modality:
            if store.active_model(modality) is None:
                console.print(f"no {modality.value} model yet: training one on the demo data")
                _train(settings, store, modality, demo_samples(modality), activate=True)
        stack.start_ray()
        stack.start_services()
        if demo:
            ids: dict[Modality, list[str]] = {}
            for modality in Modality:
                items = list(demo_items(modality))
                ids[modality] = [i.id for i in items]
                # After a restart the index already holds them: produce only what it lacks.
                missing = set(stack.missing(modality, ids[modality]))
                console.print(f"producing {len(missing)} of {len(items)} {modality} items")
                produce_items(settings, [i for i in items if i.id in missing])
            stack.wait_indexed(ids, READY_TIMEOUT_S)
        print(f"twinstream ready: {stack.url}", flush=True)
        _serve_until_signalled()
    except KeyboardInterrupt:
        console.print("shutting down")
    finally:
        stack.stop()


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the embedded broker (downloads its jars with mvn the first time)."""
    settings = Settings()
    broker = EmbeddedKafka(settings)
    broker.ensure_jars()
    broker.start()
    ensure_topics(settings)
    console.print(f"kafka running at {settings.kafka_bootstrap}")


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the embedded broker cleanly; its data stays in the state dir."""
    EmbeddedKafka(Settings()).stop()


@kafka_app.command("status")
def kafka_status() -> None:
    """Print whether the embedded broker runs; exit 1 if it does not."""
    status = EmbeddedKafka(Settings()).status()
    print(json.dumps({"running": status.running, "pid": status.pid, "bootstrap": status.bootstrap}))
    raise typer.Exit(0 if status.running else 1)


def _items_to_produce(
    modality: Modality, root: Path | None, label: str | None, id_prefix: str | None
) -> list[DataItem]:
    if root is None:
        if label is not None or id_prefix is not None:
            console.print("--label and --id-prefix name the items of a DIR: give one")
            raise typer.Exit(2)
        return list(demo_items(modality))
    prefix = f"{root.resolve().name}/" if id_prefix is None else id_prefix
    try:
        items = list(tree_items(modality, root, prefix, label))
    except ValueError as error:
        console.print(str(error))
        raise typer.Exit(1) from error
    if not items:
        suffixes = ", ".join(sorted(MEDIA_SUFFIXES[modality]))
        console.print(f"no {modality.value} files ({suffixes}) under {root}")
        raise typer.Exit(1)
    return items


@app.command()
def produce(
    modality: ModalityOption,
    root: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR",
            exists=True,
            file_okay=False,
            show_default=False,
            help="a folder of images (PNG, JPEG, PGM) or WAV files, at any depth; "
            "default: the modality's demo set",
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(help="label every item with this (default: its sub-folder of DIR's name)"),
    ] = None,
    id_prefix: Annotated[
        str | None,
        typer.Option(
            help="put before each file's path under DIR, less its suffix, to make its id "
            "(default: DIR's name and /)"
        ),
    ] = None,
    compression: Annotated[
        Compression, typer.Option(help="how the producer compresses its record batches")
    ] = Compression.NONE,
) -> None:
    """Publish files to the modality's Kafka topic: key = id, label and content type in
    headers. `DIR/alice/2020/1.jpg` becomes item `DIR/alice/2020/1` labelled `alice`; a file
    directly in DIR is unlabelled (indexed, not trained on) unless --label is given."""
    settings = Settings()
    items = _items_to_produce(modality, root, label, id_prefix)
    ensure_topics(settings)
    with _progress() as bar:
        task = bar.add_task(f"produce {modality}", total=len(items))
        sent = produce_items(
            settings,
            items,
            progress=lambda n: bar.update(task, completed=n),
            compression=compression,
        )
    console.print(f"produced {len(sent)} {modality} items")


class Output(StrEnum):
    JSON = "json"
    TABLE = "table"


ItemsArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="ITEM",
        show_default=False,
        help="files (image or WAV) to send, or ids of indexed items: a name that is no file "
        "is an id",
    ),
]
OutputOption = Annotated[
    Output, typer.Option("--format", help="JSON lines, or a short table for people")
]


@contextmanager
def _service(settings: Settings) -> Iterator[ServiceClient]:
    try:
        yield ServiceClient(settings)
    except NoServiceError as error:
        console.print(f"{error}: start it with `twinstream up`")
        raise typer.Exit(1) from error


@app.command()
def search(
    modality: ModalityOption,
    items: ItemsArgument,
    k: Annotated[int, typer.Option(min=1, max=MAX_K, help="matches per item")] = DEFAULT_K,
    label: Annotated[str | None, typer.Option(help="only match items with this label")] = None,
    output: OutputOption = Output.JSON,
) -> None:
    """The `k` indexed items nearest each file or id, nearest first, asked of the running
    service: one JSON line per item, `{"item", "matches", "model_version", "query_face"}`,
    or `{"item", "status", "error"}` for one it refuses (exit status 1 if any)."""
    table = Table("item", "match", "label", "distance", "same")
    failed = False
    with _service(Settings()) as client:
        for item in items:
            body = {"modality": modality.value, "item": item_ref(item), "k": k, "label": label}
            try:
                answer = client.post("/v1/search", body)
            except RefusedError as error:
                failed = True
                if output is Output.JSON:
                    print(json.dumps({"item": item, "status": error.status, "error": str(error)}))
                else:
                    console.print(f"{item}: the service refused: {error}")
                continue
            if output is Output.JSON:
                print(json.dumps({"item": item} | answer))
                continue
            for match in answer["matches"]:
                distance, same = f"{match['distance']:.4f}", _yes(match["same"])
                table.add_row(item, match["id"], match["label"], distance, same)
    if output is Output.TABLE:
        Console().print(table)
    if failed:
        raise typer.Exit(1)


@app.command()
def similarity(
    modality: ModalityOption,
    a: Annotated[str, typer.Argument(metavar="A", help="a file, or an indexed item's id")],
    b: Annotated[str, typer.Argument(metavar="B", help="a file, or an indexed item's id")],
    output: OutputOption = Output.JSON,
) -> None:
    """Whether two files or ids are the same person or sound, by the running service's
    active model: one JSON line, `{"a", "b", "distance", "same", "threshold",
    "model_version", "faces"}`."""
    body = {"modality": modality.value, "a": item_ref(a), "b": item_ref(b)}
    with _service(Settings()) as client:
        try:
            answer = client.post("/v1/similarity", body)
        except RefusedError as error:
            console.print(f"the service refused: {error}")
            raise typer.Exit(1) from error
    if output is Output.JSON:
        print(json.dumps({"a": a, "b": b} | answer))
        return
    table = Table("a", "b", "distance", "same", "threshold", "model")
    table.add_row(
        a,
        b,
        f"{answer['distance']:.4f}",
        _yes(answer["same"]),
        f"{answer['threshold']:.4f}",
        answer["model_version"],
    )
    Console().print(table)


def _yes(same: bool) -> str:
    return "yes" if same else "no"


@app.command()
def train(
    modality: ModalityOption,
    exclude: Annotated[
        list[str] | None, typer.Option(help="skip item ids matching this glob")
    ] = None,
    activate: Annotated[bool, typer.Option(help="make the new version the active one")] = True,
    offline: OfflineOption = False,
) -> None:
    """Train a model on the stored labelled items; prints the new version."""
    from pipeline.train.job import stored_samples

    settings = Settings()
    store = MetadataStore.from_settings(settings)
    # Refused before the minutes of training, not after them.
    client = ServiceClient(settings)
    if activate and not offline and not client.answers():
        raise _no_service(client, "the new version")
    samples = stored_samples(settings, store, modality, exclude or [])
    if not samples:
        console.print(f"no labelled {modality.value} items stored yet: produce some first")
        raise typer.Exit(1)
    version = _train(settings, store, modality, samples, activate=False)
    if activate:
        _activate(settings, store, version, offline)
    print(version)


@app.command()
def embed(
    modality: ModalityOption,
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="image or WAV files")
    ],
    model: Annotated[
        str | None, typer.Option(help="model version (default: the active one)")
    ] = None,
) -> None:
    """One JSON line per file: {"file", "vector"} (and "face", where the face was), or
    {"file", "error"} for a file the model cannot take (exit status 1 if any)."""
    encoder = _stored_model(Settings(), modality, model)
    failed = False
    for file in files:
        try:
            decoded = decode_detailed(encoder.config.input, file.read_bytes())
        except DecodeError as error:
            print(json.dumps({"file": str(file), "error": str(error)}))
            failed = True
            continue
        vector = encoder.embed(decoded.x[None])[0]
        line: dict[str, object] = {
            "file": str(file),
            "vector": [round(float(v), 6) for v in vector],
        }
        if decoded.face is not None:
            line["face"] = dataclasses.asdict(decoded.face)
        print(json.dumps(line))
    if failed:
        raise typer.Exit(1)


@models_app.command("list")
def models_list() -> None:
    """Every version with its modality, held-out EER and AUC, threshold and creation time;
    `*` marks the active ones."""
    store = MetadataStore.from_settings(Settings())
    table = Table("version", "modality", "active", "EER", "AUC", "threshold", "created")
    for record in store.list_models():
        table.add_row(
            record.version,
            record.modality.value,
            "*" if record.active else "",
            f"{record.metrics.get('eer', float('nan')):.3f}",
            f"{record.metrics.get('auc', float('nan')):.3f}",
            f"{record.threshold:.3f}",
            f"{record.created_at:%Y-%m-%d %H:%M}",
        )
    Console().print(table)


@models_app.command("activate")
def models_activate(
    version: Annotated[str, typer.Argument(help="the version to serve, e.g. face-v3")],
    offline: OfflineOption = False,
) -> None:
    """Switch a modality to a stored version (a rollback is one): the running service
    re-embeds its items and switches without a pause."""
    settings = Settings()
    _activate(settings, MetadataStore.from_settings(settings), version, offline)


@app.command("eval")
def evaluate(
    modality: ModalityOption,
    model: Annotated[
        str | None,
        typer.Option(
            help="score this stored version as it is (its numbers are an upper bound if it "
            "was trained on the demo data); default: train the production config per fold"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="report folder (default: <STATE_DIR>/eval/<time>)")
    ] = None,
) -> None:
    """Evaluate on unseen people (faces) or unseen words (speech): JSON, markdown, ROC/DET."""
    from pipeline.evaluation.report import markdown_table
    from pipeline.evaluation.suite import model_candidate, production_candidate, run_eval

    settings = Settings()
    if model is None:
        candidate = production_candidate(modality, settings.train_preset)
    else:
        candidate = model_candidate(_stored_model(settings, modality, model))
    stamp = f"{modality.value}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    folder = out or settings.state_dir / "eval" / stamp
    results, paths = run_eval(modality, candidate, folder, console.print)
    print(markdown_table(results), end="")
    for path in paths:
        console.print(f"wrote {path}")


@app.command()
def bench(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="run just these benchmarks")
    ] = None,
) -> None:
    """Run the benchmarks; numbers go to bench/results/*.json and bench/results/SUMMARY.md."""
    from bench.runner import run_benchmarks

    for path in run_benchmarks(only or ()):
        console.print(f"wrote {path}")


if __name__ == "__main__":
    app()
