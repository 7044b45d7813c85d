"""Under a steady trickle of bids the worker gathers pushes into fuller passes; the first push
after a quiet spell still goes at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from flask import Flask

from service.worker.dispatch import Dispatcher
from service.worker.runner import Tick, Worker
from tests.push.test_delivery import bid, device
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn
from tests.support.waiting import wait_until


@pytest.fixture
def running(fcm_worker: Worker) -> Iterator[tuple[Worker, list[tuple[float, Tick]]]]:
    """`fcm_worker` looping in a thread (as `reach worker` does); its passes with their time."""
    passes: list[tuple[float, Tick]] = []
    one_pass = fcm_worker.run_once

    def recorded(housekeeping: bool = True) -> Tick:
        tick = one_pass(housekeeping)
        passes.append((time.monotonic(), tick))
        return tick

    fcm_worker.run_once = recorded  # type: ignore[method-assign]
    fcm_worker.idle_seconds = 0.05
    fcm_worker.gather_seconds = 1.0
    thread = threading.Thread(target=fcm_worker.run_forever, daemon=True)
    thread.start()
    yield fcm_worker, passes
    fcm_worker.stop()
    thread.join(timeout=10)


def test_a_trickle_of_bids_is_pushed_in_two_passes_not_one_each(
    client: ApiClient,
    running: tuple[Worker, list[tuple[float, Tick]]],
    standin: FcmStandIn,
    app: Flask,
) -> None:
    worker, passes = running
    assert isinstance(worker.dispatcher, Dispatcher) and worker.dispatcher.batch > 5
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    sent_at = time.monotonic()
    bid(client, ana, "first")
    wait_until(lambda: len(standin.messages()) == 1, timeout=5)
    first_push_after = time.monotonic() - sent_at
    for n in range(5):  # one bid every 0.1 s, while the worker gathers
        bid(client, ana, f"then {n}")
        time.sleep(0.1)
    wait_until(lambda: len(standin.messages()) == 6, timeout=10)
    busy = [tick.pushes for _, tick in passes if tick.pushes]
    assert busy == [1, 5], busy
    assert first_push_after < 0.9  # well inside the gathering time: the first push did not wait
