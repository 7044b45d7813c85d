"""The bare relay with one durable write per bid: the floor of any bid that is stored first.

bench/baseline_relay.py, unchanged, except that each new bid is inserted into PostgreSQL
before it is emitted and answered: one row, one autocommitted `INSERT ... ON CONFLICT
(sender, client_id) DO NOTHING` (a retried bid writes nothing), through psycopg alone (no
ORM, no SQLAlchemy; psycopg prepares the statement on a connection's fifth use), on at most
`RELAY_POOL_SIZE` connections (30, as Reach's `DATABASE_POOL_SIZE`). Everything else Reach
writes for a bid (its event and the couple's cursor, the push job) and everything it checks
(the token, the couple, the body) is left out.

So its rate against the bare relay's, in the same run, is how much of the relay's rate a
service can keep on this machine once it commits each bid to PostgreSQL before answering.

Serve: RELAY_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/reach_bench_relay \\
       .venv/bin/python -m gunicorn -c python:service.gunicorn_config --bind 127.0.0.1:7104 \\
          --workers 1 'bench.relay_pg:create_app()'
(the table first: `psql ... -c "$(python -c 'import bench.relay_pg as r; print(r.SCHEMA)')"`;
`bench.common.start_relay_pg` does both).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from flask import Flask

from bench import baseline_relay

SCHEMA = """
CREATE TABLE relay_bids (
    id uuid PRIMARY KEY,
    sender text NOT NULL,
    recipient text NOT NULL,
    client_id text NOT NULL,
    kind text NOT NULL,
    note text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    UNIQUE (sender, client_id)
)
"""

INSERT = (
    "INSERT INTO relay_bids"
    " (id, sender, recipient, client_id, kind, note, created_at, expires_at)"
    " VALUES (%(id)s::uuid, %(sender_id)s, %(recipient_id)s, %(client_id)s, %(kind)s, %(note)s,"
    " %(created_at)s::timestamptz, %(expires_at)s::timestamptz)"
    " ON CONFLICT (sender, client_id) DO NOTHING"
)


class Connections:
    """At most `size` autocommitted connections, opened when first needed; the one returned
    last is handed out first. gunicorn's gevent worker patches `threading`, so a request that
    finds every connection busy waits in its greenlet."""

    def __init__(self, url: str, size: int) -> None:
        self._url = url
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[psycopg.Connection[Any]] = []

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._slots:
            conn = self._idle.pop() if self._idle else psycopg.connect(self._url, autocommit=True)
            try:
                yield conn
            except BaseException:
                conn.close()  # in an unknown state: never handed out again
                raise
            self._idle.append(conn)


def create_app() -> Flask:
    pool = Connections(
        os.environ["RELAY_DATABASE_URL"], int(os.environ.get("RELAY_POOL_SIZE", "30"))
    )

    def store(bid: dict[str, Any]) -> None:
        with pool.connection() as conn:
            conn.execute(INSERT, bid)

    return baseline_relay.create_app(store)
