"""A request sent as a load balancer in front of Serve's HTTP proxies sends it.

When a node is lost, two answers say nothing about the service, only about where the request
went: a dropped connection (the HTTP proxy was on that node), and a 500 without a problem
body (Serve's own answer for a request routed to an API replica that was there; the service
answers every error of its own as a problem). Serve's routers take a moment to learn that a
replica is gone, so a balancer sends such a request again, up to RETRIES times (HAProxy's
default `retries 3`), a moment apart.
"""

import time
from typing import Any

import httpx

from services.api.problems import PROBLEM_JSON

RETRIES = 3
PAUSE_S = 0.2


def post(client: httpx.Client, path: str, body: Any) -> tuple[httpx.Response, int]:
    """The answer, and how many times the request was sent again; the last attempt's dropped
    connection is raised."""
    for retry in range(RETRIES):
        try:
            response = client.post(path, json=body)
        except httpx.TransportError:
            pass
        else:
            if not _at_a_lost_node(response):
                return response, retry
        time.sleep(PAUSE_S)
    return client.post(path, json=body), RETRIES


def _at_a_lost_node(response: httpx.Response) -> bool:
    return response.status_code == 500 and response.headers.get("content-type") != PROBLEM_JSON
