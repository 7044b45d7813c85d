"""The overview's figures equal what the database holds, counted by hand after real API calls."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.clock import clock
from service.services import ops
from tests.dashboard.conftest import OpsClient
from tests.dashboard.helpers import send_bid
from tests.support.client import ApiClient, Person


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
