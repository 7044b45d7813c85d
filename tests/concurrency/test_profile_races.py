"""Real concurrency on PostgreSQL: two phones of one account change its profile at once.

Each change locks the account against the other (FOR NO KEY UPDATE) and reads it again as it
stands, so the second sees the first's change; each numbers the profile it leaves
(`profile_version`), which `me.updated` carries, so a phone given their events in either order
keeps the profile `GET /me` shows.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import requests
from flask import Flask

from tests.support.client import ApiClient
from tests.support.locks import first_statement_held
from tests.support.phones import Phone
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

ME = "me.updated"


def the_first_change(statement: str) -> bool:
    """The first change, once it has written the account row."""
    return statement.startswith("UPDATE users SET notes_on_lock_screen")


def test_two_changes_at_once_leave_each_phone_the_profile_as_it_stands(
    client: ApiClient, app: Flask, phone: Callable[[str | None], Phone]
) -> None:
    """Ben turns lock-screen notes on from his phone as he renames himself on his tablet; the
    first holds the account row until the second waits for it. The rename's answer and event
    include the notes, and the profile with the highest version is the one `GET /me` shows."""
    ben = client.register("Ben")
    ben_phone, ben_tablet = phone(ben.access_token), phone(client.fresh(ben).access_token)
    tablet = client.fresh(ben)

    def change(body: dict[str, Any]) -> requests.Response:
        return ApiClient(client.base_url).patch("/api/v1/me", as_=tablet, json=body)

    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        first_statement_held(app, the_first_change) as held,
    ):
        first: Future[requests.Response] = pool.submit(change, {"notes_on_lock_screen": True})
        assert held.wait(10), "the first change never wrote the account"
        second = pool.submit(change, {"display_name": "Benny"}).result(timeout=20)
        assert first.result(timeout=20).status_code == 200
    assert second.status_code == 200, second.text
    shown = client.get("/api/v1/me", as_=tablet).json()
    assert (shown["display_name"], shown["notes_on_lock_screen"]) == ("Benny", True)
    assert second.json() == shown
    assert shown["profile_version"] == 2
    for device in (ben_phone, ben_tablet):
        wait_until(lambda device=device: len(device.named(ME)) == 2, what="both events")  # type: ignore[misc]
        latest = max(device.named(ME), key=lambda profile: profile["profile_version"])
        assert latest == shown
        assert sorted(p["profile_version"] for p in device.named(ME)) == [1, 2]
