"""GET /metrics: Prometheus text with request, index, ingest and lag numbers from the live stack.

The stack is shared with other tests, so counters are checked by how much this test's own
requests and items move them.
"""

import asyncio
import io
import time
import uuid

import ray
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from pipeline.kafka.clients import headers, make_producer
from schemas.items import ITEM_TOPICS, Modality
from services.api.metrics import PipelineProbe

LAG_WAIT_S = 120
ITEMS_ROUTE = "/v1/items/{modality}/{item_id:path}"
Samples = dict[tuple[str, tuple], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(api) -> Samples:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def _grey_png() -> bytes:
    """A good image with no face in it: a dead letter."""
    out = io.BytesIO()
    Image.new("L", (160, 120), 128).save(out, format="PNG")
    return out.getvalue()


def test_metrics_count_this_tests_requests_and_dead_letter(api, stack, stack_settings):
    before = scrape(api)
    assert (
        api.post(
            "/v1/search", json={"modality": "face", "item": {"id": "orl/s1/1"}, "k": 1}
        ).status_code
        == 200
    )
    assert api.get("/v1/items/face/no-such-item").status_code == 404
    producer = make_producer(stack_settings)
    producer.send(
        ITEM_TOPICS[Modality.FACE],
        key=f"metrics-{uuid.uuid4().hex[:8]}/no-face".encode(),
        value=_grey_png(),
        headers=headers(modality="face", label="nobody"),
    )
    producer.flush()
    producer.close()

    deadline = time.monotonic() + LAG_WAIT_S
    while True:
        after = scrape(api)
        lag = [v for (name, _), v in after.items() if name == "twinstream_consumer_lag"]
        dead = total(after, "twinstream_dead_letters_total") - total(
            before, "twinstream_dead_letters_total"
        )
        if (dead >= 1 and lag and not any(lag)) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(lag) == 8 and not any(lag), "the index should have caught up with the log"
    # Every partition of both item topics is held by an ingest actor.
    assert total(after, "twinstream_ingest_partitions_held") == 8
    assert dead == 1

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    search = {"method": "POST", "route": "/v1/search"}
    assert moved("twinstream_http_requests_total", status="200", **search) == 1
    assert moved("twinstream_http_request_seconds_count", **search) == 1
    # Routes are labelled by template, never by item id.
    assert (
        moved("twinstream_http_requests_total", method="GET", route=ITEMS_ROUTE, status="404") == 1
    )
    assert not any("no-such-item" in str(labels) for _, labels in after)
    # A dead letter is neither indexed nor retried, and nothing stalled.
    for name in (
        "twinstream_ingest_retries_total",
        "twinstream_ingest_stalls_total",
        "twinstream_ingest_rejoins_total",
    ):
        assert total(after, name) == total(before, name)
    assert value(after, "twinstream_index_items", modality="face") == value(
        before, "twinstream_index_items", modality="face"
    )

    assert value(after, "twinstream_index_items", modality="face") >= 360
    assert value(after, "twinstream_index_items", modality="audio") >= 180
    actor = {"actor": "ingest-0"}
    batches = value(after, "twinstream_ingest_batch_size_count", **actor)
    assert batches >= 1
    assert value(after, "twinstream_ingest_batch_size_bucket", le="+Inf", **actor) == batches
    for modality in ("face", "audio"):
        assert ("twinstream_checkpoint_age_seconds", (("modality", modality),)) in after
        assert ("twinstream_checkpoint_duration_seconds", (("modality", modality),)) in after
    versions = [dict(labels) for (name, labels) in after if name == "twinstream_model_info"]
    assert {v["modality"] for v in versions} == {"face", "audio"}


@ray.remote(num_cpus=0)
class _Gone:
    """Stands for a holder only by being dead: every call to it fails as a lost actor's does."""

    def stats(self) -> dict:
        raise AssertionError("never reached: the actor is killed first")


def test_a_scrape_answers_while_an_index_holder_is_down(stack, stack_settings):
    """The scrape that would show an outage must not fail with it: a holder that cannot
    answer is `twinstream_index_holder_up` 0, the other 1."""
    gone = _Gone.remote()
    ray.kill(gone, no_restart=True)
    holders = {Modality.FACE: [[gone]], Modality.AUDIO: stack.holders[Modality.AUDIO]}
    response = asyncio.run(PipelineProbe(stack_settings, holders).render())
    assert response.status_code == 200
    samples = parse(bytes(response.body).decode())
    assert value(samples, "twinstream_index_holder_up", modality="face") == 0
    assert value(samples, "twinstream_index_holder_up", modality="audio") == 1
