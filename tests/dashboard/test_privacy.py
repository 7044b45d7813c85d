"""Privacy by construction: no /ops page, JSON or socket payload carries what partners wrote."""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
import socketio
from flask import Flask
from sqlalchemy import select

from service.extensions import db
from service.logs import JsonFormatter
from service.models import PushJob
from service.worker.runner import Worker
from tests.dashboard.conftest import OpsClient
from tests.dashboard.helpers import add_device, connect_to_ops, dead_letter, send_bid
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn
from tests.support.phones import Phone
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


def crawl(ops: OpsClient, start: list[str], gone: tuple[str, ...] = ()) -> dict[str, str]:
    """Every /ops page reachable by links from `start`, and the JSON endpoints: path -> body
    (a deleted account's page, among `gone`, answers 404)."""
    seen: dict[str, str] = {}
    queue = deque(start + JSON_ENDPOINTS)
    while queue:
        path = queue.popleft()
        if path in seen or path.startswith("/ops/static/"):
            continue
        response = ops.get(path)
        assert response.status_code == (404 if path in gone else 200), (path, response.status_code)
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


def test_no_log_line_metric_or_ops_answer_carries_a_members_words_or_name(
    client: ApiClient,
    app: Flask,
    signed_in: OpsClient,
    worker: Worker,
    phone: Callable[[str | None], Phone],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A couple goes through everything they can do, writing distinctive words and with
    distinctive names, through REST and the socket, a bad request or two among them, pushes
    sent by the embedded log backend, an export and a deletion; operators look at everything
    they can. None of it shows in a log line (as the JSON formatter writes it, extras and
    tracebacks included), a metric or an /ops answer."""
    secret = uuid.uuid4().hex[:12]
    words = f"words{secret}"
    ana_name, ben_name = f"Anaya{secret}", f"Benedek{secret}"
    caplog.set_level(logging.INFO)
    ana, ben = client.couple(ana_name, ben_name)
    client.patch("/api/v1/me", as_=ben, json={"notes_on_lock_screen": True})
    add_device(client, ben, f"ben-{secret}")
    add_device(client, ana, f"ana-{secret}")
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    plant(client, app, ana, ben, words)
    sent = ana_phone.call(
        "bid.send", {"client_id": str(uuid.uuid4()), "kind": "connect", "note": f"{words} socket"}
    )
    assert sent["note"] == f"{words} socket", sent
    answered = ben_phone.call(
        "bid.respond",
        {
            "bid_id": sent["id"],
            "client_id": str(uuid.uuid4()),
            "kind": "toward",
            "note": f"{words} toward",
        },
    )
    assert answered.get("status") != 422 and answered["id"] == sent["id"], answered
    for who in (ana, ben):
        checked_in = client.post(
            "/api/v1/checkins",
            as_=who,
            json={"client_id": str(uuid.uuid4()), "accessible": 2, "responsive": 3, "engaged": 4},
        )
        assert checked_in.status_code in (200, 201), checked_in.text
    renamed = client.patch("/api/v1/me", as_=ana, json={"display_name": f"{ana_name}x"})
    assert renamed.status_code == 200, renamed.text
    # Bad input carrying the words: too long, unreadable, over the socket.
    too_long = {"client_id": str(uuid.uuid4()), "kind": "share", "note": words * 30}
    assert client.post("/api/v1/bids", as_=ana, json=too_long).status_code == 422
    unreadable = client.post(
        "/api/v1/bids",
        as_=ana,
        data=f'{{"note": "{words}"',
        headers={"Content-Type": "application/json"},
    )
    assert unreadable.status_code == 400
    assert ana_phone.call("bid.send", too_long)["status"] == 422
    assert ben_phone.call("repair.message", {"body": words})["status"] == 422
    client.get("/api/v1/sync", as_=ben)
    client.get("/api/v1/insights", as_=ben)
    worker.run_once()
    assert any("push" in record.getMessage() for record in caplog.records), "no push was logged"
    assert words in client.get("/api/v1/me/export", as_=ana).text
    accounts = []
    for person in (ana, ben):
        found = signed_in.post(
            "/ops/support/search", data={"email": person.email, "csrf_token": signed_in.csrf()}
        )
        assert found.status_code == 302
        accounts.append(found.headers["Location"])
    pages = crawl(signed_in, ["/ops/", *accounts])
    assert client.delete("/api/v1/me", as_=ana).status_code == 204
    ben_phone.wait_for("couple.ended")
    worker.run_once()
    pages.update(crawl(signed_in, ["/ops/", accounts[1]], gone=(accounts[0],)))
    pages["/metrics"] = client.get("/metrics").text

    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    for secret_text in (words, ana_name, ben_name):
        assert secret_text not in logged, f"the logs show {secret_text}"
        for path, body in pages.items():
            assert secret_text not in body, f"{path} shows {secret_text}"
