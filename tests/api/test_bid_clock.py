"""The bid clock: quiet hours in the partner's own time zone, kept and broken promises,
expiry by the worker. Expected seconds are stated exactly."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from service.clock import clock
from service.extensions import db
from service.models import Bid
from service.services import bids
from service.worker.runner import Worker
from tests.support.client import ApiClient, Person
from tests.support.phones import Phone
from tests.support.plans import rows_read_after


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def send(client: ApiClient, sender: Person) -> dict:  # type: ignore[type-arg]
    response = client.post(
        "/api/v1/bids", as_=sender, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def answer(
    client: ApiClient, who: Person, bid_id: str, kind: str = "toward", back_at: str | None = None
) -> dict:  # type: ignore[type-arg]
    body: dict[str, object] = {"client_id": str(uuid.uuid4()), "kind": kind}
    if back_at:
        body["back_at"] = back_at
    response = client.post(f"/api/v1/bids/{bid_id}/responses", as_=who, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def couple_with_quiet_partner(client: ApiClient) -> tuple[Person, Person]:
    """Ana in Berlin; Ben in New York with quiet hours 22:00-07:00 his time."""
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "America/New_York")
    client.pair(ana, ben)
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    return ana, ben


def test_a_bid_sent_in_quiet_hours_starts_its_clock_when_they_end(client: ApiClient) -> None:
    ana, ben = couple_with_quiet_partner(client)
    # 09:00 in Berlin on 15 Jan 2031 is 03:00 in New York: Ben is asleep until 07:00 (12:00Z).
    clock.freeze(at("2031-01-15T08:00:00+00:00"))
    bid = send(client, client.fresh(ana))
    assert bid["reachable_at"] == "2031-01-15T12:00:00.000000Z"
    clock.freeze(at("2031-01-15T12:05:00+00:00"))
    answered = answer(client, client.fresh(ben), bid["id"])
    assert answered["response_seconds"] == 300


def test_quiet_hours_follow_daylight_saving_in_the_partners_zone(client: ApiClient) -> None:
    ana, ben = couple_with_quiet_partner(client)
    # New York is on EDT (UTC-4) in July: 07:00 local is 11:00Z.
    clock.freeze(at("2031-07-10T05:30:00+00:00"))
    bid = send(client, client.fresh(ana))
    assert bid["reachable_at"] == "2031-07-10T11:00:00.000000Z"
    clock.freeze(at("2031-07-10T11:00:42+00:00"))
    assert answer(client, client.fresh(ben), bid["id"])["response_seconds"] == 42


def test_before_midnight_the_clock_waits_for_the_next_morning(client: ApiClient) -> None:
    ana, _ben = couple_with_quiet_partner(client)
    # 23:30 in New York (04:30Z next day in winter): quiet until 07:00 local = 12:00Z.
    clock.freeze(at("2031-01-16T04:30:00+00:00"))
    bid = send(client, client.fresh(ana))
    assert bid["reachable_at"] == "2031-01-16T12:00:00.000000Z"


def test_an_answer_during_quiet_hours_counts_as_immediate(client: ApiClient) -> None:
    ana, ben = couple_with_quiet_partner(client)
    clock.freeze(at("2031-01-15T08:00:00+00:00"))
    bid = send(client, client.fresh(ana))
    clock.freeze(at("2031-01-15T08:10:00+00:00"))
    assert answer(client, client.fresh(ben), bid["id"])["response_seconds"] == 0


def test_outside_quiet_hours_the_clock_starts_at_once(client: ApiClient) -> None:
    ana, ben = couple_with_quiet_partner(client)
    clock.freeze(at("2031-01-15T15:00:00+00:00"))  # 10:00 in New York
    bid = send(client, client.fresh(ana))
    assert bid["reachable_at"] == bid["created_at"] == "2031-01-15T15:00:00.000000Z"
    clock.freeze(at("2031-01-15T15:20:00+00:00"))
    assert answer(client, client.fresh(ben), bid["id"])["response_seconds"] == 1200


def test_a_later_that_is_kept_counts_as_turning_toward(client: ApiClient) -> None:
    ana, ben = client.couple()
    clock.freeze(at("2031-03-01T10:00:00+00:00"))
    bid = send(client, client.fresh(ana))
    clock.freeze(at("2031-03-01T10:02:00+00:00"))
    later = answer(client, client.fresh(ben), bid["id"], "later", "2031-03-01T12:00:00Z")
    assert later["response"] == "later" and later["response_seconds"] == 120
    assert later["outcome"] == "later_pending" and later["turned_toward"] is None
    clock.freeze(at("2031-03-01T11:59:00+00:00"))
    kept = answer(client, client.fresh(ben), bid["id"])
    assert kept["outcome"] == "later_kept" and kept["turned_toward"] is True
    # The response time is the first response's: the promise, not the return.
    assert kept["response_seconds"] == 120
    assert [r["kind"] for r in kept["responses"]] == ["later", "toward"]


def test_a_later_that_is_not_kept_does_not_count(client: ApiClient) -> None:
    ana, ben = client.couple()
    clock.freeze(at("2031-03-01T10:00:00+00:00"))
    bid = send(client, client.fresh(ana))
    answer(client, client.fresh(ben), bid["id"], "later", "2031-03-01T11:00:00Z")
    clock.freeze(at("2031-03-01T11:00:01+00:00"))
    broken = client.get(f"/api/v1/bids/{bid['id']}", as_=client.fresh(ana)).json()
    assert broken["outcome"] == "later_broken" and broken["turned_toward"] is False
    late = answer(client, client.fresh(ben), bid["id"])
    assert late["outcome"] == "later_broken" and late["turned_toward"] is False


def test_the_worker_expires_unanswered_bids_as_missed(
    client: ApiClient, worker: Worker, phone: Callable[[str | None], Phone]
) -> None:
    ana, ben = client.couple()
    clock.freeze(at("2031-03-01T10:00:00+00:00"))
    bid = send(client, client.fresh(ana))
    answered = send(client, ana)
    answer(client, client.fresh(ben), answered["id"])
    assert bid["expires_at"] == "2031-03-02T10:00:00.000000Z"

    clock.freeze(at("2031-03-02T09:59:59+00:00"))
    assert worker.run_once().expired_bids == 0
    clock.freeze(at("2031-03-02T10:00:00+00:00"))
    ana_phone = phone(client.fresh(ana).access_token)
    assert worker.run_once().expired_bids == 1
    expired = ana_phone.wait_for("bid.expired")["data"]
    assert expired["id"] == bid["id"]
    assert expired["status"] == "expired" and expired["outcome"] == "missed"
    assert expired["turned_toward"] is False
    assert client.get(f"/api/v1/bids/{bid['id']}", as_=ana).json() == expired
    # Reading never expires anything, and a bid expires only once.
    assert worker.run_once().expired_bids == 0
    late = client.post(
        f"/api/v1/bids/{bid['id']}/responses",
        as_=client.fresh(ben),
        json={"client_id": str(uuid.uuid4()), "kind": "toward"},
    )
    assert late.status_code == 409
    assert client.get(f"/api/v1/bids/{answered['id']}", as_=ana).json()["status"] == "answered"


def test_the_worker_expires_the_longest_overdue_bids_first_whatever_their_status(
    client: ApiClient, worker: Worker
) -> None:
    ana, ben = client.couple()
    sent = []
    for minute in ("10:00", "10:01", "10:02"):
        clock.freeze(at(f"2031-03-01T{minute}:00+00:00"))
        sent.append(send(client, client.fresh(ana))["id"])
    seen, delivered, still_sent = sent
    for bid_id, step in ((seen, "seen"), (delivered, "delivered")):
        response = client.post(f"/api/v1/bids/{bid_id}/{step}", as_=client.fresh(ben))
        assert response.status_code == 200, response.text

    clock.freeze(at("2031-03-02T11:00:00+00:00"))  # all three a day and an hour old
    with worker.app.app_context(), db.scope() as session:
        assert bids.expire_due(session, clock.now(), batch=2) == 2
    with worker.app.app_context(), db.scope() as session:  # as marked (GET shows all expired)
        marked = session.execute(
            select(Bid.id, Bid.status).where(Bid.id.in_(map(uuid.UUID, sent)))
        ).all()
    status = {str(bid_id): status for bid_id, status in marked}
    assert status == {seen: "expired", delivered: "expired", still_sent: "sent"}


@pytest.mark.postgres
def test_a_look_for_overdue_bids_reads_about_as_many_as_it_expires(
    client: ApiClient, worker: Worker
) -> None:
    """After the workers were away, thousands of bids may be overdue at once: each look must find
    its batch without reading all of them."""
    ana, ben = client.couple()
    couple_id = client.get("/api/v1/couple", as_=ana).json()["id"]
    overdue = 3000
    fill = (
        "INSERT INTO bids (id, couple_id, sender_id, recipient_id, client_id, kind, status, "
        "created_at, reachable_at, expires_at) SELECT gen_random_uuid(), :couple, :sender, "
        ":recipient, gen_random_uuid(), 'connect', 'sent', now() - interval '2 days', "
        "now() - interval '2 days', now() - interval '1 day' + i * interval '1 ms' "
        "FROM generate_series(1, :n) AS i"
    )
    filled = {"couple": couple_id, "sender": ana.id, "recipient": ben.id, "n": overdue}
    look = bids.overdue(datetime.now(UTC), 20)
    read = rows_read_after(worker.app, fill, filled, look, "bids", {})

    assert 20 <= read <= 3 * 20, f"read {read} of {overdue} overdue bids to expire 20"


def test_acknowledging_an_expired_bid_changes_nothing(
    client: ApiClient, worker: Worker, phone: Callable[[str | None], Phone]
) -> None:
    """Ben's phone comes back after a day away, syncs, and acknowledges the bid it finds: the
    bid is over, and stays as it expired (a missed bid is not "seen" the day after)."""
    ana, ben = client.couple()
    clock.freeze(at("2031-03-01T10:00:00+00:00"))
    bid = send(client, client.fresh(ana))
    clock.freeze(at("2031-03-02T10:00:00+00:00"))
    assert worker.run_once().expired_bids == 1
    clock.freeze(at("2031-03-02T10:05:00+00:00"))
    ben = client.fresh(ben)
    expired = client.get(f"/api/v1/bids/{bid['id']}", as_=ben).json()
    events = client.get("/api/v1/sync", as_=ben).json()["events"]

    for step in ("delivered", "seen"):
        acknowledged = client.post(f"/api/v1/bids/{bid['id']}/{step}", as_=ben)
        assert acknowledged.status_code == 200, acknowledged.text
        assert acknowledged.json() == expired
    ack = phone(ben.access_token).call("bid.seen", {"bid_id": bid["id"]})
    assert ack == expired
    assert expired["delivered_at"] is None and expired["seen_at"] is None
    assert client.get(f"/api/v1/bids/{bid['id']}", as_=ben).json() == expired
    assert client.get("/api/v1/sync", as_=ben).json()["events"] == events


def events_of(client: ApiClient, who: Person) -> list[dict]:  # type: ignore[type-arg]
    return list(client.get("/api/v1/sync", as_=who).json()["events"])


@pytest.mark.parametrize("worker_ran", [True, False], ids=["expired", "not-yet-expired"])
def test_an_acknowledgement_after_expires_at_finds_the_bid_expired(
    client: ApiClient, worker: Worker, worker_ran: bool
) -> None:
    """Ben's phone acknowledges a bid after its `expires_at`: whether or not the worker has
    expired it yet, the bid is over. It is not stamped delivered or seen (which the couple's
    insights would count), and the phone gets it as it expired."""
    ana, ben = client.couple()
    clock.freeze(at("2031-03-01T10:00:00+00:00"))
    bid = send(client, client.fresh(ana))
    clock.freeze(at("2031-03-02T10:00:00+00:00"))  # exactly its expires_at
    if worker_ran:
        assert worker.run_once().expired_bids == 1
    clock.freeze(at("2031-03-02T10:00:00+00:00"))
    ben = client.fresh(ben)
    for step in ("delivered", "seen"):
        acknowledged = client.post(f"/api/v1/bids/{bid['id']}/{step}", as_=ben)
        assert acknowledged.status_code == 200, acknowledged.text
        got = acknowledged.json()
        assert (got["status"], got["outcome"]) == ("expired", "missed"), got
        assert got["delivered_at"] is None and got["seen_at"] is None, got
        assert got["expired_at"] == "2031-03-02T10:00:00.000000Z"
    assert worker.run_once().expired_bids == 0
    assert client.get(f"/api/v1/bids/{bid['id']}", as_=ben).json() == got
    types = [e["type"] for e in events_of(client, ben)]
    assert types == ["couple.paired", "bid.created", "bid.expired"]
    insights = client.get("/api/v1/insights", as_=ben, params={"days": 30}).json()
    mine = next(p for p in insights["partners"] if p["user_id"] == ben.id)
    assert mine["median_delivery_seconds"] is None, mine


def test_a_bid_past_expires_at_reads_as_expired_before_the_worker_marks_it(
    client: ApiClient, worker: Worker
) -> None:
    """An unanswered bid is over at its `expires_at`, whether or not the worker has marked it
    yet (the worker was away, or behind): GET shows it expired and missed, `?status=expired`
    lists it and `?status=sent` does not. When the worker marks it, GET shows it as before,
    and `bid.expired` brings that same bid."""
    ana, ben = client.couple()
    clock.freeze(at("2031-03-01T10:00:00+00:00"))
    over = send(client, client.fresh(ana))
    clock.freeze(at("2031-03-02T09:00:00+00:00"))
    still_open = send(client, client.fresh(ana))
    clock.freeze(at("2031-03-02T10:00:00+00:00"))  # exactly the first one's expires_at
    ben = client.fresh(ben)

    def listed(**params: str) -> list[dict]:  # type: ignore[type-arg]
        return list(client.get("/api/v1/bids", as_=ben, params=params).json()["items"])

    shown = client.get(f"/api/v1/bids/{over['id']}", as_=ben).json()
    assert (shown["status"], shown["outcome"], shown["turned_toward"]) == (
        "expired",
        "missed",
        False,
    ), shown
    assert shown["expired_at"] == over["expires_at"]
    assert [b["id"] for b in listed()] == [still_open["id"], over["id"]]
    assert listed()[1] == shown
    assert listed(status="expired") == [shown]
    assert [b["id"] for b in listed(status="sent")] == [still_open["id"]]

    clock.freeze(at("2031-03-02T10:00:07+00:00"))
    assert worker.run_once().expired_bids == 1
    ben = client.fresh(ben)
    assert client.get(f"/api/v1/bids/{over['id']}", as_=ben).json() == shown
    last = events_of(client, ben)[-1]
    assert (last["type"], last["data"]) == ("bid.expired", shown)


@pytest.mark.parametrize("worker_ran", [True, False], ids=["expired", "not-yet-expired"])
def test_an_answer_after_expires_at_is_refused_whether_or_not_the_worker_ran(
    client: ApiClient, worker: Worker, worker_ran: bool
) -> None:
    """A bid is `expired` once its time to live passes with no response: an answer after
    `expires_at` is refused (409) and the bid is missed, however soon the worker comes."""
    ana, ben = client.couple()
    clock.freeze(at("2031-03-01T10:00:00+00:00"))
    bid = send(client, client.fresh(ana))
    clock.freeze(at("2031-03-02T10:00:01+00:00"))
    if worker_ran:
        assert worker.run_once().expired_bids == 1
    ben = client.fresh(ben)
    late = client.post(
        f"/api/v1/bids/{bid['id']}/responses",
        as_=ben,
        json={"client_id": str(uuid.uuid4()), "kind": "toward"},
    )
    assert late.status_code == 409, late.text
    assert late.json()["code"] == "conflict"
    assert worker.run_once().expired_bids == 0
    got = client.get(f"/api/v1/bids/{bid['id']}", as_=ben).json()
    assert (got["status"], got["outcome"], got["responses"]) == ("expired", "missed", [])
    types = [e["type"] for e in events_of(client, ben)]
    assert types == ["couple.paired", "bid.created", "bid.expired"]


def test_a_toward_after_a_later_is_taken_past_expires_at(client: ApiClient, worker: Worker) -> None:
    """Answered bids never expire: only a bid with no response is over at `expires_at`, so a
    `later` may still be kept by a `toward` after it (its back_at within 7 days)."""
    ana, ben = client.couple()
    clock.freeze(at("2031-03-01T10:00:00+00:00"))
    bid = send(client, client.fresh(ana))
    answer(client, client.fresh(ben), bid["id"], "later", back_at="2031-03-03T10:00:00Z")
    clock.freeze(at("2031-03-02T12:00:00+00:00"))
    assert worker.run_once().expired_bids == 0
    got = answer(client, client.fresh(ben), bid["id"])
    assert (got["status"], got["outcome"]) == ("answered", "later_kept")
