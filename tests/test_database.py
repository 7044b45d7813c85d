"""The database layer (`service.db`): the PostgreSQL pool, a request's session."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import pytest
import requests
import socketio
from flask import Flask
from sqlalchemy import literal, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from service.db import DriverStatement, make_engine
from service.extensions import db
from tests.support.backends import drop_backends, named
from tests.support.client import ApiClient
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.tcp_proxy import TcpProxy


@pytest.mark.postgres
def test_the_pool_hands_out_the_connection_returned_last(database_url: str) -> None:
    """Last in, first out: a steady load keeps reusing the few connections it needs, whose
    PostgreSQL backends stay warm, while the rest sit idle (pinged when a burst reaches them,
    `IDLE_PING_SECONDS`); first in, first out would cycle through the whole pool."""
    engine = make_engine(database_url, pool_size=3)
    try:
        held = [engine.connect() for _ in range(3)]
        backends = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar() for c in held]
        assert len(set(backends)) == 3
        for connection in held:
            connection.close()
        used = []
        for _ in range(3):
            with engine.connect() as connection:
                used.append(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar())
        assert used == [backends[-1]] * 3
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_connection_lost_on_the_driver_path_replaces_the_pools_others(database_url: str) -> None:
    """A restart drops every pooled connection at once. The first statement to meet a dropped
    one through `DriverStatement.first_row_alone` (a remembered sender's bid) fails; the pool
    then replaces the connections it opened before, as SQLAlchemy's `Connection` does, instead
    of failing one more statement (a 503 to a phone) per dead connection that a burst reaches."""
    name = f"reach-restart-{uuid.uuid4().hex[:8]}"
    engine = make_engine(named(database_url, name), pool_size=4)
    statement = DriverStatement(select(literal(1)), engine.dialect)
    try:
        held = [engine.raw_connection() for _ in range(4)]
        for connection in held:
            connection.close()  # back into the pool: four live connections
        assert drop_backends(database_url, name) == 4
        with pytest.raises(DBAPIError) as lost:
            statement.first_row_alone(engine, {})
        assert lost.value.connection_invalidated
        burst = [engine.raw_connection() for _ in range(4)]  # a burst needs all four at once
        try:
            answers = [c.driver_connection.execute("SELECT 1").fetchone() for c in burst]
        finally:
            for connection in burst:
                connection.close()
        assert answers == [(1,)] * 4
    finally:
        engine.dispose()


@pytest.mark.committed
def test_a_failed_statement_does_not_show_its_parameters(database_url: str) -> None:
    """Errors are logged with their text; a statement's parameters can be a partner's words."""
    engine = make_engine(database_url)
    words = f"words-{uuid.uuid4().hex}"
    try:
        with engine.connect() as connection, pytest.raises(DBAPIError) as failed:
            connection.execute(text("SELECT :note FROM no_such_table"), {"note": words})
    finally:
        engine.dispose()
    assert "no_such_table" in str(failed.value)
    assert words not in str(failed.value)


def lose_the_sessions_connection() -> int:
    """PostgreSQL drops the backend under the app context's session (as a restart does), from
    another connection; the session does not know yet. Returns that backend's pid."""
    backend = int(db.session.execute(text("SELECT pg_backend_pid()")).scalar_one())
    with db.engine.connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    return backend


@pytest.mark.postgres
@pytest.mark.committed
def test_a_connection_lost_before_the_request_ends_does_not_fail_its_answer(app: Flask) -> None:
    """The request's session is closed after its answer is made; if PostgreSQL dropped the
    connection meanwhile (a restart), closing it cannot roll back: the answer stands (nothing
    uncommitted matters any more), and the next request gets a new connection."""
    with app.app_context():
        lose_the_sessions_connection()
    # The app context's teardown closed the session without raising, and gave the pool its
    # place back (a pool without overflow would otherwise shrink by one at each such loss).
    with app.app_context():
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert db.session.execute(text("SELECT 1")).scalar() == 1


@pytest.mark.postgres
@pytest.mark.committed
def test_a_failed_write_whose_connection_was_lost_is_still_rolled_back_without_raising(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """A socket write that fails rolls its work back (`db.roll_back`) before it acks the
    problem. If PostgreSQL dropped the connection in between, the rollback cannot reach it: it
    does not raise (which would lose the ack), the connection is discarded with one warning,
    and the context goes on with a new one."""
    with app.app_context():
        backend = lose_the_sessions_connection()
        with caplog.at_level(logging.WARNING, logger="reach.db"):
            db.roll_back()
        assert [r.getMessage() for r in caplog.records if r.name == "reach.db"] == [
            "database connection lost before a failed write was rolled back; discarded"
        ]
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert db.session.execute(text("SELECT pg_backend_pid()")).scalar() != backend


@pytest.mark.postgres
@pytest.mark.committed
def test_while_postgresql_is_away_requests_and_phones_get_503_and_the_log_one_warning_each(
    database_url: str, server_with: Callable[..., LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    at = make_url(database_url)
    proxy = TcpProxy(at.host or "127.0.0.1", at.port or 5432).up()
    try:
        server = server_with(
            DATABASE_URL=at.set(host="127.0.0.1", port=proxy.port).render_as_string(
                hide_password=False
            )
        )
        ana = ApiClient(server.url).register("Ana")
        connected = Phone(server.url, ana.access_token).connect()
        proxy.down()
        phone = Phone(server.url, ana.access_token)
        with caplog.at_level(logging.WARNING):
            me = requests.get(f"{server.url}/api/v1/me", headers=ana.headers, timeout=10)
            with pytest.raises(socketio.exceptions.ConnectionError):
                phone.connect()
            ack = connected.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "connect"})
        connected.disconnect()
        assert me.status_code == 503, me.text
        assert me.json()["code"] == "server_error"
        assert int(me.headers["Retry-After"]) > 0
        assert me.json()["retry_after"] == int(me.headers["Retry-After"])
        assert phone.refusal["data"]["status"] == 503, phone.refusal
        assert (ack["status"], ack["code"]) == (503, "server_error"), ack
        assert ack["retry_after"] == int(me.headers["Retry-After"]), ack  # no header in an ack
        # The request, the refused connect and the failed socket write: one warning line each.
        unavailable = ("WARNING", "database unavailable; answered 503", None, "OperationalError")
        logged = [
            (r.name, r.levelname, r.getMessage(), r.exc_info, r.__dict__.get("error_type"))
            for r in caplog.records
            if r.name.startswith("reach.") and r.levelno >= logging.WARNING
        ]
        assert logged == [
            ("reach.errors", *unavailable),
            ("reach.realtime", *unavailable),
            ("reach.realtime", *unavailable),
        ]
    finally:
        proxy.down()
