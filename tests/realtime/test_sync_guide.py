"""A phone that follows the sync loop of docs/mobile.md §7 ends with every event applied once,
in cursor order, whatever the socket brings and when (tests/support/guide.py)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.client import ApiClient, Person
from tests.support.guide import GuidedPhone
from tests.support.server import LiveServer
from tests.support.waiting import wait_until


def send_bid(api: ApiClient, sender: Person) -> str:
    body = {"client_id": str(uuid.uuid4()), "kind": "connect"}
    response = api.post("/api/v1/bids", as_=sender, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stream_head(api: ApiClient, person: Person) -> int:
    events = api.get("/api/v1/sync", as_=person, params={"since": 0, "limit": 1000}).json()
    return int(events["events"][-1]["cursor"])


def test_an_event_that_arrives_while_a_sync_is_reading_is_not_lost(
    client: ApiClient, live_server: LiveServer
) -> None:
    """The socket brings an event with a gap while a sync is under way, one that read its page
    before the event was written: the guide's phone runs that sync once more. (Joining the
    running sync, as the guide said before, dropped the event until the next reconnect.)"""
    ana, ben = client.couple()
    couple_id = client.get("/api/v1/couple", as_=ben).json()["id"]
    bids = [send_bid(client, ana)]  # the phone has not seen it yet
    phone = GuidedPhone(client, ben, couple_id)

    def meanwhile(page: dict[str, Any]) -> None:
        phone.after_reading = None
        bids.append(send_bid(client, ana))  # written after the page was read
        wait_until(lambda: phone.received and phone.idle(), 5, "the socket's event applied")

    phone.after_reading = meanwhile
    try:
        phone.connect(live_server.url)
        head = stream_head(client, ben)
        phone.wait_for_cursor(head)
        assert phone.applied == list(range(1, head + 1))
        assert set(phone.bids) == set(bids)
    finally:
        phone.close()
