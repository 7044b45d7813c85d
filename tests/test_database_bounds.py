"""Waits on PostgreSQL end (service/db_bounds.py): a hung server, or a statement held by a
lock, costs a request seconds and a 503, never the request itself."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from service import create_app
from service.db import Bounds, make_engine
from service.db_bounds import BoundedConnection
from service.demo import embedded_service
from tests.support.client import ApiClient, Person
from tests.support.server import LiveServer
from tests.support.settings import make_settings
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

STATEMENT_MS = 1000


@pytest.fixture
def proxied(database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """PostgreSQL through a proxy the test can stall: every connection stays open and nothing
    answers (a hung server), new ones included."""
    at = make_url(database_url)
    proxy = TcpProxy(at.host or "127.0.0.1", at.port or 5432).up()
    try:
        url = at.set(drivername="postgresql", host="127.0.0.1", port=proxy.port)
        yield proxy, url.render_as_string(hide_password=False)
    finally:
        proxy.flow()
        proxy.down()


def post_bid(client: ApiClient, sender: Person, client_id: str) -> requests.Response:
    return client.post("/api/v1/bids", as_=sender, json={"client_id": client_id, "kind": "connect"})


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def assert_unavailable(answer: requests.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "server_error"
    assert int(answer.headers["Retry-After"]) > 0


def test_a_hung_postgresql_costs_a_served_request_seconds(
    proxied: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    """`reach serve` (gunicorn, gevent) with PostgreSQL hung: /readyz says so within the
    probe's 3 s, a bid and a read are answered 503 within the statement timeout and its
    grace, and once PostgreSQL answers again every bid retried with its `client_id` is stored
    once."""
    proxy, url = proxied
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        REACH_INSTANCE_DIR=str(tmp_path),
        DATABASE_URL=url,
        SECRET_KEY="s" * 48,
        DATABASE_STATEMENT_TIMEOUT_MS=str(STATEMENT_MS),
        DATABASE_CONNECT_TIMEOUT="2",
        PUSH_BACKEND="log",
        LOG_LEVEL="ERROR",
    )
    with embedded_service(env) as (base, _server):
        client = ApiClient(base)
        ana, ben = client.couple()
        assert post_bid(client, ana, str(uuid.uuid4())).status_code == 201
        proxy.stall()

        alive, took = timed(lambda: requests.get(f"{base}/healthz", timeout=10))
        assert alive.status_code == 200 and took < 1
        ready, took = timed(lambda: requests.get(f"{base}/readyz", timeout=10))
        assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"
        assert took < 3, f"/readyz took {took:.1f} s"

        lost = [str(uuid.uuid4()) for _ in range(2)]
        for client_id in lost:
            answer, took = timed(lambda client_id=client_id: post_bid(client, ana, client_id))
            assert_unavailable(answer)
            assert took < STATEMENT_MS / 1000 + 4, f"the bid took {took:.1f} s"
        read, took = timed(lambda: client.get("/api/v1/me", as_=ben))
        assert_unavailable(read)
        assert took < STATEMENT_MS / 1000 + 4, f"the read took {took:.1f} s"

        proxy.flow()
        wait_until(
            lambda: requests.get(f"{base}/readyz", timeout=10).status_code == 200,
            15,
            "readiness to come back",
        )
        for client_id in lost:
            assert post_bid(client, ana, client_id).status_code in (200, 201)
        assert len(client.get("/api/v1/bids", as_=ben).json()["items"]) == 3


def test_a_statement_held_by_a_lock_is_cancelled(database_url: str) -> None:
    """A bid waiting for a lock that someone holds (a migration, an operator's transaction)
    is cancelled by PostgreSQL after DATABASE_STATEMENT_TIMEOUT_MS and answered 503; its retry
    stores it once the lock is gone."""
    server = LiveServer(
        create_app(make_settings(database_url, DATABASE_STATEMENT_TIMEOUT_MS=500))
    ).start()
    try:
        client = ApiClient(server.url)
        ana, ben = client.couple()
        client_id = str(uuid.uuid4())
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(dsn) as holder:
            holder.execute("LOCK TABLE bids IN ACCESS EXCLUSIVE MODE")
            answer, took = timed(lambda: post_bid(client, ana, client_id))
            holder.rollback()
        assert_unavailable(answer)
        assert took < 3, f"the bid took {took:.1f} s"
        assert post_bid(client, ana, client_id).status_code == 201
        assert len(client.get("/api/v1/bids", as_=ben).json()["items"]) == 1
    finally:
        server.stop()


def test_connections_carry_the_bounds_unless_the_url_sets_its_own(database_url: str) -> None:
    """Every connection of the pool opens with the statement timeout and the connect timeout;
    a DATABASE_URL that sets either (`?options=-c statement_timeout=...`, `connect_timeout`)
    keeps its own."""
    bounds = Bounds(pool_seconds=7, connect_seconds=3, statement_ms=1234)
    own = make_url(database_url).update_query_dict(
        {"options": "-c statement_timeout=4321", "connect_timeout": "9"}
    )
    for url, statement, connect in (
        (database_url, "1234ms", "3"),
        (own.render_as_string(hide_password=False), "4321ms", "9"),
    ):
        engine = make_engine(url, bounds=bounds)
        try:
            with engine.connect() as connection:
                shown = connection.exec_driver_sql("SHOW statement_timeout").scalar()
                driver = connection.connection.driver_connection
                assert isinstance(driver, BoundedConnection)
                assert driver.info.get_parameters()["connect_timeout"] == connect
            assert shown == statement
            assert engine.pool.timeout() == 7  # type: ignore[attr-defined]
        finally:
            engine.dispose()
