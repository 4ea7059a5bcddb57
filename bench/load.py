"""A closed-loop HTTP load generator: N clients, each sending its next request on an answer.

Closed loop (not a fixed arrival rate) because the question is how many queries a
service sustains at a given concurrency, and what latency its callers see then.
Bodies are encoded once up front so the client spends its share of the shared
CPUs on sending, not on JSON.
"""

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import cycle

import httpx
import numpy as np

WARMUP_S = 0.5
Headers = Mapping[str, str] | None


@dataclass(frozen=True)
class Body:
    content: bytes
    content_type: str


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    qps: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


async def _run(
    url: str, bodies: Sequence[Body], concurrency: int, duration_s: float, headers: Headers
) -> tuple[list[float], int, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60, headers=headers) as client:
        latencies: list[float] = []
        errors = 0
        ring = cycle(bodies)
        measuring_from = time.perf_counter() + WARMUP_S
        stop_at = measuring_from + duration_s

        async def one_client() -> None:
            nonlocal errors
            while (start := time.perf_counter()) < stop_at:
                body = next(ring)
                response = await client.post(
                    url, content=body.content, headers={"content-type": body.content_type}
                )
                if start >= measuring_from:
                    latencies.append(time.perf_counter() - start)
                    errors += response.status_code != 200

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        # The clients in flight at stop_at finish after it; count the time they took.
        return latencies, errors, time.perf_counter() - measuring_from


def measure(
    url: str, bodies: Sequence[Body], concurrency: int, duration_s: float, headers: Headers = None
) -> LoadResult:
    """`headers` go with every request (an API key)."""
    latencies, errors, elapsed = asyncio.run(
        _run(url, bodies, concurrency, duration_s, headers or {})
    )
    ms = np.asarray(latencies) * 1000
    return LoadResult(
        concurrency=concurrency,
        requests=len(latencies),
        errors=errors,
        qps=len(latencies) / elapsed,
        p50_ms=float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        p99_ms=float(np.percentile(ms, 99)) if len(ms) else float("nan"),
    )
