"""The PostgreSQL connection pool every process uses (`service.db.make_engine`)."""

from __future__ import annotations

import pytest

from service.db import make_engine


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
