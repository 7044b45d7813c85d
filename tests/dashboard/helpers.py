"""Helpers for /ops tests: devices, bids, a push dead-lettered for real, waiting on conditions."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import socketio
from sqlalchemy import select

from service.clock import clock
from service.extensions import db
from service.models import PushJob
from service.worker.runner import Worker
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn


def connect_to_ops(listener: socketio.Client, url: str, cookie: str | None) -> socketio.Client:
    """Connect `listener` to the /ops namespace as a signed-in operator's browser would."""
    listener.connect(
        url,
        namespaces=["/ops"],
        transports=["websocket"],
        headers={"Cookie": f"reach_ops={cookie}"},
        wait_timeout=5,
    )
    return listener


def add_device(client: ApiClient, who: Person, token: str, platform: str = "android") -> str:
    response = client.post(
        "/api/v1/devices", as_=who, json={"platform": platform, "push_token": token}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def send_bid(client: ApiClient, sender: Person, note: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"client_id": str(uuid.uuid4()), "kind": "comfort"}
    if note:
        body["note"] = note
    response = client.post("/api/v1/bids", as_=sender, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def job_state(worker: Worker, job_id: int) -> str:
    with worker.app.app_context(), db.scope() as session:
        return str(session.scalar(select(PushJob.state).where(PushJob.id == job_id)))


def dead_letter(
    client: ApiClient,
    worker: Worker,
    standin: FcmStandIn,
    sender: Person,
    token: str,
    note: str | None = None,
) -> int:
    """Send a bid whose push fails with INTERNAL until the worker gives up; returns the job id."""

    def a_bid() -> str:
        return f"bid.created:{send_bid(client, client.fresh(sender), note)['id']}"

    return dead_letter_of(worker, standin, token, a_bid)


def dead_letter_of(worker: Worker, standin: FcmStandIn, token: str, make: Callable[[], str]) -> int:
    """The push that `make` queues (it returns the push's dedupe key), failing at `token` with
    INTERNAL until the worker gives up; returns the job id.

    The stand-in fails exactly as often as the worker tries, so a retry afterwards succeeds.
    The service clock is frozen (now) and moved on, so backoffs pass without waiting.
    """
    attempts = worker.dispatcher.policy.max_attempts  # type: ignore[union-attr]
    worker.run_once()  # pushes already queued go out first, so only this one fails
    standin.script(token, *[fcm.internal()] * attempts)
    clock.freeze(clock.now())
    key = make()
    with worker.app.app_context(), db.scope() as session:
        job_id = session.scalar(select(PushJob.id).where(PushJob.dedupe_key == key))
    assert job_id is not None, key
    for _ in range(attempts + 2):
        worker.run_once()
        clock.advance(timedelta(minutes=5))
        if job_state(worker, job_id) == "dead":
            return int(job_id)
    raise AssertionError(f"push job {job_id} is {job_state(worker, job_id)}, not dead")
