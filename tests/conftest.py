"""Fixture chain: database -> app -> live server -> client; every test rolls back.

Set TEST_DATABASE_URL to run the suite on PostgreSQL (the CI does); otherwise SQLite.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from argon2 import profiles
from flask import Flask
from sqlalchemy import Connection, create_engine, text

from service import create_app, migrate
from service.clock import clock
from service.config import Settings
from service.extensions import db, limiter
from service.models import Base
from service.realtime import members
from service.security import passwords
from service.worker.runner import Worker
from tests.support.client import ApiClient
from tests.support.documented import answers_documented
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.settings import make_settings
from tests.support.smtp_standin import SmtpStandIn

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")

# Real argon2id at its cheapest for the apps this process serves: at the deployed parameters
# (150 ms of CPU a hash) the suite's sign-ups and sign-ins would take most of its CPU. The
# processes the tests start (`reach serve`, gunicorn, workers) hash as deployed, and the tests of
# hashing's cost run there (tests/security/test_hashing_off_the_loop.py); the deployed parameters
# are held to in tests/unit/test_passwords.py.
passwords.hash_with(profiles.CHEAPEST)


def pytest_report_header() -> str:
    return f"reach database: {'PostgreSQL ' + POSTGRES_URL if POSTGRES_URL else 'SQLite'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if POSTGRES_URL:
        return
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="PostgreSQL suite only (TEST_DATABASE_URL)"))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if POSTGRES_URL:
        engine = create_engine(Settings(DATABASE_URL=POSTGRES_URL).database_url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        url = Settings(DATABASE_URL=POSTGRES_URL).database_url
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'reach-test.sqlite3'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def app(database_url: str) -> Flask:
    return create_app(make_settings(database_url))


@pytest.fixture(autouse=True)
def db_connection(request: pytest.FixtureRequest, app: Flask) -> Iterator[Connection | None]:
    """Run the test inside a transaction that is rolled back afterwards."""
    if "committed" in request.keywords:
        yield None
        _truncate_everything(app)
        clock.unfreeze()
        return
    with app.app_context():
        connection = db.engine.connect()
        outer = connection.begin()
        db.bind_to_connection(connection)
    try:
        yield connection
    finally:
        # Background tasks of the apps bound to this connection (a socket sweep, live figures)
        # take its lock for each use: hold it while the connection is rolled back and closed.
        with connection.info["reach.test_lock"]:
            with app.app_context():
                db.unbind()
            outer.rollback()
            connection.close()
        clock.unfreeze()
        with app.app_context():
            limiter.reset()


def _truncate_everything(app: Flask) -> None:
    """Committed tests leave nothing behind for the tests after them."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with app.app_context(), db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def server_with(
    database_url: str, db_connection: Connection | None
) -> Iterator[Callable[..., LiveServer]]:
    """Start another live server whose app has other settings, in the same test transaction."""
    started: list[LiveServer] = []

    def start(**overrides: object) -> LiveServer:
        other = create_app(make_settings(database_url, **overrides))
        if db_connection is not None:
            with other.app_context():
                db.bind_to_connection(db_connection)
        server = LiveServer(other).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        with server.app.app_context():
            # A socket whose close the stopped server never handled would keep the app's
            # session sweep querying, every SOCKET_RECHECK_SECONDS for the rest of the run,
            # through this test's connection (closed by then) and under its lock, which the
            # next checkout of the same pooled connection shares: a later test's teardown
            # would wait for it forever. Forget the sockets; sweep through the app's own engine.
            sockets = members.open_sockets()
            for sid in list(sockets.sessions()):
                sockets.remove(sid)
            if db_connection is not None:
                db.unbind()


@pytest.fixture
def smtp_standin() -> Iterator[SmtpStandIn]:
    """A local SMTP relay that records every mail it is sent (`wait_for(count)`), or refuses
    them (`refuse()`): `server_with(MAIL_BACKEND="smtp", SMTP_URL=smtp_standin.url,
    MAIL_FROM="Reach <no-reply@reach.test>")`."""
    server = SmtpStandIn().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_server(app: Flask) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[ApiClient]:
    """A client of the live server; every answer it gets must be one the OpenAPI document
    describes for its operation (`tests/support/documented.py`)."""
    api = ApiClient(live_server.url)
    try:
        yield from answers_documented(api)
    finally:
        api.http.close()


@pytest.fixture
def phones(live_server: LiveServer) -> Iterator[list[Phone]]:
    """Append Phone objects; all are disconnected after the test."""
    made: list[Phone] = []
    yield made
    for phone in made:
        phone.disconnect()


@pytest.fixture
def phone(live_server: LiveServer, phones: list[Phone]):  # type: ignore[no-untyped-def]
    def connect(token: str | None) -> Phone:
        device = Phone(live_server.url, token).connect()
        phones.append(device)
        return device

    return connect


@pytest.fixture
def worker(app: Flask) -> Worker:
    """The worker of the app under test; call `run_once()` to let it do its jobs now."""
    return Worker(app, name="test-worker")
