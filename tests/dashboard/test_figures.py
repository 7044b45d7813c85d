"""The overview's figures equal what the database holds, counted by hand after real API calls."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from schemas.base import iso
from service.clock import clock
from service.extensions import db
from service.models import Bid, PushJob
from service.push import PushMessage, PushResult
from service.push.log import LogBackend
from service.services import ops
from service.worker.dispatch import Dispatcher
from service.worker.runner import Worker
from tests.dashboard.conftest import OpsClient
from tests.dashboard.helpers import add_device, send_bid
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn


def overview(ops_client: OpsClient) -> dict[str, Any]:
    response = ops_client.get("/ops/api/overview")
    assert response.status_code == 200, response.text
    return dict(response.json())


def answer(client: ApiClient, who: Person, bid: dict[str, Any]) -> None:
    body = {"client_id": str(uuid.uuid4()), "kind": "toward"}
    response = client.post(f"/api/v1/bids/{bid['id']}/responses", as_=who, json=body)
    assert response.status_code == 201, response.text


def test_bid_windows_include_their_start_and_nothing_before(
    client: ApiClient, signed_in: OpsClient
) -> None:
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    clock.freeze(now - timedelta(days=1))
    ana, ben = client.couple()
    send_bid(client, ana)
    clock.freeze(now - timedelta(hours=1))
    send_bid(client, client.fresh(ana))
    send_bid(client, client.fresh(ben))

    clock.freeze(now)
    figures = overview(signed_in)
    assert (figures["bids"]["last_hour"], figures["bids"]["last_day"]) == (2, 3)
    assert figures["bids"]["per_hour"][0]["count"] == 1
    assert figures["bids"]["per_hour"][-1]["count"] == 2
    clock.freeze(now + timedelta(microseconds=1))
    figures = overview(signed_in)
    assert (figures["bids"]["last_hour"], figures["bids"]["last_day"]) == (0, 2)
    assert sum(bucket["count"] for bucket in figures["bids"]["per_hour"]) == 2


def test_every_answered_bid_is_counted_however_many_there_are(
    client: ApiClient, signed_in: OpsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "RESPONSE_SAMPLE", 2)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    clock.freeze(start)
    ana, ben = client.couple()
    waits = [30, 90, 600]
    for seconds in waits:
        bid = send_bid(client, ana)
        clock.advance(timedelta(seconds=seconds))
        answer(client, ben, bid)
    send_bid(client, ana)  # not answered
    clock.unfreeze()
    times = overview(signed_in)["response_time"]
    assert times["answered"] == 3
    assert {row["label"]: row["count"] for row in times["histogram"]} == {
        "< 1 min": 1,
        "1-5 min": 1,
        "5-15 min": 1,
        "15-60 min": 0,
        "1-3 h": 0,
        "3-12 h": 0,
        "> 12 h": 0,
    }


def test_a_response_time_runs_from_the_end_of_the_partners_quiet_hours(
    client: ApiClient, signed_in: OpsClient
) -> None:
    """A bid sent while Ben sleeps, answered 10 minutes after his quiet hours end, took 600 s:
    the night does not count (the bid's `response_seconds` runs from `reachable_at`)."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=6)
    clock.freeze(start)
    ana, ben = client.couple()
    quiet = {
        "start": (start - timedelta(hours=1)).strftime("%H:%M"),
        "end": (start + timedelta(hours=2)).strftime("%H:%M"),
    }
    me = client.patch("/api/v1/me", as_=ben, json={"timezone": "UTC", "quiet_hours": quiet})
    assert me.status_code == 200, me.text
    bid = send_bid(client, ana)
    assert bid["reachable_at"] == iso(start + timedelta(hours=2))
    clock.freeze(start + timedelta(hours=2, minutes=10))
    answer(client, client.fresh(ben), bid)
    clock.unfreeze()
    times = overview(signed_in)["response_time"]
    assert (times["answered"], times["median_seconds"]) == (1, 600.0)
    assert {row["label"]: row["count"] for row in times["histogram"]}["5-15 min"] == 1


def test_a_response_time_leaves_out_the_night_between_a_bid_and_its_answer(
    client: ApiClient, signed_in: OpsClient
) -> None:
    """A bid reaches Ben ten minutes before his quiet hours; he answers five minutes after they
    end. He was awake for 900 s of it: the overview counts those, as the couple's insights do,
    not the 3 h 15 min of the bid's own `response_seconds`."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=12)
    clock.freeze(start)
    ana, ben = client.couple()
    quiet = {
        "start": (start + timedelta(minutes=10)).strftime("%H:%M"),
        "end": (start + timedelta(hours=3, minutes=10)).strftime("%H:%M"),
    }
    me = client.patch("/api/v1/me", as_=ben, json={"timezone": "UTC", "quiet_hours": quiet})
    assert me.status_code == 200, me.text
    bid = send_bid(client, ana)
    assert bid["reachable_at"] == iso(start)
    clock.freeze(start + timedelta(hours=3, minutes=15))
    answer(client, client.fresh(ben), bid)
    clock.unfreeze()
    times = overview(signed_in)["response_time"]
    assert (times["answered"], times["median_seconds"], times["p90_seconds"]) == (1, 900.0, 900.0)
    histogram = {row["label"]: row["count"] for row in times["histogram"]}
    assert (histogram["15-60 min"], histogram["3-12 h"]) == (1, 0)


class Killed(BaseException):
    """The worker's process ends mid-pass (OOM, SIGKILL): nothing after the send runs."""


class KilledWhileSending(LogBackend):
    def send_batch(
        self, messages: Sequence[PushMessage], deadline: float | None = None
    ) -> list[PushResult]:
        raise Killed


def test_a_push_whose_worker_was_killed_is_due_once_its_lease_has_run_out(
    client: ApiClient, signed_in: OpsClient, app: Flask
) -> None:
    """The only worker dies holding its claim: the push waits for another worker to take it
    over, so the backlog, the oldest due push and /metrics say so once the lease is over,
    instead of showing it 'being sent' for good."""
    start = clock.now()
    clock.freeze(start)
    ana, ben = client.couple()
    add_device(client, ben, "ben-phone-of-a-killed-worker")
    send_bid(client, ana)
    dying = Worker(
        app, name="killed", dispatcher=Dispatcher(KilledWhileSending(), lease_seconds=60)
    )
    with pytest.raises(Killed):
        dying.run_once()
    push = overview(signed_in)["push"]
    assert (push["backlog_due"], push["claimed"]) == (0, 1)  # its lease still runs

    clock.freeze(start + timedelta(minutes=10))
    push = overview(signed_in)["push"]
    assert (push["backlog_due"], push["claimed"]) == (1, 0)
    assert push["oldest_due_seconds"] == 600.0
    scraped = client.get("/metrics").text
    assert "reach_push_backlog 1.0" in scraped
    assert "reach_push_oldest_pending_age_seconds 600.0" in scraped


def test_figures_follow_unpairs_and_deleted_accounts(
    client: ApiClient, signed_in: OpsClient, app: Flask
) -> None:
    def by_hand() -> dict[str, Any]:
        with app.app_context():
            now = clock.now()
            jobs = dict(
                db.session.execute(
                    select(PushJob.state, func.count())
                    .where(PushJob.available_at <= now)
                    .group_by(PushJob.state)
                ).all()
            )
            bids = db.session.scalar(
                select(func.count()).select_from(Bid).where(Bid.created_at >= now - ops.DAY)
            )
            answered = db.session.scalar(
                select(func.count())
                .select_from(Bid)
                .where(Bid.created_at >= now - ops.DAY, Bid.response_seconds.is_not(None))
            )
        return {"pending": jobs.get("pending", 0), "bids": bids, "answered": answered}

    def shown() -> dict[str, Any]:
        figures = overview(signed_in)
        return {
            "pending": figures["push"]["backlog_due"],
            "bids": figures["bids"]["last_day"],
            "answered": figures["response_time"]["answered"],
        }

    ana, ben = client.couple()
    cat, dan = client.couple("Cat", "Dan")
    for person in (ana, ben, cat, dan):
        add_device(client, person, f"token-{uuid.uuid4().hex}")
    answer(client, ben, send_bid(client, ana))
    send_bid(client, ben)
    answer(client, dan, send_bid(client, cat))
    send_bid(client, dan)
    first = shown()
    assert first == by_hand() == {"pending": 2, "bids": 4, "answered": 2}
    assert client.delete("/api/v1/couple", as_=ana).status_code == 204
    after_unpair = shown()
    assert after_unpair == by_hand()
    assert after_unpair["pending"] == 1  # Ben's bid's push is withdrawn with the couple
    assert client.delete("/api/v1/me", as_=dan).status_code == 204
    last = shown()
    # The bids stay (without the deleted account's notes); Dan's couple ended with it.
    assert last == by_hand() == {"pending": 0, "bids": 4, "answered": 2}


def test_a_push_waiting_to_be_retried_is_not_shown_as_deferred_for_quiet_hours(
    client: ApiClient, signed_in: OpsClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """FCM failing for a while: its pushes wait out their backoff, and the overview and
    /metrics say they are retrying, not that the partners are in their quiet hours."""
    ana, ben = client.couple()
    add_device(client, ben, "ben-flaky-phone")
    standin.script("ben-flaky-phone", fcm.internal())
    clock.freeze(clock.now())
    send_bid(client, ana)
    assert fcm_worker.run_once().pushes == 1
    push = overview(signed_in)["push"]
    assert (push["backlog_due"], push["deferred"]) == (0, 0)
    assert push["retrying"] == 1
    scraped = client.get("/metrics").text
    assert "reach_push_deferred 0.0" in scraped
    assert "reach_push_retrying 1.0" in scraped
