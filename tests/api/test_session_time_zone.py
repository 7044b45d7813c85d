"""The service reads and writes timestamps in UTC whatever time zone the PostgreSQL server or
role gives its sessions (`timezone` in postgresql.conf follows the host's at initdb)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import make_url

from tests.support.client import ApiClient
from tests.support.repairs import start, write
from tests.support.server import LiveServer

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def in_zone(database_url: str, zone: str) -> str:
    """`database_url` whose sessions start in `zone`, as a server configured so would give."""
    url = make_url(database_url).update_query_dict({"options": f"-c timezone={zone}"})
    return url.render_as_string(hide_password=False)


def test_a_message_written_in_the_year_1_reads_back_on_a_server_west_of_utc(
    database_url: str, server_with: Callable[..., LiveServer]
) -> None:
    """Any past `written_at` is kept as sent; a server in New York gave 0001-01-01T00:00Z back
    as a date BC, which the driver refuses: every read of the conversation failed with 500."""
    client = ApiClient(server_with(DATABASE_URL=in_zone(database_url, "America/New_York")).url)
    ana, ben = client.couple()
    repair = start(client, ana)
    written = write(client, ana, repair["id"], written_at="0001-01-01T00:00:00Z")
    assert written["written_at"] == "0001-01-01T00:00:00.000000Z"
    listed = client.get(f"/api/v1/repairs/{repair['id']}/messages", as_=ben)
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["written_at"] == "0001-01-01T00:00:00.000000Z"
    exported = client.get("/api/v1/me/export", as_=ana)
    assert exported.status_code == 200, exported.text
