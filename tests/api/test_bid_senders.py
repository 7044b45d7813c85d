"""A sender remembered from an earlier bid is proven again by the write that uses them.

POST /bids takes a member the process looked up lately from memory; the write itself checks
that they are still who they were (session, account, couple, partner). These tests change each
of those between two bids of the same sign-in session and check the second bid sees the change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from unittest.mock import patch

import psycopg
import pytest
from flask import Flask
from sqlalchemy import update
from sqlalchemy.engine import make_url

from service.clock import clock
from service.extensions import db
from service.models import User
from service.services.members import Member, Partner, RecentMembers
from tests.support.backends import drop_backends, named
from tests.support.client import ApiClient, Person
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.tcp_proxy import TcpProxy


def post_bid(client: ApiClient, sender: Person, client_id: str | None = None):  # type: ignore[no-untyped-def]
    body = {"client_id": client_id or str(uuid.uuid4()), "kind": "connect"}
    return client.post("/api/v1/bids", as_=sender, json=body)


def bid_count(client: ApiClient, who: Person) -> int:
    return len(client.get("/api/v1/bids", as_=who).json()["items"])


def test_a_sender_who_signed_out_after_a_bid_is_refused(client: ApiClient) -> None:
    ana, ben = client.couple()
    assert post_bid(client, ana).status_code == 201
    assert client.post("/api/v1/auth/logout", json={"refresh_token": ana.refresh_token}).ok
    refused = post_bid(client, ana)
    assert refused.status_code == 401, refused.text
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert bid_count(client, ben) == 1


def test_a_sender_disabled_after_a_bid_is_refused(client: ApiClient, app: Flask) -> None:
    ana, ben = client.couple()
    assert post_bid(client, ana).status_code == 201
    with app.app_context():
        db.session.execute(
            update(User).where(User.id == uuid.UUID(ana.id)).values(disabled_at=clock.now())
        )
        db.session.commit()
    refused = post_bid(client, ana)
    assert refused.status_code == 401, refused.text
    assert "disabled" in refused.json()["detail"]
    assert bid_count(client, ben) == 1


def test_a_couple_that_ended_after_a_bid_cannot_send(client: ApiClient) -> None:
    ana, ben = client.couple()
    assert post_bid(client, ana).status_code == 201
    assert client.delete("/api/v1/couple", as_=ben).ok
    refused = post_bid(client, ana)
    assert refused.status_code == 404, refused.text
    assert "not paired" in refused.json()["detail"]


def test_quiet_hours_set_after_a_bid_hold_the_next_one(client: ApiClient) -> None:
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "America/New_York")
    client.pair(ana, ben)
    # 09:00 in Berlin is 03:00 in New York.
    clock.freeze(datetime.fromisoformat("2031-01-15T08:00:00+00:00"))
    client.fresh(ana)
    client.fresh(ben)
    first = post_bid(client, ana).json()
    assert first["reachable_at"] == first["created_at"]
    quiet = {"quiet_hours": {"start": "22:00", "end": "07:00"}}
    assert client.patch("/api/v1/me", as_=ben, json=quiet).ok
    second = post_bid(client, ana).json()
    assert second["reachable_at"] == "2031-01-15T12:00:00.000000Z"


def test_a_retry_from_a_remembered_sender_returns_the_first_bid(client: ApiClient) -> None:
    ana, ben = client.couple()
    assert post_bid(client, ana).status_code == 201
    client_id = str(uuid.uuid4())
    first = post_bid(client, ana, client_id)
    retry = post_bid(client, ana, client_id)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    assert bid_count(client, ben) == 2


@contextmanager
def statements_of() -> Iterator[list[tuple[str, bool]]]:
    """The statements psycopg is given meanwhile, each with whether its connection was
    autocommitted. Watched at the driver: the bid's write bypasses SQLAlchemy's execution."""
    seen: list[tuple[str, bool]] = []
    execute = psycopg.Cursor.execute

    def watched(cursor, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((str(query).split()[0].upper(), cursor.connection.autocommit))
        return execute(cursor, query, *args, **kwargs)

    with patch.object(psycopg.Cursor, "execute", watched):
        yield seen


@pytest.mark.postgres
@pytest.mark.committed
def test_a_remembered_senders_bid_is_one_autocommitted_statement(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    with statements_of() as first:
        assert post_bid(client, ana).status_code == 201
    with statements_of() as second:
        assert post_bid(client, ana).status_code == 201
    # The first bid of a session looks the sender up, then writes, in one transaction.
    assert first == [("SELECT", False), ("WITH", False)]
    # Later ones prove the sender inside the write: one statement, no BEGIN, no COMMIT.
    assert second == [("WITH", True)]
    quiet = {"quiet_hours": {"start": "22:00", "end": "07:00"}}
    assert client.patch("/api/v1/me", as_=ben, json=quiet).ok
    with statements_of() as changed:
        assert post_bid(client, ana).status_code == 201
    # The proof fails (Ben's quiet hours changed): looked up again, then written as the first.
    assert changed == [("WITH", True), ("SELECT", False), ("WITH", False)]
    assert client.post("/api/v1/auth/logout", json={"refresh_token": ana.refresh_token}).ok
    with statements_of() as signed_out:
        assert post_bid(client, ana).status_code == 401
    assert signed_out == [("WITH", True), ("SELECT", False)]
    assert bid_count(client, ben) == 3
    # Whichever way each bid was written, both phones got its event once it had committed:
    # once each, in the stream's order.
    bids = client.get("/api/v1/bids", as_=ben).json()["items"]
    for partner in (ana_phone, ben_phone):
        partner.wait_for("bid.created", lambda e: e["data"]["id"] == bids[0]["id"])
        created = partner.named("bid.created")
        cursors = [e["cursor"] for e in created]
        assert cursors == list(range(cursors[0], cursors[0] + 3))  # after the pairing's
        assert [e["data"]["id"] for e in created] == [b["id"] for b in reversed(bids)]


def test_recent_members_keep_only_the_newest_paired_members() -> None:
    recent = RecentMembers(size=2)
    partner = Partner(uuid.uuid4(), "Ben", "UTC", None, None, False)
    paired = [
        Member(uuid.uuid4(), uuid.uuid4(), f"Ana {n}", uuid.uuid4(), partner) for n in range(3)
    ]
    for member in paired:
        recent.remember(member)
    assert [recent.get(m.user_id, m.session_id) for m in paired] == [None, *paired[1:]]
    unpaired = Member(paired[2].user_id, paired[2].session_id, "Ana 2", None, None)
    recent.remember(unpaired)  # unpaired since: nothing to remember for POST /bids
    assert recent.get(unpaired.user_id, unpaired.session_id) is None


@pytest.mark.postgres
@pytest.mark.committed
def test_a_bid_whose_connection_postgresql_dropped_gets_503_and_the_next_is_sent(
    database_url: str, server_with: Callable[..., LiveServer]
) -> None:
    """A remembered sender's bid goes straight through the driver (`first_row_alone`). If
    PostgreSQL dropped its pooled connection (a restart), the answer is the same as through
    SQLAlchemy: 503 with Retry-After, nothing written, the connection discarded; the retry is
    sent on a new one."""
    name = f"reach-dropped-{uuid.uuid4().hex[:8]}"
    server = server_with(DATABASE_URL=named(database_url, name))
    client = ApiClient(server.url)
    ana, ben = client.couple()
    assert post_bid(client, ana).status_code == 201  # looked up, then remembered
    assert post_bid(client, ana).status_code == 201  # through the driver
    assert drop_backends(database_url, name) >= 1
    retry_id = str(uuid.uuid4())
    lost = post_bid(client, ana, retry_id)
    assert lost.status_code == 503, lost.text
    assert int(lost.headers["Retry-After"]) > 0
    assert post_bid(client, ana, retry_id).status_code == 201
    assert bid_count(client, ben) == 3


@pytest.mark.postgres
@pytest.mark.committed
def test_a_bid_while_postgresql_is_away_gets_503(
    database_url: str, server_with: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver's own errors come out as SQLAlchemy's, the checkout's included: with
    PostgreSQL gone, the pool pings its connection, fails to open another, and the remembered
    sender's bid is answered 503 with Retry-After, as every other request then is."""
    at = make_url(database_url)
    proxy = TcpProxy(at.host or "127.0.0.1", at.port or 5432).up()
    try:
        url = at.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        client = ApiClient(server_with(DATABASE_URL=url).url)
        ana, _ben = client.couple()
        assert post_bid(client, ana).status_code == 201  # remembered from now on
        monkeypatch.setattr("service.db.engines.IDLE_PING_SECONDS", 0.0)  # every checkout pings
        proxy.down()
        away = post_bid(client, ana)
        assert away.status_code == 503, away.text
        assert away.json()["code"] == "server_error"
        assert int(away.headers["Retry-After"]) > 0
    finally:
        proxy.down()
