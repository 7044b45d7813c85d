"""Migrations build exactly the schema the models describe, and step back down cleanly."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    PrimaryKeyConstraint,
    UniqueConstraint,
    create_engine,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from service import create_app, migrate
from service.db import make_engine
from service.extensions import db
from service.migrations.session import MIGRATION_LOCK
from service.models import Base, Bid, DeadPushToken, Device, PushDelivery, PushJob, User
from service.services import devices
from tests.conftest import POSTGRES_URL
from tests.support import repairs
from tests.support.client import ApiClient, Person
from tests.support.commands import reach, reach_refuses
from tests.support.server import LiveServer
from tests.support.settings import make_settings
from tests.support.waiting import wait_until


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL suite only (TEST_DATABASE_URL)")
    server = make_url(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"{server.database}_{uuid.uuid4().hex[:8]}"  # beside the suite's own database
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def test_one_head() -> None:
    assert len(ScriptDirectory.from_config(migrate.alembic_config()).get_heads()) == 1


def test_every_foreign_key_is_indexed() -> None:
    """Deleting a row makes PostgreSQL find the rows that refer to it (to cascade or set NULL):
    without an index leading with the foreign key's column, a sequential scan per deleted row."""
    unindexed = []
    for table in Base.metadata.sorted_tables:
        leading = {index.expressions[0] for index in table.indexes}
        leading |= {
            next(iter(constraint.columns))
            for constraint in table.constraints
            if isinstance(constraint, (PrimaryKeyConstraint, UniqueConstraint))
            and constraint.columns
        }
        for key in table.foreign_key_constraints:
            column = next(iter(key.columns))
            if column not in leading:
                unindexed.append(f"{table.name}.{column.name}")
    assert unindexed == []


def test_migrations_match_the_models_and_round_trip(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    engine = make_engine(empty_database)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    migrate.downgrade(empty_database)
    with engine.connect() as conn:
        tables = set(engine.dialect.get_table_names(conn)) - {"alembic_version"}
    assert tables == set()
    migrate.upgrade(empty_database)
    engine.dispose()


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_upgrades_started_together_take_turns(empty_database: str) -> None:
    """Four `reach db upgrade` at once on an empty database: one migrates, the others wait for
    it and then find nothing to do; none fails halfway."""
    env = {**os.environ, "DATABASE_URL": empty_database, "SECRET_KEY": "x" * 48}
    command = [sys.executable, "-m", "service.entry", "db", "upgrade"]
    upgrades = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(4)
    ]
    outputs = [upgrade.communicate(timeout=120)[0].decode() for upgrade in upgrades]
    assert [upgrade.returncode for upgrade in upgrades] == [0] * 4, "\n".join(outputs)
    engine = make_engine(empty_database)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert len(context.get_current_heads()) == 1
    engine.dispose()


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_the_push_outbox_is_vacuumed_after_a_fixed_number_of_changes(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    engine = make_engine(empty_database)
    query = text("SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:names)")
    with engine.connect() as conn:
        options = dict(conn.execute(query, {"names": ["push_jobs", "push_deliveries"]}).all())
    expected = {
        "autovacuum_vacuum_scale_factor=0",
        "autovacuum_vacuum_threshold=2000",
        "autovacuum_analyze_scale_factor=0",
        "autovacuum_analyze_threshold=2000",
    }
    assert {name: set(values) for name, values in options.items()} == {
        "push_jobs": expected,
        "push_deliveries": expected,
    }
    migrate.downgrade(empty_database)  # and back down, past the options
    engine.dispose()


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_the_outbox_keeps_coarse_statistics_and_none_for_columns_no_query_filters_on(
    empty_database: str,
) -> None:
    query = text(
        "SELECT c.relname || '.' || a.attname, a.attstattarget FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE c.relname IN ('push_jobs', 'push_deliveries') AND a.attnum > 0 "
        "AND NOT a.attisdropped"
    )
    migrate.upgrade(empty_database)
    engine = make_engine(empty_database)
    with engine.connect() as conn:
        targets = dict(conn.execute(query).all())
    without = {column for column, target in targets.items() if target == 0}
    assert without == {
        "push_jobs.payload",
        "push_jobs.last_error",
        "push_deliveries.message_id",
        "push_deliveries.last_error",
    }
    # Every other column, those the worker's claim and the dashboard filter on included, keeps
    # coarse statistics (a 3,000-row sample), a new column included: it must be decided on.
    assert {column for column, target in targets.items() if target != 10} == without
    migrate.downgrade(empty_database, revision="0008_outbox_statistics")
    with engine.connect() as conn:
        coarse = {column for column, target in conn.execute(query).all() if target == 10}
    assert coarse == set()
    migrate.downgrade(empty_database, revision="0007_queue_tables_vacuum")
    with engine.connect() as conn:
        assert {column for column, target in conn.execute(query).all() if target != -1} == set()
    engine.dispose()


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_the_foreign_key_indexes_build_again_after_a_build_that_failed_midway(
    empty_database: str,
) -> None:
    # 0010 builds its indexes CONCURRENTLY, one commit each: a failure midway leaves the first
    # ones built and the migration not recorded. Upgrading again must finish the job.
    migrate.upgrade(empty_database, revision="0009_outbox_coarse_statistics")
    engine = make_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(
            text("CREATE INDEX ix_push_deliveries_device_id ON push_deliveries (device_id)")
        )
    migrate.upgrade(empty_database)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
        assert context.get_current_revision() == head
        names = set(
            conn.scalars(
                text("SELECT indexname FROM pg_indexes WHERE indexname = ANY(:names)"),
                {
                    "names": [
                        "ix_push_deliveries_device_id",
                        "ix_invites_used_by_id",
                        "ix_repairs_bid_id",
                        "ix_repairs_paused_by",
                    ]
                },
            )
        )
    assert len(names) == 4
    engine.dispose()


def test_a_sqlite_database_keeps_its_rows_when_a_migration_rebuilds_a_table(
    tmp_path: Path,
) -> None:
    """SQLite changes a column by rebuilding its table (copy, drop, rename). Going back past
    0004 rebuilds `bids`; with foreign keys enforced, dropping the old table would delete every
    bid's responses (ON DELETE CASCADE)."""
    url = f"sqlite:///{tmp_path / 'embedded.sqlite3'}"
    migrate.upgrade(url)
    app = create_app(make_settings(url))
    server = LiveServer(app).start()
    try:
        client = ApiClient(server.url)
        ana, ben = client.couple()
        bid = client.post(
            "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
        ).json()
        answer = {"client_id": str(uuid.uuid4()), "kind": "toward"}
        assert client.post(f"/api/v1/bids/{bid['id']}/responses", as_=ben, json=answer).ok
    finally:
        server.stop()
        with app.app_context():
            db.engine.dispose()

    def responses() -> int:
        engine = make_engine(url)
        with engine.connect() as conn:
            count = int(conn.execute(text("SELECT count(*) FROM bid_responses")).scalar_one())
        engine.dispose()
        return count

    migrate.downgrade(url, revision="0002")
    assert responses() == 1
    migrate.upgrade(url)
    assert responses() == 1


def test_tokens_switched_off_for_another_project_can_come_back_after_0012(
    empty_database: str,
) -> None:
    """Before 0012 a SENDER_ID_MISMATCH switched a device off as `unregistered`, which is now
    refused for good: those whose deliveries say so become `sender_id_mismatch`."""
    migrate.upgrade(empty_database, revision="0011_drop_bids_sender_created")
    engine = make_engine(empty_database)
    now = datetime.now(UTC)
    user_id, other_project, uninstalled = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            insert(User.__table__).values(
                id=user_id,
                email="ana@example.test",
                password_hash="-",
                display_name="Ana",
                timezone="UTC",
                notes_on_lock_screen=False,
                created_at=now,
            )
        )
        job_id = conn.execute(
            insert(PushJob.__table__)
            .values(
                kind="bid.created",
                dedupe_key="bid.created:x",
                recipient_id=user_id,
                payload={},
                urgent=False,
                state="done",
                available_at=now,
                attempts=1,
                created_at=now,
            )
            .returning(PushJob.__table__.c.id)
        ).scalar_one()
        for device_id, error in (
            (other_project, "SENDER_ID_MISMATCH"),
            (uninstalled, "UNREGISTERED"),
        ):
            conn.execute(
                insert(Device.__table__).values(
                    id=device_id,
                    user_id=user_id,
                    platform="android",
                    push_token=f"token-{device_id}",
                    active=False,
                    disabled_reason="unregistered",
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(PushDelivery.__table__).values(
                    job_id=job_id,
                    device_id=device_id,
                    platform="android",
                    state="unregistered",
                    attempts=1,
                    last_error=error,
                    updated_at=now,
                )
            )

    def reasons() -> dict[uuid.UUID, str]:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Device.__table__.c.id, Device.__table__.c.disabled_reason)
            ).all()
        return {device_id: reason for device_id, reason in rows}

    migrate.upgrade(empty_database)
    assert reasons() == {other_project: "sender_id_mismatch", uninstalled: "unregistered"}
    # 0017: the dead one stays refused once its device is deleted; the other can come back.
    with engine.connect() as conn:
        dead = conn.execute(select(DeadPushToken.token_sha256, DeadPushToken.reason)).all()
    assert dead == [(devices.token_sha256(f"token-{uninstalled}"), "unregistered")]
    migrate.downgrade(empty_database, revision="0011_drop_bids_sender_created")
    assert reasons() == {other_project: "unregistered", uninstalled: "unregistered"}
    engine.dispose()


@contextlib.contextmanager
def _served(url: str) -> Iterator[ApiClient]:
    app = create_app(make_settings(url))
    server = LiveServer(app).start()
    try:
        yield ApiClient(server.url)
    finally:
        server.stop()
        with app.app_context():
            db.engine.dispose()


def _what_they_see(client: ApiClient, ana: Person, ben: Person, repair_id: str) -> dict[str, Any]:
    """Everything both partners read back: bids, answers, insights, repairs, sync, devices."""
    seen: dict[str, Any] = {}
    for who in (ana, ben):
        for path in (
            "/api/v1/me",
            "/api/v1/bids",
            "/api/v1/insights",
            "/api/v1/checkins/current",
            "/api/v1/repairs",
            f"/api/v1/repairs/{repair_id}",
            f"/api/v1/repairs/{repair_id}/messages",
            "/api/v1/sync",
            "/api/v1/devices",
        ):
            response = client.get(path, as_=client.fresh(who))
            assert response.status_code == 200, (path, response.text)
            seen[f"{who.user['display_name']} {path}"] = _timeless(response.json())
    return seen


MOMENTS = ("since", "until", "week_start")


def _timeless(body: Any) -> Any:
    """The body without the moments it was read at (insights count back from now)."""
    if isinstance(body, dict):
        return {k: _timeless(v) for k, v in body.items() if k not in MOMENTS}
    if isinstance(body, list):
        return [_timeless(item) for item in body]
    return body


def _rows(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        counts = {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in Base.metadata.sorted_tables
        }
    engine.dispose()
    return counts


def test_stepping_back_and_up_again_keeps_every_row_and_what_the_partners_read(
    empty_database: str,
) -> None:
    """An operator's rollback (`reach db downgrade --revision R`) and the upgrade after it, from
    every revision since the history became one line, on a database holding a couple's bids and
    answers, a repair with its messages, a check-in, devices, refresh tokens and push jobs."""
    migrate.upgrade(empty_database)
    with _served(empty_database) as client:
        ana, ben = client.couple()
        for n, kind in enumerate(("connect", "comfort", "share", "help")):
            bid = client.post(
                "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": kind}
            ).json()
            if n < 3:
                assert client.post(f"/api/v1/bids/{bid['id']}/delivered", as_=ben).ok
            if n == 1:
                later = {
                    "client_id": str(uuid.uuid4()),
                    "kind": "later",
                    "back_at": repairs.iso(datetime.now(UTC) + timedelta(hours=2)),
                }
                assert client.post(f"/api/v1/bids/{bid['id']}/responses", as_=ben, json=later).ok
            if n < 2:
                toward = {"client_id": str(uuid.uuid4()), "kind": "toward"}
                assert client.post(f"/api/v1/bids/{bid['id']}/responses", as_=ben, json=toward).ok
        repair = repairs.start(client, ben, topic="the dishes")
        repairs.write(client, ben, repair["id"])
        repairs.write(client, ana, repair["id"], body="I heard you.")
        scores = {"accessible": 4, "responsive": 3, "engaged": 5}
        checkin = {"client_id": str(uuid.uuid4()), **scores}
        assert client.post("/api/v1/checkins", as_=ana, json=checkin).ok
        for who, token in ((ana, "ana-phone"), (ben, "ben-phone")):
            device = {"platform": "android", "push_token": token}
            assert client.post("/api/v1/devices", as_=who, json=device).ok
        before = _what_they_see(client, ana, ben, repair["id"])
    engine = make_engine(empty_database)
    with engine.begin() as conn:  # the outbox in every state a job can be in
        states = ("pending", "claimed", "done", "cancelled", "expired", "dead")
        ids = conn.scalars(select(PushJob.__table__.c.id).order_by("id")).all()
        assert len(ids) >= len(states)
        for job_id, state in zip(ids, states, strict=False):
            conn.execute(
                PushJob.__table__.update().where(PushJob.__table__.c.id == job_id),
                {"state": state},
            )
    engine.dispose()
    rows = _rows(empty_database)
    history = ScriptDirectory.from_config(migrate.alembic_config())
    since_merge = [
        script.revision
        for script in history.walk_revisions("0005_merge", "heads")
        if script.revision != history.get_current_head()
    ]
    for revision in since_merge:
        migrate.downgrade(empty_database, revision=revision)
        migrate.upgrade(empty_database)
        assert _rows(empty_database) == rows, revision
    with _served(empty_database) as client:
        assert _what_they_see(client, ana, ben, repair["id"]) == before
        refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
        assert refreshed.status_code == 200, refreshed.text


def _three_delivered_bids(client: ApiClient, turned_toward: int) -> Person:
    """Ana, paired with Ben: three bids of hers delivered to him, the first `turned_toward`
    of them answered."""
    ana, ben = client.couple()
    for n in range(3):
        bid = client.post(
            "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
        ).json()
        assert client.post(f"/api/v1/bids/{bid['id']}/delivered", as_=ben).ok
        if n < turned_toward:
            toward = {"client_id": str(uuid.uuid4()), "kind": "toward"}
            assert client.post(f"/api/v1/bids/{bid['id']}/responses", as_=ben, json=toward).ok
    return ana


def test_bids_answered_before_the_insights_columns_keep_their_figures(
    empty_database: str,
) -> None:
    """Migration 0004 fills the facts insights are computed from for the bids already there:
    how each was first answered, kept promises, and how long each took to reach the phone."""
    migrate.upgrade(empty_database)
    with _served(empty_database) as client:
        ana = _three_delivered_bids(client, turned_toward=1)
        engine = make_engine(empty_database)
        with engine.begin() as conn:  # they took 40 s to reach Ben's phone
            bids = Bid.__table__
            for bid_id, created_at in conn.execute(select(bids.c.id, bids.c.created_at)).all():
                conn.execute(
                    bids.update().where(bids.c.id == bid_id),
                    {"delivered_at": created_at + timedelta(seconds=40), "delivery_seconds": 40},
                )
        engine.dispose()
        before = client.get("/api/v1/insights", as_=ana).json()["partners"]
    assert [partner["median_delivery_seconds"] for partner in before] == [None, 40]
    migrate.downgrade(empty_database, revision="0002")  # the release before insights
    migrate.upgrade(empty_database)
    with _served(empty_database) as client:
        assert client.get("/api/v1/insights", as_=client.fresh(ana)).json()["partners"] == before


SEED_BIDS = """
INSERT INTO couples (id, paired_at, last_cursor) VALUES (md5('couple')::uuid, now(), 0);
INSERT INTO users (id, email, password_hash, display_name, timezone, notes_on_lock_screen,
  couple_id, created_at)
SELECT md5(n)::uuid, n || '@example.test', '-', n, 'UTC', false, md5('couple')::uuid, now()
FROM unnest(ARRAY['ana', 'ben']) n;
INSERT INTO bids (id, couple_id, sender_id, recipient_id, client_id, kind, status, created_at,
  reachable_at, expires_at, delivered_at, responded_at, response, response_seconds)
SELECT md5('bid' || g)::uuid, md5('couple')::uuid, md5('ana')::uuid, md5('ben')::uuid,
  md5('client' || g)::uuid, 'connect', 'answered', now() - g * interval '1 s',
  now() - g * interval '1 s', now(), now() - g * interval '1 s' + interval '2 s',
  now() - g * interval '1 s' + interval '9 s', 'toward', 9
FROM generate_series(1, :bids) g;
INSERT INTO bid_responses (id, bid_id, responder_id, client_id, kind, created_at)
SELECT md5('response' || id::text)::uuid, id, recipient_id, md5('answer' || id::text)::uuid,
  'toward', responded_at
FROM bids
"""
A_NEW_BID = text(
    "INSERT INTO bids (id, couple_id, sender_id, recipient_id, client_id, kind, status, "
    "created_at, reachable_at, expires_at) VALUES (gen_random_uuid(), md5('couple')::uuid, "
    "md5('ana')::uuid, md5('ben')::uuid, gen_random_uuid(), 'connect', 'sent', now(), now(), "
    "now() + interval '1 day')"
)


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_bids_are_written_and_read_while_the_insights_columns_are_added(
    empty_database: str,
) -> None:
    """Upgrading past 0004 fills four columns of every bid and indexes the table twice more:
    done under the ALTER TABLE's lock, it stopped every request touching bids for the whole
    time (19 s for 200,000 bids on 2 cores)."""
    migrate.upgrade(empty_database, revision="0002")
    engine = make_engine(empty_database)
    with engine.begin() as conn:
        for statement in SEED_BIDS.split(";"):
            conn.execute(text(statement), {"bids": 50_000})
    upgrading = threading.Thread(target=migrate.upgrade, args=(empty_database,))
    slowest = 0.0
    with engine.connect() as conn:
        conn.execute(text("SET statement_timeout = '30s'"))
        conn.commit()
        upgrading.start()
        while upgrading.is_alive():
            started = time.monotonic()
            conn.execute(A_NEW_BID)
            conn.execute(text("SELECT count(*) FROM (SELECT id FROM bids LIMIT 20) b"))
            conn.commit()
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.02)
    upgrading.join()
    with engine.connect() as conn:
        head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
        assert MigrationContext.configure(conn).get_current_revision() == head
        answered = conn.execute(
            text(
                "SELECT count(*) FROM bids WHERE first_response = 'toward' "
                "AND toward_at IS NOT NULL AND delivery_seconds = 2"
            )
        ).scalar_one()
    engine.dispose()
    assert slowest < 1.5
    assert answered == 50_000


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_an_upgrade_is_not_cut_short_by_the_requests_statement_timeout(
    empty_database: str,
) -> None:
    """Behind PgBouncer the statement timeout is set on the role (docs/operations.md), and
    `reach db upgrade` connects as that role: filling 0004's columns or building an index on a
    big table takes longer than any request may, and was cancelled every time it was rerun."""
    migrate.upgrade(empty_database, revision="0002")
    engine = make_engine(empty_database)
    with engine.begin() as conn:
        for statement in SEED_BIDS.split(";"):
            conn.execute(text(statement), {"bids": 20_000})
        database = conn.execute(text("SELECT current_database()")).scalar_one()
        conn.execute(text(f"ALTER DATABASE {database} SET statement_timeout = '50ms'"))
    engine.dispose()
    migrate.upgrade(empty_database)
    engine = make_engine(empty_database)
    with engine.connect() as conn:
        head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
        assert MigrationContext.configure(conn).get_current_revision() == head
    engine.dispose()


def test_bids_left_without_their_insights_facts_get_them(empty_database: str) -> None:
    """Bids delivered before 0004 had no delivery_seconds, and one answered by the release
    before 0004 while it still ran after the migration had none of its facts. The bids are
    written by this release, whose models need the newest schema, and the database is then
    taken back to before 0016 with their facts gone."""
    migrate.upgrade(empty_database)
    with _served(empty_database) as client:
        ana = _three_delivered_bids(client, turned_toward=2)
        before = client.get("/api/v1/insights", as_=ana).json()["partners"]
    migrate.downgrade(empty_database, revision="0015_refresh_token_successor")
    engine = make_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(
            Bid.__table__.update().values(
                first_response=None, toward_at=None, back_at=None, delivery_seconds=None
            )
        )
    engine.dispose()
    migrate.upgrade(empty_database)
    with _served(empty_database) as client:
        after = client.get("/api/v1/insights", as_=client.fresh(ana)).json()["partners"]
    assert after == before
    # Two of the three bids turned toward; the third is still open, outside the rate.
    assert [(p["turn_toward_rate"], p["open"]) for p in after] == [(None, 0), (1.0, 1)]


def test_bids_answered_before_0027_keep_their_response_time_as_the_time_awake(
    empty_database: str,
) -> None:
    """Migration 0027 fills `awake_response_seconds` of the bids already answered with their
    `response_seconds` (the quiet hours they were answered under are kept nowhere), so the
    insights' medians stay what they were; a bid not answered stays without either."""
    migrate.upgrade(empty_database)
    with _served(empty_database) as client:
        ana = _three_delivered_bids(client, turned_toward=2)
    migrate.downgrade(empty_database, revision="0026_unicode_email_domains")
    engine = make_engine(empty_database)
    with engine.begin() as conn:  # they took Ben 9 h 15 min by the bid's clock
        conn.execute(
            text("UPDATE bids SET response_seconds = 33300 WHERE response_seconds IS NOT NULL")
        )
    engine.dispose()
    migrate.upgrade(empty_database)
    engine = make_engine(empty_database)
    with engine.connect() as conn:
        bids = Bid.__table__
        rows = conn.execute(select(bids.c.response_seconds, bids.c.awake_response_seconds)).all()
    engine.dispose()
    assert sorted(rows, key=str) == [(33300, 33300), (33300, 33300), (None, None)]
    with _served(empty_database) as client:
        partners = client.get("/api/v1/insights", as_=client.fresh(ana)).json()["partners"]
    assert [p["median_response_seconds"] for p in partners] == [None, 33300]


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_an_index_left_invalid_by_a_failed_build_is_built_again(empty_database: str) -> None:
    """A CONCURRENTLY build that fails (0014's, here) leaves its column added and its index
    INVALID, and Kubernetes retries the Job before anyone drops it: the retry must add nothing
    twice, and not take the index as built (IF NOT EXISTS), leaving a uniqueness that does not
    hold."""
    migrate.upgrade(empty_database, revision="0013_refresh_token_expiry")
    engine = make_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE checkin_answers ADD COLUMN client_id uuid"))
        conn.execute(
            text(
                "CREATE UNIQUE INDEX uq_checkin_answers_user_client "
                "ON checkin_answers (user_id, client_id)"
            )
        )
        conn.execute(  # what the failed build left
            text(
                "UPDATE pg_index SET indisvalid = false "
                "WHERE indexrelid = 'uq_checkin_answers_user_client'::regclass"
            )
        )
    migrate.upgrade(empty_database)
    with engine.connect() as conn:
        invalid = conn.scalars(
            text(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE NOT i.indisvalid"
            )
        ).all()
        unique = conn.scalar(
            text("SELECT indisunique FROM pg_index WHERE indexrelid = :name ::regclass"),
            {"name": "uq_checkin_answers_user_client"},
        )
    engine.dispose()
    assert invalid == []
    assert unique is True


SECRET = {"SECRET_KEY": "migrations-test-secret-0123456789abcdef"}


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def _reach_db(url: str, *args: str, **settings: str) -> Iterator[subprocess.Popen[str]]:
    """`reach db ...` started as a deploy Job starts it; the caller waits for it."""
    env = {**os.environ, "DATABASE_URL": url, "LOG_FORMAT": "text", **SECRET, **settings}
    command = subprocess.Popen(
        [sys.executable, "-m", "service.entry", "db", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield command
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate()


def _a_run_holding_the_lock(url: str, name: str) -> Any:
    """A session holding the migration lock, as a `reach db upgrade` on another host holds it."""
    import psycopg

    holder = psycopg.connect(_libpq(url), application_name=name, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    return holder


def _head(url: str) -> list[str]:
    return migrate.current(url)


def _in_background(
    run: Callable[..., object], *args: Any, **kwargs: Any
) -> tuple[threading.Thread, list[BaseException]]:
    """`run(*args, **kwargs)` on a thread not started yet, and the list its failure goes to."""
    failed: list[BaseException] = []

    def target() -> None:
        try:
            run(*args, **kwargs)
        except BaseException as exc:
            failed.append(exc)

    return threading.Thread(target=target), failed


def _gave_way(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The migration's log lines saying a statement gave way to a lock (lock_timeout)."""
    return [r for r in caplog.records if "gave way" in r.getMessage()]


def _sleeping(holder: Any) -> None:
    with contextlib.suppress(Exception):  # cancelled when the test is done
        holder.execute("SELECT pg_sleep(60)")


HEAD = [ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()]


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_a_run_gone_with_the_migration_lock_is_named_ended_and_taken_over(
    empty_database: str,
) -> None:
    """A migration whose pod was lost with its network keeps its session, and the lock, until
    TCP keepalive ends it (two hours): the Job's retry stalled that long, saying nothing about
    why. It names the session, ends it once it has sat idle MIGRATION_ABANDONED_SECONDS, and
    migrates."""
    import psycopg

    lost = _a_run_holding_the_lock(empty_database, "reach-migrate lost-pod 7")
    pid = lost.info.backend_pid
    try:
        with _reach_db(empty_database, "upgrade", MIGRATION_ABANDONED_SECONDS="1") as upgrade:
            out, err = upgrade.communicate(timeout=60)
        assert upgrade.returncode == 0, out + err
        assert f"pid {pid} (application_name 'reach-migrate lost-pod 7'" in err, err
        assert "its run is gone" in err, err
        assert "database is up to date" in out
        assert _head(empty_database) == HEAD
        with pytest.raises(psycopg.OperationalError):  # its session was ended
            lost.execute("SELECT 1")
    finally:
        lost.close()


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_a_run_waiting_for_a_working_migration_gives_up_in_time_saying_what_to_do(
    empty_database: str,
) -> None:
    """A run holding the lock that is still working (its session running a statement) is never
    ended: the other waits MIGRATION_LOCK_WAIT_SECONDS, visible in pg_stat_activity as a
    migration, then stops saying which session it waited for and what to do."""
    working = _a_run_holding_the_lock(empty_database, "reach-migrate busy-pod 9")
    pid = working.info.backend_pid
    statement = threading.Thread(target=_sleeping, args=(working,), daemon=True)
    watcher = make_engine(empty_database)
    names = text("SELECT pid, application_name, state FROM pg_stat_activity")

    def seen() -> dict[int, tuple[str, str]]:
        with watcher.connect() as conn:
            return {row[0]: (row[1], row[2]) for row in conn.execute(names)}

    try:
        statement.start()
        wait_until(lambda: seen()[pid][1] == "active", what="the working run's statement")
        waits = {"MIGRATION_LOCK_WAIT_SECONDS": "2", "MIGRATION_ABANDONED_SECONDS": "1"}
        with _reach_db(empty_database, "upgrade", **waits) as upgrade:
            wait_until(
                lambda: (
                    upgrade.poll() is not None
                    or any(
                        name.startswith("reach-migrate ") and other != pid
                        for other, (name, _) in seen().items()
                    )
                ),
                timeout=30,
                what="the waiting run's session, named",
            )
            out, err = upgrade.communicate(timeout=60)
        assert upgrade.returncode == 1, out + err
        assert "Traceback" not in err, err
        assert "another migration of this database still holds its lock" in err, err
        assert f"pid {pid} (application_name 'reach-migrate busy-pod 9'" in err, err
        assert "MIGRATION_LOCK_WAIT_SECONDS=2" in err, err
        assert f"SELECT pg_terminate_backend({pid})" in err, err
        assert seen()[pid] == ("reach-migrate busy-pod 9", "active")  # left working
    finally:
        with watcher.connect() as conn:
            conn.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})
        statement.join(timeout=30)
        working.close()
        watcher.dispose()


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_an_alter_table_waiting_behind_a_long_transaction_gives_way_to_the_requests(
    empty_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """0015 adds a column to `refresh_tokens`: its ALTER TABLE waits for a transaction reading
    the table, and every request after it waited behind it, for as long as that transaction
    stayed open. With lock_timeout it gives way, lets them through, and tries again later."""
    migrate.upgrade(empty_database, revision="0014_checkin_client_id")
    engine = make_engine(empty_database)
    patience = migrate.Patience(lock_timeout_ms=200, lock_retries=20, backoff_seconds=0.1)
    gave_way = functools.partial(_gave_way, caplog)
    upgrading = threading.Thread(
        target=migrate.upgrade, args=(empty_database,), kwargs={"patience": patience}
    )
    slowest = 0.0
    with engine.connect() as long, engine.connect() as requests:
        long.execute(text("SELECT count(*) FROM refresh_tokens"))  # and stays open
        requests.execute(text("SET statement_timeout = '3s'"))
        requests.commit()
        upgrading.start()
        deadline = time.monotonic() + 15
        while len(gave_way()) < 3 and time.monotonic() < deadline:
            started = time.monotonic()
            with contextlib.suppress(DBAPIError):  # a statement timeout: waited 3 s
                requests.execute(text("SELECT count(*) FROM refresh_tokens"))
            requests.rollback()
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.02)
        long.rollback()
    upgrading.join(timeout=60)
    engine.dispose()
    assert slowest < 1.0
    assert len(gave_way()) >= 3
    assert _head(empty_database) == HEAD


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_a_migration_that_keeps_giving_way_stops_saying_what_is_in_its_way(
    empty_database: str,
) -> None:
    migrate.upgrade(empty_database, revision="0014_checkin_client_id")
    engine = make_engine(empty_database)
    with engine.connect() as long:
        long.execute(text("SELECT count(*) FROM refresh_tokens"))
        pid = long.execute(text("SELECT pg_backend_pid()")).scalar_one()
        timeouts = {"MIGRATION_LOCK_TIMEOUT_MS": "200", "MIGRATION_LOCK_RETRIES": "1"}
        with _reach_db(empty_database, "upgrade", **timeouts) as upgrade:
            out, err = upgrade.communicate(timeout=60)
        long.rollback()
    assert upgrade.returncode == 1, out + err
    said = err.splitlines()[-1]
    assert said.startswith(
        "Error: a migration step gave way 2 times after waiting 200 ms (MIGRATION_LOCK_TIMEOUT_MS)"
    ), said
    assert "ALTER TABLE refresh_tokens ADD COLUMN successor_hash" in said
    assert f"pid {pid} (" in said
    assert "pg_terminate_backend(pid)" in said
    assert "Traceback" not in err
    assert _head(empty_database) == ["0014_checkin_client_id"]  # nothing half done
    with engine.connect() as conn:
        columns = conn.scalars(
            text("SELECT column_name FROM information_schema.columns WHERE table_name = :t"),
            {"t": "refresh_tokens"},
        ).all()
    engine.dispose()
    assert "successor_hash" not in columns


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_an_index_built_concurrently_waits_out_a_long_transaction(empty_database: str) -> None:
    """CREATE INDEX CONCURRENTLY waits for every transaction already open, holding up no
    request meanwhile: the migrations' lock_timeout does not cut it short (which would leave an
    INVALID index, and a migration failing every time one transaction outlasts it)."""
    migrate.upgrade(empty_database, revision="0012_devices_sessions")
    engine = make_engine(empty_database)
    patience = migrate.Patience(lock_timeout_ms=100, lock_retries=0)
    building, failed = _in_background(
        migrate.upgrade, empty_database, revision="0013_refresh_token_expiry", patience=patience
    )
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'reach-migrate %' "
        "AND wait_event_type = 'Lock'"
    )
    with engine.connect() as long, engine.connect() as watcher:
        # A snapshot the build waits out, as pg_dump's (a repeatable read transaction).
        long.execution_options(isolation_level="REPEATABLE READ")
        long.execute(text("SELECT count(*) FROM users"))
        building.start()

        def build_waits() -> bool:
            count = watcher.execute(waiting).scalar_one()
            watcher.rollback()
            return bool(count) or not building.is_alive()

        wait_until(build_waits, what="the index build waiting for the open transaction")
        building.join(timeout=0.5)  # five lock timeouts
        assert building.is_alive(), failed
        long.rollback()
    building.join(timeout=60)
    with engine.connect() as conn:
        invalid = conn.scalars(
            text(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE NOT i.indisvalid"
            )
        ).all()
    engine.dispose()
    assert failed == []
    assert invalid == []
    assert _head(empty_database) == ["0013_refresh_token_expiry"]


def test_stepping_back_one_from_several_heads_is_refused_naming_them(empty_database: str) -> None:
    """Between 0002 and 0005's merge a database can be at several revisions at once: `--revision
    -1` stepped back one of them, picked by Alembic (dropping every repair conversation, say)."""
    env = {"DATABASE_URL": empty_database, **SECRET}
    for revision in ("0003_operators", "0003_repairs"):
        reach("db", "upgrade", "--revision", revision, env=env)
    said = reach_refuses("db", "downgrade", "--revision", "-1", env={**os.environ, **env})
    assert "the database is at 2 revisions at once (0003_operators, 0003_repairs)" in said
    assert "give the revision to go back to (`reach db history` lists them)" in said
    assert _head(empty_database) == ["0003_operators", "0003_repairs"]
    out = reach("db", "downgrade", "--revision", "0002", env=env)
    assert "database is at 0002" in out


def test_a_database_a_newer_release_migrated_is_told_as_such(empty_database: str) -> None:
    """The release before runs its migration Job (a rollback) on a database the newer one
    migrated: its revision is unknown here, and was answered "give heads, base, or a revision",
    as though the operator had typed a wrong one."""
    env = {"DATABASE_URL": empty_database, **SECRET}
    reach("db", "upgrade", env=env)
    engine = make_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_a_newer_release'"))
    engine.dispose()
    for command in (["upgrade"], ["downgrade", "--revision", HEAD[0]]):
        said = reach_refuses("db", *command, env={**os.environ, **env})
        assert (
            "the database is at revision 0099_from_a_newer_release, which this release does "
            f"not know (its newest is {HEAD[0]}): a newer release migrated it" in said
        ), said
        assert "give heads, base" not in said
    out = reach("db", "current", env=env)
    assert "0099_from_a_newer_release: not a revision of this release" in out


def test_db_current_and_history_say_where_the_database_is(empty_database: str) -> None:
    env = {"DATABASE_URL": empty_database, **SECRET}
    assert reach("db", "current", env=env).startswith("base: no migration has run")
    reach("db", "upgrade", "--revision", "0014", env=env)
    out = reach("db", "current", env=env)
    assert out == f"0014_checkin_client_id (older than {HEAD[0]}: run `reach db upgrade`)\n"
    reach("db", "upgrade", env=env)
    assert reach("db", "current", env=env) == f"{HEAD[0]} (newest)\n"
    lines = reach("db", "history", env=env).splitlines()
    assert lines[0].startswith(f"{HEAD[0]} (after ")
    merge = "0005_merge (after 0003_repairs, 0003_operators, 0004_insights): one line of history"
    assert any(line.startswith(merge) for line in lines), lines
    assert lines[-1].startswith("0001 (after base): accounts, couples"), lines


@pytest.mark.parametrize("empty_database", ["postgresql"], indirect=True)
def test_stepping_back_tried_again_after_a_lock_timeout_stops_where_first_asked(
    empty_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`--revision -3` from 0011: 0010's step commits what was done so far (its indexes are
    dropped CONCURRENTLY), then 0009's ALTER TABLE gives way to a lock and is tried again. The
    retry worked -3 out again from 0010, where the database then was, and stepped back to 0007:
    four migrations, the last one never asked for. It is resolved to 0008 once, before."""
    migrate.upgrade(empty_database, revision="0011_drop_bids_sender_created")
    engine = make_engine(empty_database)
    patience = migrate.Patience(lock_timeout_ms=200, lock_retries=20, backoff_seconds=0.1)
    gave_way = functools.partial(_gave_way, caplog)
    stepping_back, failed = _in_background(
        migrate.downgrade, empty_database, revision="-3", patience=patience
    )
    with caplog.at_level("INFO", logger="reach.migrate"), engine.connect() as holding:
        holding.execute(text("LOCK TABLE push_jobs IN SHARE MODE"))  # 0009's table, until told
        stepping_back.start()
        wait_until(lambda: bool(gave_way()) or not stepping_back.is_alive(), timeout=30)
        holding.rollback()
        stepping_back.join(timeout=60)
    engine.dispose()
    assert failed == []
    assert gave_way(), "0009's step never waited for the lock"
    assert _head(empty_database) == ["0008_outbox_statistics"]
    said = [r.getMessage() for r in caplog.records]
    assert "--revision -3 from 0011_drop_bids_sender_created is 0008_outbox_statistics" in said


def test_relative_revisions_are_named_before_anything_runs(empty_database: str) -> None:
    env = {"DATABASE_URL": empty_database, **SECRET}
    out = reach("db", "upgrade", "--revision", "+1", env=env)
    assert "--revision +1 from base is 0001\n" in out, out
    reach("db", "upgrade", "--revision", "0009", env=env)
    out = reach("db", "upgrade", "--revision", "+2", env=env)
    assert (
        "--revision +2 from 0009_outbox_coarse_statistics is 0011_drop_bids_sender_created" in out
    )
    out = reach("db", "downgrade", "--revision", "-3", env=env)
    assert "--revision -3 from 0011_drop_bids_sender_created is 0008_outbox_statistics" in out
    assert "database is at 0008_outbox_statistics" in out
    said = reach_refuses("db", "downgrade", "--revision", "-9", env={**os.environ, **env})
    assert "--revision -9 steps back through 0005_merge, which merges" in said, said
    assert _head(empty_database) == ["0008_outbox_statistics"]


@pytest.mark.parametrize(
    "setting",
    [
        "MIGRATION_LOCK_WAIT_SECONDS",
        "MIGRATION_ABANDONED_SECONDS",
        "MIGRATION_LOCK_TIMEOUT_MS",
        "MIGRATION_LOCK_RETRIES",
    ],
)
def test_a_negative_migration_wait_is_refused_in_one_line(
    empty_database: str, setting: str
) -> None:
    """A negative wait ran as none (a retry count, a lock wait) or failed on PostgreSQL with
    its own error once connected (lock_timeout): refused before anything runs."""
    env = {**os.environ, "DATABASE_URL": empty_database, **SECRET, setting: "-1"}
    for command in (["upgrade"], ["downgrade", "--revision", "base"]):
        said = reach_refuses("db", *command, env=env)
        assert said.splitlines()[-1].startswith(f"Error: {setting} is 0 or more ("), said
    assert _head(empty_database) == []


def test_an_api_on_a_database_never_migrated_answers_503_saying_what_to_run(
    empty_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """API processes started before `reach db upgrade` ran: on PostgreSQL every request was a
    500 logged with its traceback, on SQLite a 503 logged as "database unavailable". Each is
    a 503, logged in one line that says what to run."""
    app = create_app(make_settings(empty_database))
    body = {"email": "ana@example.test", "password": "correct horse battery"}
    with caplog.at_level(logging.WARNING, logger="reach.errors"):
        answer = app.test_client().post("/api/v1/auth/login", json=body)
    with app.app_context():
        db.engine.dispose()
    assert answer.status_code == 503, answer.get_json()
    assert answer.headers["Retry-After"]
    logged = [r for r in caplog.records if r.name == "reach.errors"]
    assert [r.getMessage() for r in logged] == [
        "the database has no Reach tables: run `reach db upgrade`; answered 503"
    ]
    assert logged[0].exc_info is None


def test_addresses_stored_with_a_punycode_domain_are_kept_in_unicode(
    empty_database: str,
) -> None:
    """Accounts made before domains were kept in Unicode showed their address in punycode
    (`GET /me`, the support page, the export) where every newer one shows Unicode. Each is
    rewritten, unless another account already holds that form (the same mailbox signed up
    twice then): it keeps its own, and each signs in as before."""
    migrate.upgrade(empty_database)
    with _served(empty_database) as client:
        legacy, twice, holder, odd = (
            client.register("Ana", email=f"{who}@example.test")
            for who in ("legacy", "twice", "holder", "odd")
        )
    migrate.downgrade(empty_database, revision="0025_list_page_indexes")
    stored = [
        (legacy, "ana@xn--bcher-kva.example"),
        (twice, "lee@xn--mnchen-3ya.test"),
        (holder, "lee@m\u00fcnchen.test"),
        (odd, "bo@xn--abc.example"),  # no well-formed A-label: as it is
    ]
    engine = make_engine(empty_database)
    with engine.begin() as conn:
        for who, email in stored:
            conn.execute(
                User.__table__.update().where(User.id == uuid.UUID(who.id)).values(email=email)
            )
    engine.dispose()
    migrate.upgrade(empty_database)
    with _served(empty_database) as client:
        shown = {who.id: client.get("/api/v1/me", as_=who).json()["email"] for who, _ in stored}
        assert shown == {
            legacy.id: "ana@b\u00fccher.example",
            twice.id: "lee@xn--mnchen-3ya.test",
            holder.id: "lee@m\u00fcnchen.test",
            odd.id: "bo@xn--abc.example",
        }
        for typed in ("ana@xn--bcher-kva.example", "ana@b\u00fccher.example"):
            body = {"email": typed, "password": legacy.password}
            signed_in = client.post("/api/v1/auth/login", json=body)
            assert signed_in.status_code == 200, signed_in.text
            assert signed_in.json()["user"]["id"] == legacy.id
