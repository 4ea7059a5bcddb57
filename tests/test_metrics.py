"""GET /metrics: Prometheus text with request, index, ingest and lag numbers from the live stack."""

import time

from prometheus_client.parser import text_string_to_metric_families

LAG_WAIT_S = 60


def scrape(api) -> dict[tuple[str, tuple], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_report_requests_index_and_lag(api, stack):
    api.post("/v1/search", json={"modality": "face", "item": {"id": "orl/s1/1"}, "k": 1})
    api.get("/v1/items/face/no-such-item")
    deadline = time.monotonic() + LAG_WAIT_S
    while True:
        samples = scrape(api)
        lag = [v for (name, _), v in samples.items() if name == "twinstream_consumer_lag"]
        if (lag and not any(lag)) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(lag) == 8 and not any(lag), "the index should have caught up with the log"

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("twinstream_index_items", modality="face") >= 360
    assert value("twinstream_index_items", modality="audio") >= 180
    # Counted since the holder (re)started: a holder-kill test before this one resets it.
    assert value("twinstream_indexed_upserts", modality="face") > 0
    searches = value(
        "twinstream_http_requests_total", method="POST", route="/v1/search", status="200"
    )
    assert searches >= 1
    # Routes are labelled by template, never by item id.
    assert (
        value(
            "twinstream_http_requests_total",
            method="GET",
            route="/v1/items/{modality}/{item_id:path}",
            status="404",
        )
        >= 1
    )
    assert value("twinstream_http_request_seconds_count", method="POST", route="/v1/search") >= 1
    # The ingest actors' own numbers: items/s is the rate of the items counter.
    actor = {"actor": "ingest-0"}
    assert value("twinstream_ingest_items_total", **actor) >= 360
    assert value("twinstream_dead_letters_total", **actor) >= 0
    assert value("twinstream_ingest_deletes_total", **actor) >= 0
    assert value("twinstream_ingest_retries_total", **actor) >= 0
    assert value("twinstream_ingest_stalls_total", **actor) >= 0
    batches = value("twinstream_ingest_batch_size_count", **actor)
    assert batches >= 1
    assert value("twinstream_ingest_batch_size_bucket", le="+Inf", **actor) == batches
    assert value("twinstream_ingest_batch_size_sum", **actor) >= 360
    assert value("twinstream_embed_seconds_count", **actor) >= 1
    assert value("twinstream_embed_seconds_sum", **actor) > 0
    for modality in ("face", "audio"):
        assert value("twinstream_checkpoint_age_seconds", modality=modality) >= 0
        assert value("twinstream_checkpoint_duration_seconds", modality=modality) >= 0
    versions = [
        dict(labels) for (name, labels), v in samples.items() if name == "twinstream_model_info"
    ]
    assert {v["modality"] for v in versions} == {"face", "audio"}
