"""The `twinstream` command line: the same settings and state as the running service."""

import dataclasses
import json
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.data.demo import demo_items
from pipeline.decode.errors import DecodeError
from pipeline.embed.model import EmbeddingModel
from pipeline.evaluation.report import markdown_table
from pipeline.inputs import decode_detailed
from pipeline.kafka.launcher import EmbeddedKafka
from pipeline.kafka.topics import ensure_topics
from pipeline.produce import produce_items
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.train.job import demo_samples, stored_samples, train_and_register
from schemas.items import Modality
from services.stack import Stack

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


def _service_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    return f"http://{host}:{settings.http_port}"


def _no_service(settings: Settings, version: str) -> typer.Exit:
    console.print(
        f"no service answers at {_service_url(settings)}: start it, or pass --offline to make "
        f"{version} active in the store for the next start"
    )
    return typer.Exit(1)


def _activate(settings: Settings, store: MetadataStore, version: str, offline: bool) -> None:
    """Through the running service, so it re-embeds and switches without a pause; only
    with `offline` in the store, since a switch behind a running service's back would
    leave its index on the old model."""
    key = settings.api_key
    try:
        response = httpx.post(
            f"{_service_url(settings)}/v1/models/{version}/activate",
            headers={"x-api-key": key.get_secret_value()} if key else {},
            timeout=None,
        )
    except httpx.ConnectError as error:
        if not offline:
            raise _no_service(settings, version) from error
        try:
            store.activate_model(version)
        except LookupError as lookup:
            console.print(str(lookup))
            raise typer.Exit(1) from lookup
        console.print(f"{version} is active in the store: the next start uses it")
        return
    if not response.is_success:
        console.print(f"the service refused: {response.json().get('detail', response.text)}")
        raise typer.Exit(1)
    console.print(f"{version} is active: the running service switched to it")


def _service_answers(settings: Settings) -> bool:
    try:
        httpx.get(f"{_service_url(settings)}/healthz")
    except httpx.ConnectError:
        return False
    return True


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


@app.command()
def produce(
    modality: ModalityOption,
    path: Annotated[
        Path | None,
        typer.Option(help="data set root, laid out as the shipped one (default: the shipped one)"),
    ] = None,
) -> None:
    """Publish a data set to its modality's Kafka topic, labels in headers."""
    settings = Settings()
    ensure_topics(settings)
    items = list(demo_items(modality, path))
    with _progress() as bar:
        task = bar.add_task(f"produce {modality}", total=len(items))
        sent = produce_items(settings, items, progress=lambda n: bar.update(task, completed=n))
    console.print(f"produced {len(sent)} {modality} items")


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
    settings = Settings()
    store = MetadataStore.from_settings(settings)
    # Refused before the minutes of training, not after them.
    if activate and not offline and not _service_answers(settings):
        raise _no_service(settings, "the new version")
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
    store = MetadataStore.from_settings(Settings())
    record = store.get_model(model) if model else store.active_model(modality)
    if record is None or record.modality is not modality:
        console.print(f"no {modality.value} model {model or '(active)'}")
        raise typer.Exit(1)
    encoder = EmbeddingModel.from_record(record)
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
    from pipeline.evaluation.suite import model_candidate, production_candidate, run_eval

    settings = Settings()
    if model is None:
        candidate = production_candidate(modality, settings.train_preset)
    else:
        record = MetadataStore.from_settings(settings).get_model(model)
        if record is None or record.modality is not modality:
            console.print(f"no {modality.value} model {model}")
            raise typer.Exit(1)
        candidate = model_candidate(EmbeddingModel.from_record(record))
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
