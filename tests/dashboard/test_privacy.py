"""Privacy by construction: no /ops page, JSON or socket payload carries what partners wrote."""

from __future__ import annotations

import re
import threading
import uuid
from collections import deque
from typing import Any

import socketio
from flask import Flask
from sqlalchemy import select

from service.extensions import db
from service.models import PushJob
from service.worker.runner import Worker
from tests.dashboard.conftest import OpsClient
from tests.dashboard.helpers import add_device, connect_to_ops, dead_letter, send_bid
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn
from tests.support.server import LiveServer
from tests.support.waiting import wait_until

LINK = re.compile(r'href="(/ops/[^"#]*)"')
JSON_ENDPOINTS = ["/ops/api/overview", "/ops/api/push", "/ops/api/audit"]


def plant(client: ApiClient, app: Flask, ana: Person, ben: Person, marker: str) -> list[str]:
    """Write the marker everywhere partners write; returns where it went."""
    planted = []
    bid = send_bid(client, ana, note=f"{marker} bid note")
    planted.append("bid note")
    answer = {"client_id": str(uuid.uuid4()), "kind": "toward", "note": f"{marker} response"}
    response = client.post(f"/api/v1/bids/{bid['id']}/responses", as_=ben, json=answer)
    assert response.status_code == 201, response.text
    planted.append("response note")
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    if "/api/v1/repairs" in rules:
        started = client.post(
            "/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4()), "topic": marker}
        )
        assert started.status_code == 201, started.text
        message = {"client_id": str(uuid.uuid4()), "body": f"{marker} repair message"}
        written = client.post(
            f"/api/v1/repairs/{started.json()['id']}/messages", as_=ana, json=message
        )
        assert written.status_code == 201, written.text
        planted += ["repair topic", "repair message"]
    return planted


def crawl(ops: OpsClient, start: list[str]) -> dict[str, str]:
    """Every /ops page reachable by links from `start`, and the JSON endpoints: path -> body."""
    seen: dict[str, str] = {}
    queue = deque(start + JSON_ENDPOINTS)
    while queue:
        path = queue.popleft()
        if path in seen or path.startswith("/ops/static/"):
            continue
        response = ops.get(path)
        assert response.status_code == 200, (path, response.status_code)
        seen[path] = response.text
        queue.extend(link.replace("&amp;", "&") for link in LINK.findall(response.text))
    return seen


def test_no_ops_response_or_socket_payload_carries_a_partners_words(
    client: ApiClient,
    app: Flask,
    live_server: LiveServer,
    signed_in: OpsClient,
    fcm_worker: Worker,
    standin: FcmStandIn,
    ops_quiet: None,
) -> None:
    marker = f"PRIVATE-{uuid.uuid4().hex}"
    ana, ben = client.couple("Ana", "Ben")
    # Ben shows notes on his lock screen, so the push payloads in the outbox carry the marker.
    client.patch("/api/v1/me", as_=ben, json={"notes_on_lock_screen": True})
    add_device(client, ben, "ben-phone")
    add_device(client, ana, "ana-phone")
    planted = plant(client, app, ana, ben, marker)
    job_id = dead_letter(client, fcm_worker, standin, ana, "ben-phone", f"{marker} last words")
    with app.app_context():
        payload = db.session.scalar(select(PushJob.payload).where(PushJob.id == job_id))
    assert marker in str(payload), "the dead-lettered push should carry the words"
    assert client.get("/api/v1/bids", as_=client.fresh(ben)).text.count(marker) >= 3

    received: list[tuple[str, Any]] = []
    arrived = threading.Event()
    listener = socketio.Client(reconnection=False)

    @listener.on("*", namespace="/ops")
    def record(event: str, data: Any = None) -> None:
        received.append((event, data))
        arrived.set()

    connect_to_ops(listener, live_server.url, signed_in.cookie)
    try:
        # Support looks up both partners; their account pages are part of the crawl.
        accounts = []
        for person in (ana, ben):
            found = signed_in.post(
                "/ops/support/search", data={"email": person.email, "csrf_token": signed_in.csrf()}
            )
            assert found.status_code == 302
            accounts.append(found.headers["Location"])
        pages = crawl(signed_in, ["/ops/", *accounts])
        wait_until(lambda: len(received) >= 2, timeout=15, what="two ops.overview payloads")
    finally:
        listener.disconnect()

    assert {"/ops/", "/ops/push", "/ops/support", "/ops/audit", *accounts} <= set(pages)
    assert set(JSON_ENDPOINTS) <= set(pages)
    assert f'data-job="{job_id}"' in pages["/ops/push"]
    for path, body in pages.items():
        assert marker not in body, f"{path} shows what a partner wrote"
        for word in ("Ana", "Ben"):
            assert f">{word}<" not in body, f"{path} names a partner"
    assert {event for event, _ in received} == {"ops.overview"}
    for _, payload in received:
        assert marker not in str(payload)
    assert len(planted) >= 2
