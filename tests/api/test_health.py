"""The probes: /healthz (the process is up) and /readyz (its database answers, migrated)."""

from __future__ import annotations

from pathlib import Path

import requests

from service import create_app
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
