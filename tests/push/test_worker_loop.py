"""When the running worker passes: at once while the outbox has more than a batch due, else on
a wake-up (a commit that queued pushes) or after `idle_seconds`, never an empty pass per push.
A wake-up passes at once after a quiet spell; within PUSH_GATHER_MS of the last pass's start it
waits until then, and the pushes queued meanwhile join that pass."""

from __future__ import annotations

import time

import pytest
from flask import Flask

from service.worker.runner import Tick, Worker
from tests.push.test_delivery import bid, device
from tests.push.test_retention import pushes, running
from tests.support.client import ApiClient, Person
from tests.support.waiting import wait_until


def sender(client: ApiClient) -> Person:
    """Ana, whose partner Ben has a phone registered for pushes."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    return ana


def counted(loop: Worker, monkeypatch: pytest.MonkeyPatch) -> list[Tick]:
    """Every pass the loop makes, as it makes them."""
    ticks: list[Tick] = []
    run_once = loop.run_once

    def counted_pass(housekeeping: bool = True) -> Tick:
        tick = run_once(housekeeping)
        ticks.append(tick)
        return tick

    monkeypatch.setattr(loop, "run_once", counted_pass)
    return ticks


def waits(loop: Worker, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Each time the loop goes back to waiting for a wake-up: its passes until then are done."""
    entered: list[float] = []
    wait = loop._wake.wait

    def counted_wait(timeout: float | None = None) -> bool:
        entered.append(time.monotonic())
        return wait(timeout)

    monkeypatch.setattr(loop._wake, "wait", counted_wait)
    return entered


def test_a_wake_up_sends_the_new_push_in_one_pass_and_the_loop_waits_for_the_next(
    app: Flask, client: ApiClient, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = sender(client)
    loop = Worker(app, name="woken-worker", idle_seconds=30)
    ticks, waiting = counted(loop, monkeypatch), waits(loop, monkeypatch)
    sent = []
    with running(loop):
        wait_until(lambda: len(waiting) == 1, 5, "waiting after the pass at start")
        for woken in (2, 3):
            sent.append(bid(client, client.fresh(ana)))
            loop.wake()  # as the API's commit does, through Redis or in-process
            wait_until(lambda woken=woken: len(waiting) == woken, 5, "waiting again")
    assert [tick.pushes for tick in ticks] == [0, 1, 1]
    assert {pushes(worker)[f"bid.created:{new['id']}"] for new in sent} == {("done", 1, 1)}


def test_while_a_pass_takes_a_whole_batch_the_next_starts_at_once(
    app: Flask, client: ApiClient, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = sender(client)
    queued = [bid(client, client.fresh(ana)) for _ in range(5)]
    loop = Worker(app, name="backlog-worker", idle_seconds=30)
    assert loop.dispatcher is not None
    loop.dispatcher.batch = 2
    ticks, waiting = counted(loop, monkeypatch), waits(loop, monkeypatch)
    with running(loop):
        # No wake-up and 30 s to the idle pass: only passing at once drains it in time.
        wait_until(lambda: len(waiting) == 1, 5, "waiting after the backlog")
    assert [(tick.pushes, tick.full) for tick in ticks] == [(2, True), (2, True), (1, False)]
    assert {pushes(worker)[f"bid.created:{sent['id']}"] for sent in queued} == {("done", 1, 1)}


def test_the_pushes_queued_soon_after_a_wake_up_go_out_in_the_same_pass(
    app: Flask, client: ApiClient, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = sender(client)
    # A wide gather: both bids are posted within it even on a loaded machine (the pass at start
    # is what it counts from).
    gather = 4.0
    loop = Worker(app, name="gathering-worker", idle_seconds=30, gather_seconds=gather)
    ticks = counted(loop, monkeypatch)
    with running(loop):
        wait_until(lambda: len(ticks) == 1, 5, "the pass at start")
        queued = []
        for _ in range(2):
            queued.append(bid(client, client.fresh(ana)))
            loop.wake()
        keys = {f"bid.created:{sent['id']}" for sent in queued}
        done = ("done", 1, 1)
        wait_until(
            lambda: all(pushes(worker).get(k) == done for k in keys), gather + 5, "both sent"
        )
    assert [tick.pushes for tick in ticks] == [0, 2]


def test_a_wake_up_after_a_quiet_spell_passes_at_once_and_later_ones_wait_for_the_gather(
    app: Flask, client: ApiClient, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = sender(client)
    gather = 1.0
    loop = Worker(app, name="paced-worker", idle_seconds=30, gather_seconds=gather)
    ticks = counted(loop, monkeypatch)
    began: list[float] = []
    run_once = loop.run_once

    def timed_pass(housekeeping: bool = True) -> Tick:
        began.append(time.monotonic())
        return run_once(housekeeping)

    monkeypatch.setattr(loop, "run_once", timed_pass)
    with running(loop):
        wait_until(lambda: len(ticks) == 1, 5, "the pass at start")
        wait_until(
            lambda: len(began) == 1 and time.monotonic() - began[0] >= gather,
            5,
            "a quiet spell: no pass for a whole gather",
        )
        after_quiet = bid(client, client.fresh(ana))
        woken = time.monotonic()
        loop.wake()
        wait_until(lambda: len(ticks) == 2, 5, "the pass the wake-up begins")
        # Soon after that pass: the next wake-up waits out the gather from its start.
        soon = bid(client, client.fresh(ana))
        loop.wake()
        wait_until(lambda: len(ticks) == 3, 5, "the gathered pass")
    assert [tick.pushes for tick in ticks] == [0, 1, 1]
    # At once: well under the gather (the loop before this waited a whole gather after a wake).
    assert began[1] - woken < gather / 2
    # The gather counts from just before the pass began (its first step is a clock reading).
    assert began[2] - began[1] >= gather - 0.05
    keys = {f"bid.created:{sent['id']}" for sent in (after_quiet, soon)}
    assert {pushes(worker)[key] for key in keys} == {("done", 1, 1)}
