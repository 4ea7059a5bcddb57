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
from pipeline.data.items import DataItem
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

app = typer.Typer(help="Streaming similarity search for faces and audio.", no_args_is_help=True)
kafka_app = typer.Typer(help="The embedded Apache Kafka broker.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
console = Console(stderr=True)

DATASETS = {"faces": Modality.FACE, "audio": Modality.AUDIO}
READY_TIMEOUT_S = 900.0


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
        )
    eer = record.metrics.get("eer")
    console.print(f"{record.version}: held-out EER {eer:.3f}, threshold {record.threshold:.3f}")
    return record.version


def _activate(settings: Settings, store: MetadataStore, version: str) -> None:
    """Through the running service when there is one, so it re-embeds and switches without
    a pause; otherwise in the store, for the next start."""
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    key = settings.api_key
    try:
        response = httpx.post(
            f"http://{host}:{settings.http_port}/v1/models/{version}/activate",
            headers={"x-api-key": key.get_secret_value()} if key else {},
            timeout=None,
        )
    except httpx.ConnectError:
        try:
            store.activate_model(version)
        except LookupError as error:
            console.print(str(error))
            raise typer.Exit(1) from error
        console.print(f"{version} is active (no service running: the next start uses it)")
        return
    if not response.is_success:
        console.print(f"the service refused: {response.json().get('detail', response.text)}")
        raise typer.Exit(1)
    console.print(f"{version} is active: the running service switched to it")


def _dataset_items(dataset: str, path: Path | None) -> list[DataItem]:
    return list(demo_items(DATASETS[dataset], path))


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
    """Start the local stack (Kafka, Ray, ingest actors, Serve API) and serve until Ctrl-C."""
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
            for dataset, modality in DATASETS.items():
                items = _dataset_items(dataset, None)
                ids[modality] = [i.id for i in items]
                # After a restart the index already holds them: produce only what it lacks.
                missing = set(stack.missing(modality, ids[modality]))
                console.print(f"producing {len(missing)} of {len(items)} {dataset} items")
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
    dataset: Annotated[str, typer.Argument(help="faces | audio")],
    path: Annotated[
        Path | None, typer.Option(help="data set root (default: the shipped one)")
    ] = None,
) -> None:
    """Publish a data set to its Kafka topic, labels in headers."""
    if dataset not in DATASETS:
        raise typer.BadParameter(f"choose one of {sorted(DATASETS)}", param_hint="DATASET")
    settings = Settings()
    ensure_topics(settings)
    items = _dataset_items(dataset, path)
    with _progress() as bar:
        task = bar.add_task(f"produce {dataset}", total=len(items))
        sent = produce_items(settings, items, progress=lambda n: bar.update(task, completed=n))
    console.print(f"produced {len(sent)} {dataset} items")


@app.command()
def train(
    modality: Annotated[Modality, typer.Option(help="face | audio")],
    exclude: Annotated[
        list[str] | None, typer.Option(help="skip item ids matching this glob")
    ] = None,
    activate: Annotated[bool, typer.Option(help="make the new version the active one")] = True,
) -> None:
    """Train a model on the stored labelled items; prints the new version."""
    settings = Settings()
    store = MetadataStore.from_settings(settings)
    samples = stored_samples(settings, store, modality, exclude or [])
    if not samples:
        console.print(f"no labelled {modality.value} items stored yet: produce some first")
        raise typer.Exit(1)
    version = _train(settings, store, modality, samples, activate=False)
    if activate:
        _activate(settings, store, version)
    print(version)


@app.command()
def embed(
    modality: Annotated[Modality, typer.Option(help="face | audio")],
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)],
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


@app.command()
def models(
    action: Annotated[str | None, typer.Argument(help="`activate` to switch versions")] = None,
    version: Annotated[str | None, typer.Argument(help="the version to activate")] = None,
) -> None:
    """List model versions with metrics, or `models activate VERSION`."""
    settings = Settings()
    store = MetadataStore.from_settings(settings)
    if action is not None:
        if action != "activate" or version is None:
            raise typer.BadParameter("usage: twinstream models activate VERSION")
        _activate(settings, store, version)
        return
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


@app.command("eval")
def evaluate(
    modality: Annotated[Modality, typer.Option(help="face | audio")],
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
