"""Real concurrency on PostgreSQL: an export read while another of the account's phones writes.

The export reads each of its lists in a statement of its own; it must read them all as the
account stood at one moment, never the start of a write in one list and its end in another.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from service.extensions import db
from tests.support.client import ApiClient

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def test_an_export_read_while_the_account_writes_is_of_one_moment(
    client: ApiClient, app: Flask
) -> None:
    """Ana's other phone starts a conversation and writes in it while her export is being
    read, between its list of conversations and its list of messages: the export held her
    message in a conversation it did not list, which a phone reading it back cannot place."""
    ana, _ = client.couple()
    other_phone = ApiClient(client.base_url)
    began, written = threading.Event(), threading.Event()

    def write_meanwhile(*args: Any) -> None:
        # The export's list of conversations the caller was in has just been read.
        if began.is_set() or " AS heard" not in args[2]:
            return
        began.set()
        repair = other_phone.post(
            "/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4()), "topic": "trip"}
        )
        assert repair.status_code == 201, repair.text
        message = other_phone.post(
            f"/api/v1/repairs/{repair.json()['id']}/messages",
            as_=ana,
            json={"client_id": str(uuid.uuid4()), "body": "I felt alone"},
        )
        assert message.status_code == 201, message.text
        written.set()

    with app.app_context():
        engine = db.engine
    event.listen(engine, "after_cursor_execute", write_meanwhile)
    try:
        exported = client.get("/api/v1/me/export", as_=ana)
    finally:
        event.remove(engine, "after_cursor_execute", write_meanwhile)
    assert exported.status_code == 200, exported.text
    assert written.is_set(), "the writes did not run during the export"
    found = exported.json()
    started = {r["id"] for r in found["repairs_started"]}
    joined = {r["repair_id"] for r in found["repairs_joined"]}
    spoken_in = {m["repair_id"] for m in found["repair_messages"]}
    assert started == joined == spoken_in, found
    # And the next export, once they have committed, holds them all.
    later = client.get("/api/v1/me/export", as_=ana).json()
    assert len(later["repairs_joined"]) == len(later["repair_messages"]) == 1
