"""`API_INGRESS=haproxy`: the whole stack behind Serve's HAProxy, as `twinstream up` starts it.

HAProxy ingress makes the replicas listen on every interface, so the stack only starts with
an API key; the key is then asked for through HAProxy like through the proxy, items stream
in and are found, and a clean stop leaves no HAProxy process behind.
"""

import base64
import time
from itertools import islice
from pathlib import Path

import httpx
from pydantic import SecretStr

from pipeline.data.orl import iter_orl
from pipeline.produce import produce_items
from tests.fixtures_up import UpProcess

KEY = "haproxy-test-key"
ITEMS = 3
FOUND_TIMEOUT_S = 120


def haproxy_pids(session: int) -> list[int]:
    """HAProxy processes started inside the `up` process's session."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = (stat.parent / "comm").read_text().strip()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, session.
        if name == "haproxy" and int(fields[3]) == session:
            pids.append(int(stat.parent.name))
    return pids


def search(api: httpx.Client, image: bytes, **headers: str) -> httpx.Response:
    body = {"modality": "face", "item": {"data": base64.b64encode(image).decode()}, "k": 1}
    return api.post("/v1/search", json=body, headers=headers)


def test_a_stack_behind_haproxy_asks_for_the_key_and_finds_streamed_items(own_settings):
    settings = own_settings.model_copy(update={"api_ingress": "haproxy", "api_key": SecretStr(KEY)})
    items = list(islice(iter_orl(), ITEMS))
    up = UpProcess(settings, 0)
    try:
        up.wait_ready()
        assert haproxy_pids(up.process.pid), "the stack serves through HAProxy"
        produce_items(settings, items)
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.http_port}", timeout=60) as api:
            refused = search(api, items[0].read_bytes())
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
            deadline = time.monotonic() + FOUND_TIMEOUT_S
            for item in items:
                while True:
                    response = search(api, item.read_bytes(), **{"x-api-key": KEY})
                    assert response.status_code == 200, response.text
                    matches = response.json()["matches"]
                    if matches and matches[0]["id"] == item.id:
                        break
                    assert time.monotonic() < deadline, f"{item.id} not found: {matches}"
                    time.sleep(1)
    finally:
        up.stop()
    assert haproxy_pids(up.process.pid) == [], "a clean stop takes HAProxy down with the stack"
