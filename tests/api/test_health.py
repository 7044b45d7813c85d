"""The probes: /healthz (the process is up) and /readyz (its database answers, migrated)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import requests
from alembic.script import ScriptDirectory

from service import create_app, migrate
from tests.support.client import ApiClient
from tests.support.server import LiveServer
from tests.support.settings import make_settings


def test_a_process_with_its_database_is_alive_and_ready(client: ApiClient) -> None:
    alive = requests.get(f"{client.base_url}/healthz", timeout=5)
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    ready = requests.get(f"{client.base_url}/readyz", timeout=5)
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ready", "checks": {"database": "ok"}},
    )


def test_a_database_never_migrated_is_not_ready(tmp_path: Path) -> None:
    """Every API request would fail on it: the balancer should not send any."""
    app = create_app(make_settings(f"sqlite:///{tmp_path}/never-migrated.sqlite3"))
    server = LiveServer(app).start()
    try:
        alive = requests.get(f"{server.url}/healthz", timeout=5)
        ready = requests.get(f"{server.url}/readyz", timeout=5)
    finally:
        server.stop()
    assert alive.status_code == 200
    assert (ready.status_code, ready.json()) == (
        503,
        {"status": "unavailable", "checks": {"database": "not migrated: run reach db upgrade"}},
    )


def served_readiness(url: str) -> requests.Response:
    server = LiveServer(create_app(make_settings(url))).start()
    try:
        return requests.get(f"{server.url}/readyz", timeout=5)
    finally:
        server.stop()


def test_a_database_behind_this_releases_migrations_is_not_ready(tmp_path: Path) -> None:
    """A release started before its migration ran (the Job still running, or failed) would
    answer 500 to the requests that use what the migration adds: while the database is behind,
    the process is not ready, so a rollout waits and the old release keeps serving."""
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    (newest,) = scripts.get_heads()
    before = scripts.get_revision(newest).down_revision
    url = f"sqlite:///{tmp_path}/behind.sqlite3"
    migrate.upgrade(url, revision=before)
    ready = served_readiness(url)
    assert (ready.status_code, ready.json()) == (
        503,
        {
            "status": "unavailable",
            "checks": {
                "database": f"not migrated: at {before}, this release needs {newest}: "
                "run reach db upgrade"
            },
        },
    )
    migrate.upgrade(url)
    assert served_readiness(url).status_code == 200


def test_a_database_a_newer_release_migrated_is_ready(tmp_path: Path) -> None:
    """Rolling back a release needs no migration (docs/operations.md, Migrate): the older
    release serves on the newer schema."""
    url = f"sqlite:///{tmp_path}/newer.sqlite3"
    migrate.upgrade(url)
    with sqlite3.connect(f"{tmp_path}/newer.sqlite3") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_of_a_newer_release'")
    ready = served_readiness(url)
    assert (ready.status_code, ready.json()["checks"]) == (200, {"database": "ok"})
