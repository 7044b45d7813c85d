"""Pushes already waiting follow their recipient's quiet hours as they are now: a partner who
flies to another time zone, or changes or turns off their quiet hours, is not woken at night
by a push timed for the old ones, nor kept waiting for hours they no longer keep; and a push
that came due before quiet hours but is claimed in them waits for them to end."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from service.clock import clock
from service.extensions import db
from service.models import PushJob
from service.worker.runner import Worker
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn
from tests.support.repairs import start

QUIET = {"quiet_hours": {"start": "22:00", "end": "07:00"}}


def device(client: ApiClient, who: Person, token: str) -> None:
    response = client.post(
        "/api/v1/devices", as_=who, json={"platform": "android", "push_token": token}
    )
    assert response.status_code == 201, response.text


def profile(client: ApiClient, who: Person, **changes: Any) -> None:
    response = client.patch("/api/v1/me", as_=client.fresh(who), json=changes)
    assert response.status_code == 200, response.text


def due(worker: Worker, kind: str) -> dict[str, datetime]:
    """When each waiting job of `kind` may go, by recipient."""
    with worker.app.app_context(), db.scope() as session:
        rows = session.scalars(select(PushJob).where(PushJob.kind == kind))
        return {str(job.recipient_id): job.available_at for job in rows}


def on_a_break(client: ApiClient, who: Person, minutes: int) -> dict[str, Any]:
    """A conversation `who` starts and pauses for `minutes` at once."""
    repair = start(client, client.fresh(who))
    pause = client.post(
        f"/api/v1/repairs/{repair['id']}/pause", as_=client.fresh(who), json={"minutes": minutes}
    )
    assert pause.status_code == 200, pause.text
    return repair


def berliner_asleep(client: ApiClient) -> tuple[Person, Person]:
    """Ana, and Ben in Berlin, who sleeps 22:00-07:00; both with a phone."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ana, "ana-token")
    device(client, ben, "ben-token")
    profile(client, ben, **QUIET)
    return ana, ben


def send_bid(client: ApiClient, sender: Person) -> dict[str, Any]:
    body = {"client_id": str(uuid.uuid4()), "kind": "connect"}
    response = client.post("/api/v1/bids", as_=client.fresh(sender), json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_held_bid_push_waits_for_the_morning_of_the_zone_the_partner_moved_to(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = berliner_asleep(client)
    # 23:00 in Berlin (22:00Z in January): Ben's push waits for 07:00 Berlin, 06:00Z.
    clock.freeze(datetime(2031, 1, 15, 22, 0, tzinfo=UTC))
    bid = send_bid(client, ana)
    assert due(fcm_worker, "bid.created") == {ben.id: datetime(2031, 1, 16, 6, 0, tzinfo=UTC)}
    # He lands in New York at 23:00 there (04:00Z), where 06:00Z would be 01:00.
    clock.freeze(datetime(2031, 1, 16, 4, 0, tzinfo=UTC))
    profile(client, ben, timezone="America/New_York")
    assert due(fcm_worker, "bid.created") == {ben.id: datetime(2031, 1, 16, 12, 0, tzinfo=UTC)}
    clock.freeze(datetime(2031, 1, 16, 6, 0, tzinfo=UTC))
    assert fcm_worker.run_once().pushes == 0
    clock.freeze(datetime(2031, 1, 16, 12, 0, tzinfo=UTC))
    assert fcm_worker.run_once().pushes == 1
    assert standin.messages()[-1]["data"]["bid_id"] == bid["id"]


def test_held_pushes_go_at_once_when_quiet_hours_are_turned_off(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = berliner_asleep(client)
    clock.freeze(datetime(2031, 1, 15, 22, 0, tzinfo=UTC))
    send_bid(client, ana)
    assert fcm_worker.run_once().pushes == 0
    clock.freeze(datetime(2031, 1, 15, 22, 30, tzinfo=UTC))
    profile(client, ben, quiet_hours=None)
    assert due(fcm_worker, "bid.created") == {ben.id: datetime(2031, 1, 15, 22, 30, tzinfo=UTC)}
    assert fcm_worker.run_once().pushes == 1


def test_repair_pushes_held_by_a_break_and_the_night_follow_new_quiet_hours(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = berliner_asleep(client)
    # 20:00Z in January is 21:00 in Berlin; a break of 120 minutes ends at 22:00Z, 23:00 there.
    clock.freeze(datetime(2031, 1, 15, 20, 0, tzinfo=UTC))
    repair = on_a_break(client, ana, 120)
    message = {"client_id": str(uuid.uuid4()), "body": "I'll be here"}
    written = client.post(f"/api/v1/repairs/{repair['id']}/messages", as_=ana, json=message)
    assert written.status_code == 201, written.text
    morning = datetime(2031, 1, 16, 6, 0, tzinfo=UTC)
    assert due(fcm_worker, "repair.message") == {ben.id: morning}
    assert due(fcm_worker, "repair.reminder")[ben.id] == morning

    # Ben now sleeps 21:00-23:30 Berlin time: after the break (22:00Z), both wait to 22:30Z.
    clock.freeze(datetime(2031, 1, 15, 20, 30, tzinfo=UTC))
    profile(client, ben, quiet_hours={"start": "21:00", "end": "23:30"})
    after_break = datetime(2031, 1, 15, 22, 30, tzinfo=UTC)
    assert due(fcm_worker, "repair.message") == {ben.id: after_break}
    reminders = due(fcm_worker, "repair.reminder")
    assert reminders == {ana.id: datetime(2031, 1, 15, 22, 0, tzinfo=UTC), ben.id: after_break}

    # Without quiet hours, nothing goes before the break ends.
    profile(client, ben, quiet_hours=None)
    break_end = datetime(2031, 1, 15, 22, 0, tzinfo=UTC)
    assert due(fcm_worker, "repair.message") == {ben.id: break_end}
    assert due(fcm_worker, "repair.reminder")[ben.id] == break_end
    clock.freeze(break_end - timedelta(seconds=1))
    assert fcm_worker.run_once().pushes == 0


def test_a_reminder_waiting_for_the_morning_after_its_break_follows_a_new_zone(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = berliner_asleep(client)
    clock.freeze(datetime(2031, 1, 15, 20, 0, tzinfo=UTC))
    on_a_break(client, ana, 60)
    clock.freeze(datetime(2031, 1, 15, 21, 0, tzinfo=UTC))  # 22:00 in Berlin: the break ends
    assert fcm_worker.run_once().resumed_repairs == 1
    assert due(fcm_worker, "repair.reminder")[ben.id] == datetime(2031, 1, 16, 6, 0, tzinfo=UTC)
    # In Tokyo (UTC+9) 21:30Z is 06:30, quiet until 07:00 local, 22:00Z.
    clock.freeze(datetime(2031, 1, 15, 21, 30, tzinfo=UTC))
    profile(client, ben, timezone="Asia/Tokyo")
    assert due(fcm_worker, "repair.reminder")[ben.id] == datetime(2031, 1, 15, 22, 0, tzinfo=UTC)


def test_a_retry_held_for_the_night_follows_quiet_hours_turned_off(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """FCM asks, at 21:55 in Berlin, to try Ben's push again in an hour: that falls in his
    quiet hours (from 22:00), so it waits for 07:00. At 22:30 he turns them off: the push
    goes when FCM asked, at 22:55, not the next morning (it kept the old hours' time)."""
    ana, ben = berliner_asleep(client)
    standin.script("ben-token", fcm.quota_exceeded("3600"))
    clock.freeze(datetime(2031, 1, 15, 20, 55, tzinfo=UTC))  # 21:55 in Berlin
    bid = send_bid(client, ana)
    assert fcm_worker.run_once().pushes == 1
    assert due(fcm_worker, "bid.created") == {ben.id: datetime(2031, 1, 16, 6, 0, tzinfo=UTC)}
    clock.freeze(datetime(2031, 1, 15, 21, 30, tzinfo=UTC))
    profile(client, ben, quiet_hours=None)
    asked = datetime(2031, 1, 15, 21, 55, tzinfo=UTC)
    assert due(fcm_worker, "bid.created") == {ben.id: asked}
    assert fcm_worker.run_once().pushes == 0
    clock.freeze(asked)
    assert fcm_worker.run_once().pushes == 1
    assert [m["data"]["bid_id"] for m in standin.messages()] == [bid["id"], bid["id"]]


def test_a_retry_held_for_the_night_follows_its_recipient_to_an_earlier_morning(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """FCM fails Ben's push just before his quiet hours begin in Berlin: its retry, a moment
    later, waits for 07:00 there (06:00Z). He lands in Tokyo at 06:30 there (21:30Z): his
    quiet hours end at 07:00 Tokyo time, 22:00Z, and the retry goes then, not 8 hours later."""
    ana, ben = berliner_asleep(client)
    standin.script("ben-token", fcm.unavailable())
    clock.freeze(datetime(2031, 1, 15, 20, 59, 59, tzinfo=UTC))  # 21:59:59 in Berlin
    send_bid(client, ana)
    assert fcm_worker.run_once().pushes == 1
    assert due(fcm_worker, "bid.created") == {ben.id: datetime(2031, 1, 16, 6, 0, tzinfo=UTC)}
    clock.freeze(datetime(2031, 1, 15, 21, 30, tzinfo=UTC))
    profile(client, ben, timezone="Asia/Tokyo")
    tokyo_morning = datetime(2031, 1, 15, 22, 0, tzinfo=UTC)
    assert due(fcm_worker, "bid.created") == {ben.id: tokyo_morning}
    clock.freeze(tokyo_morning)
    assert fcm_worker.run_once().pushes == 1
    assert len(standin.messages()) == 2


def test_a_push_due_before_quiet_hours_but_sent_in_them_waits_for_the_morning(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """The workers were away from 20:00 to midnight in Berlin: the bid's push, due at 20:00,
    does not wake Ben when they are back; it goes when his quiet hours end."""
    ana, ben = berliner_asleep(client)
    clock.freeze(datetime(2031, 1, 15, 19, 0, tzinfo=UTC))  # 20:00 in Berlin
    send_bid(client, ana)
    assert due(fcm_worker, "bid.created") == {ben.id: datetime(2031, 1, 15, 19, 0, tzinfo=UTC)}
    clock.freeze(datetime(2031, 1, 15, 23, 0, tzinfo=UTC))
    assert fcm_worker.run_once().pushes == 0
    assert due(fcm_worker, "bid.created") == {ben.id: datetime(2031, 1, 16, 6, 0, tzinfo=UTC)}
    with fcm_worker.app.app_context(), db.scope() as session:
        (job,) = session.scalars(select(PushJob).where(PushJob.kind == "bid.created"))
        assert (job.state, job.attempts, job.claimed_by) == ("pending", 0, None)
    assert standin.messages() == []
    clock.freeze(datetime(2031, 1, 16, 6, 0, tzinfo=UTC))
    assert fcm_worker.run_once().pushes == 1


def test_a_bid_that_expires_before_a_day_long_night_ends_is_never_pushed(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """Ben in New York keeps quiet hours from 07:00 to 06:30, 23.5 hours of his clock, and on
    the night the clocks go back (2 November 2031) they last 24.5 hours: a bid sent as they
    begin expires (after 24 hours; quiet hours don't extend it) before it could reach him.
    Its push, held for the morning, is withdrawn with the bid, and never goes out, even when
    the worker was away at the expiry and comes back after the morning."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-token")
    profile(
        client, ben, timezone="America/New_York", quiet_hours={"start": "07:00", "end": "06:30"}
    )
    clock.freeze(datetime(2031, 11, 1, 11, 0, tzinfo=UTC))  # 07:00 EDT
    bid = send_bid(client, ana)
    assert bid["expires_at"] == "2031-11-02T11:00:00.000000Z"
    assert bid["reachable_at"] == "2031-11-02T11:30:00.000000Z"  # 06:30 EST
    assert due(fcm_worker, "bid.created") == {ben.id: datetime(2031, 11, 2, 11, 30, tzinfo=UTC)}

    # The worker away at the expiry: back after the morning, it sends nothing for the bid.
    clock.freeze(datetime(2031, 11, 2, 11, 30, tzinfo=UTC))
    assert fcm_worker.run_once(housekeeping=False).pushes == 0
    assert fcm_worker.run_once().expired_bids == 1
    assert standin.messages() == []
    expired = client.get(f"/api/v1/bids/{bid['id']}", as_=client.fresh(ana)).json()
    assert expired["status"] == "expired" and expired["outcome"] == "missed"


def test_an_expired_bids_held_push_is_withdrawn_at_the_expiry(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-token")
    profile(
        client, ben, timezone="America/New_York", quiet_hours={"start": "07:00", "end": "06:30"}
    )
    clock.freeze(datetime(2031, 11, 1, 11, 0, tzinfo=UTC))
    send_bid(client, ana)
    clock.freeze(datetime(2031, 11, 2, 11, 0, tzinfo=UTC))
    assert fcm_worker.run_once().expired_bids == 1
    with fcm_worker.app.app_context(), db.scope() as session:
        (job,) = session.scalars(select(PushJob).where(PushJob.kind == "bid.created"))
        assert job.state == "cancelled"
    clock.freeze(datetime(2031, 11, 2, 11, 30, tzinfo=UTC))
    assert fcm_worker.run_once().pushes == 0
    assert standin.messages() == []
