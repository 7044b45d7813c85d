"""GET /sync across pairings: a phone's cursor names its couple, and another couple's is refused.

Cursors count per couple and start again at 1 with every pairing, so a phone that slept
through an unpair and a new pairing holds a cursor of a stream that is gone. Every page and
envelope says whose stream it is, `couple_id` asks for one, and a cursor beyond the couple's
last event is refused: none of them can pass the new couple's events off as the old one's.
"""

from __future__ import annotations

import uuid

from tests.support.client import ApiClient, Person


def send_bids(client: ApiClient, sender: Person, n: int) -> None:
    for _ in range(n):
        sent = client.post(
            "/api/v1/bids", as_=sender, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
        )
        assert sent.status_code == 201, sent.text


def repaired(client: ApiClient) -> tuple[Person, str, Person, str]:
    """Ana and Ben (couple 1, five events) part; Ana pairs with Cat (couple 2, three events)."""
    ana, ben = client.register("Ana"), client.register("Ben")
    first = client.pair(ana, ben)["id"]
    send_bids(client, ben, 4)
    assert client.delete("/api/v1/couple", as_=ana).status_code == 204
    cat = client.register("Cat")
    second = client.pair(ana, cat)["id"]
    send_bids(client, cat, 2)
    return ana, first, cat, second


def test_a_page_and_its_events_name_the_couple(client: ApiClient) -> None:
    ana, ben = client.couple()
    send_bids(client, ana, 2)
    page = client.get("/api/v1/sync", as_=ben).json()
    couple_id = client.get("/api/v1/couple", as_=ben).json()["id"]
    assert page["couple_id"] == couple_id
    assert [e["couple_id"] for e in page["events"]] == [couple_id] * 3
    assert [e["cursor"] for e in page["events"]] == [1, 2, 3]


def test_a_cursor_beyond_the_new_couples_stream_is_refused(client: ApiClient) -> None:
    ana, _, _, _ = repaired(client)
    stale = client.get("/api/v1/sync", as_=ana, params={"since": 5})
    assert stale.status_code == 409, stale.text
    assert stale.json()["code"] == "conflict"
    assert "since=0" in stale.json()["detail"]
    # The head itself and anything below it are this couple's cursors.
    head = client.get("/api/v1/sync", as_=ana, params={"since": 3})
    assert head.status_code == 200
    assert head.json()["events"] == []
    assert head.json()["next"] == 3


def test_a_phone_names_its_couple_and_learns_it_is_gone(client: ApiClient) -> None:
    ana, first, _, second = repaired(client)
    # A phone at cursor 2 of the first couple: without `couple_id` it would get cursor 3 of
    # the second couple and never see its `couple.paired`.
    old = client.get("/api/v1/sync", as_=ana, params={"since": 2, "couple_id": first})
    assert old.status_code == 404, old.text
    assert old.json()["code"] == "not_found"
    new = client.get("/api/v1/sync", as_=ana, params={"since": 0, "couple_id": second})
    assert new.status_code == 200
    assert new.json()["couple_id"] == second
    assert [e["type"] for e in new.json()["events"]] == [
        "couple.paired",
        "bid.created",
        "bid.created",
    ]


def test_a_couple_id_that_is_not_a_uuid_is_a_validation_error(client: ApiClient) -> None:
    ana, _ = client.couple()
    answer = client.get("/api/v1/sync", as_=ana, params={"couple_id": "couple-1"})
    assert answer.status_code == 422
    assert "couple_id" in answer.json()["errors"]
