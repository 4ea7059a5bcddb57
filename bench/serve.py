"""Query API throughput and latency against a no-op Serve app and a plain uvicorn process.

For each ingress (Serve's Python proxy, then HAProxy) it starts its own stack (temp
state dir, quick-trained models, its own ports) and drives `/v1/search` and
`/v1/similarity` with face bytes at concurrency 1, 8 and 32 against: the API under
several Serve configurations, (a) a no-op Serve app on the same Serve instance, with
the same ingress and admission limit, and (b) a plain uvicorn + FastAPI process doing
the same decode + embed + FAISS search (bench/serve_baselines.py). All in one run, on
the same machine, so only the ratios travel.
"""

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import ray
from ray import serve

from bench.load import Body, LoadResult, measure
from bench.report import BenchReport
from bench.serve_baselines import noop_serve_app
from bench.stack import BENCH_HTTP_PORT, bench_stack
from pipeline.data.asterisk import common_words, iter_asterisk
from pipeline.data.items import DataItem
from pipeline.data.orl import iter_orl
from pipeline.placement import plan_placement
from pipeline.settings import Settings
from schemas.items import Modality
from services.api.deployment import query_service
from services.stack import SERVE_APP

PLAIN_PORT = BENCH_HTTP_PORT + 1
CONCURRENCY = (1, 8, 32)
CELL_S = float(os.environ.get("TWINSTREAM_BENCH_CELL_S", "4"))
# Speech is only indexed because the stack wants both modalities; queries are faces.
AUDIO_WORDS = 12
PLAIN_START_TIMEOUT_S = 120
QUERY_SHOT = "10"
WARMUP_REQUESTS = 5
# Serve configurations of the API tried in this run: name -> settings changed.
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "no batching": {"api_batch_max_size": 1},
    "batch 32, wait 10 ms": {"api_batch_max_size": 32, "api_batch_wait_s": 0.01},
    "2 torch threads": {"api_embed_threads": 2},
    "max_ongoing 8": {"api_max_ongoing_requests": 8},
    "2 replicas": {"api_replicas": 2},
    "no index copies": {"api_index_copies": False},
}
ENDPOINTS = ("search", "similarity")
# A stack-wide choice (it is made when Ray starts), so each gets its own stack.
INGRESSES = ("proxy", "haproxy")
# HAProxy ingress is refused without a key (its replicas listen on every interface).
BENCH_API_KEY = "twinstream-bench"
Sweeps = dict[str, dict[str, list[LoadResult]]]


def _json(body: dict[str, Any]) -> Body:
    return Body(json.dumps(body).encode(), "application/json")


def _bodies(faces: list[DataItem]) -> dict[str, list[Body]]:
    data = [{"data": base64.b64encode(f.read_bytes()).decode()} for f in faces]
    return {
        "search": [_json({"modality": "face", "item": d, "k": 5}) for d in data],
        "similarity": [
            _json({"modality": "face", "a": a, "b": b})
            for a, b in zip(data, data[1:] + data[:1], strict=True)
        ],
    }


@contextmanager
def _plain_process(settings: Settings) -> Iterator[str]:
    env = os.environ | {"TWINSTREAM_STATE_DIR": str(settings.state_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.serve_baselines", "--port", str(PLAIN_PORT)], env=env
    )
    url = f"http://127.0.0.1:{PLAIN_PORT}"
    try:
        deadline = time.monotonic() + PLAIN_START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the plain uvicorn baseline did not start")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _warm(base_url: str, bodies: dict[str, list[Body]], headers: dict[str, str]) -> None:
    """A replica loads its model on its first query; that must not land in a cell."""
    for endpoint in ENDPOINTS:
        for body in bodies[endpoint][:WARMUP_REQUESTS]:
            httpx.post(
                f"{base_url}/v1/{endpoint}",
                content=body.content,
                headers={"content-type": body.content_type} | headers,
                timeout=120,
            )


def _sweep(
    base_url: str, bodies: dict[str, list[Body]], headers: dict[str, str] | None = None
) -> dict[str, list[LoadResult]]:
    headers = headers or {}
    _warm(base_url, bodies, headers)
    return {
        endpoint: [
            measure(f"{base_url}/v1/{endpoint}", bodies[endpoint], c, CELL_S, headers)
            for c in CONCURRENCY
        ]
        for endpoint in ENDPOINTS
    }


def _ratios(
    ours: dict[str, list[LoadResult]], baseline: dict[str, list[LoadResult]]
) -> dict[str, list[float]]:
    return {
        endpoint: [
            round(a.qps / b.qps, 3) if b.qps else float("nan")
            for a, b in zip(ours[endpoint], baseline[endpoint], strict=True)
        ]
        for endpoint in ENDPOINTS
    }


def _cell(result: LoadResult) -> str:
    errors = f", {result.errors} errors" if result.errors else ""
    return f"{result.qps:.0f} ({result.p50_ms:.0f}/{result.p99_ms:.0f} ms{errors})"


def _markdown(ingress: str, sweeps: Sweeps, ratios: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"## serve, {ingress} ingress: query API vs a no-op Serve app (a) and plain uvicorn + "
        "FastAPI (b)",
        "",
        f"Face bytes as queries, closed loop, {CELL_S:.0f} s per cell; "
        "QPS (p50/p99 latency). Ratios are QPS over (a) and over (b); targets ≥ 0.8 and ≥ 1.0.",
        "",
    ]
    header = " | ".join(f"c={c}" for c in CONCURRENCY)
    levels = "/".join(str(c) for c in CONCURRENCY)
    for endpoint in ENDPOINTS:
        lines += [f"### /v1/{endpoint}", "", f"| target | {header} |", "|---|---|---|---|"]
        for name, sweep in sweeps.items():
            lines.append(f"| {name} | " + " | ".join(_cell(r) for r in sweep[endpoint]) + " |")
        lines += ["", f"| config | ×(a) at c={levels} | ×(b) at c={levels} |", "|---|---|---|"]
        for name, pair in ratios.items():
            a = " / ".join(f"{x:.2f}" for x in pair["vs_noop_serve"][endpoint])
            b = " / ".join(f"{x:.2f}" for x in pair["vs_plain_uvicorn"][endpoint])
            lines.append(f"| {name} | {a} | {b} |")
        lines.append("")
    return "\n".join(lines)


def _pass(
    ingress: str, items: dict[Modality, list[DataItem]], bodies: dict[str, list[Body]]
) -> Sweeps:
    key = BENCH_API_KEY if ingress == "haproxy" else None
    headers = {"x-api-key": key} if key else {}
    sweeps: Sweeps = {}
    with bench_stack(items, log=True, api_ingress=ingress, api_key=key) as stack:
        with _plain_process(stack.settings) as plain_url:
            print(f"bench serve ({ingress}): (b) plain uvicorn + FastAPI")
            sweeps["(b) plain uvicorn"] = _sweep(plain_url, bodies)
        with noop_serve_app(stack.settings.api_max_ongoing_requests) as prefix:
            print(f"bench serve ({ingress}): (a) no-op Serve app")
            sweeps["(a) no-op Serve"] = _sweep(f"{stack.url}{prefix}", bodies)
        for name, changes in CONFIGS.items():
            print(f"bench serve ({ingress}): API, {name}")
            variant = stack.settings.model_copy(update=changes)
            gpus = plan_placement(ray.cluster_resources(), variant).api_gpus
            serve.run(query_service(variant, gpus), name=SERVE_APP, route_prefix="/")
            sweeps[f"API, {name}"] = _sweep(stack.url, bodies, headers)
    return sweeps


def run(results_dir: Path) -> BenchReport:
    del results_dir  # the runner writes the report
    faces = [f for f in iter_orl() if f.id.endswith(f"/{QUERY_SHOT}")]
    bodies = _bodies(faces)
    items = {
        Modality.FACE: list(iter_orl()),
        Modality.AUDIO: list(iter_asterisk(words=common_words()[:AUDIO_WORDS])),
    }
    results: dict[str, Any] = {
        "cell_s": CELL_S,
        "concurrency": list(CONCURRENCY),
        "configs": CONFIGS,
    }
    sections = []
    for ingress in INGRESSES:
        sweeps = _pass(ingress, items, bodies)
        ratios = {
            name: {
                "vs_noop_serve": _ratios(sweeps[f"API, {name}"], sweeps["(a) no-op Serve"]),
                "vs_plain_uvicorn": _ratios(sweeps[f"API, {name}"], sweeps["(b) plain uvicorn"]),
            }
            for name in CONFIGS
        }
        results[ingress] = {
            "targets": {
                name: {e: [r.as_dict() for r in sweep[e]] for e in ENDPOINTS}
                for name, sweep in sweeps.items()
            },
            "ratios": ratios,
        }
        sections.append(_markdown(ingress, sweeps, ratios))
    return BenchReport(name="serve", results=results, markdown="\n".join(sections))
