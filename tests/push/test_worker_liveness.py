"""`reach worker`'s liveness answer (GET /healthz on WORKER_METRICS_BIND): 503 once its loop
has neither started nor ended a pass for `stall_seconds` (a send hung, the loop stuck), 200
again as soon as it moves on."""

from __future__ import annotations

import socket

import requests

from service import metrics
from service.config import Settings, worker_metrics_address
from service.worker.runner import Worker
from tests.push.test_delivery import bid, device
from tests.push.test_retention import running
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn, slow
from tests.support.waiting import wait_until


def liveness(url: str) -> tuple[int, str]:
    answer = requests.get(url, timeout=5)
    return answer.status_code, answer.json()["status"]


def stalled(code: int, status: str) -> bool:
    return code == 503 and status.startswith("stalled: ")


def test_the_worker_is_not_alive_while_its_loop_is_stuck_and_alive_once_it_moves_on(
    client: ApiClient, standin: FcmStandIn, fcm_worker: Worker
) -> None:
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "stuck-phone")
    standin.script("stuck-phone", slow(3.0))  # the pass's one send hangs for 3 s
    bid(client, ana)
    fcm_worker.stall_seconds = 0.5
    fcm_worker.idle_seconds = 0.1
    endpoint = metrics.serve_worker_endpoint(("127.0.0.1", 0), fcm_worker.stalled)
    url = f"http://127.0.0.1:{endpoint.server_port}/healthz"
    try:
        with running(fcm_worker):
            # Code and words from one answer: on a busy machine the send may end before a
            # second read.
            wait_until(lambda: stalled(*liveness(url)), 5, "the stuck loop reported")
            wait_until(lambda: len(standin.messages()) == 1, 10, "the send answered")
            wait_until(lambda: liveness(url) == (200, "ok"), 5, "the loop alive again")
    finally:
        endpoint.shutdown()
        endpoint.server_close()


def test_the_endpoint_serves_an_ipv6_bind_as_the_setting_takes_it() -> None:
    """WORKER_METRICS_BIND=[::1]:PORT: the server listens on IPv6, not on an IPv4 socket that
    cannot bind that address."""
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    settings = Settings().with_overrides(WORKER_METRICS_BIND=f"[::1]:{port}")
    address = worker_metrics_address(settings)
    assert address == ("::1", port)
    endpoint = metrics.serve_worker_endpoint(address, lambda: None)
    try:
        answer = requests.get(f"http://[::1]:{endpoint.server_port}/healthz", timeout=5)
        assert answer.json() == {"status": "ok"}
    finally:
        endpoint.shutdown()
