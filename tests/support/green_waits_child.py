"""Run as `python -m tests.support.green_waits_child DATABASE_URL`, patched for gevent as
`reach serve` and `reach worker` are: prints one JSON line of what psycopg's waits did."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import psycopg  # noqa: E402
from psycopg import waiting  # noqa: E402
from sqlalchemy import text  # noqa: E402

from service import green_waits  # noqa: E402
from service.db import make_engine  # noqa: E402
from tests.support.green_ticker import Ticker  # noqa: E402


def sleepers(engine: Any, count: int, seconds: float) -> dict[str, Any]:
    """`count` statements that each sleep in PostgreSQL, one per greenlet, while another
    greenlet ticks every 10 ms: they overlap, and the hub keeps running."""

    def sleep_in_postgres() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})

    with engine.connect() as warm:  # the pool's first connections, not timed
        warm.execute(text("SELECT 1"))
    with Ticker() as ticker:
        started = time.monotonic()
        gevent.joinall([gevent.spawn(sleep_in_postgres) for _ in range(count)], raise_error=True)
        elapsed = time.monotonic() - started
    return {"elapsed": elapsed, "ticks": ticker.ticks}


def pipelined(engine: Any, rows: int) -> int:
    """An executemany, which psycopg sends as one pipeline, reading results as they come."""
    with engine.begin() as connection:
        connection.execute(text("CREATE TEMPORARY TABLE green (n int) ON COMMIT DROP"))
        insert = text("INSERT INTO green (n) VALUES (:n)")
        connection.execute(insert, [{"n": n} for n in range(rows)])
        return int(connection.execute(text("SELECT sum(n) FROM green")).scalar_one())


def readiness() -> dict[str, Any]:
    """The wait's contract on a socket pair: nothing ready after `interval`, ready to read once
    the other end writes, and `_WaitTimeout` when `timeout` runs out."""
    ours, theirs = socket.socketpair()
    seen: list[int] = []

    def reader() -> Any:
        while True:
            ready = yield waiting.Wait.R
            seen.append(int(ready))
            if ready & waiting.Ready.R:
                return ours.recv(16)

    gevent.spawn_later(0.25, theirs.send, b"ping")
    got = green_waits.wait(reader(), ours.fileno(), interval=0.1)

    def forever() -> Any:
        while True:
            yield waiting.Wait.R

    started = time.monotonic()
    try:
        green_waits.wait(forever(), ours.fileno(), interval=0.05, timeout=0.2)
        timed_out = None
    except psycopg.OperationalError as error:
        timed_out = type(error).__name__
    waited = time.monotonic() - started
    ours.close()
    theirs.close()
    return {"got": got.decode(), "seen": seen, "timed_out": timed_out, "waited": waited}


def main() -> None:
    engine = make_engine(sys.argv[1], pool_size=8)
    try:
        result = {
            "installed": waiting.wait is green_waits.wait,
            "sleepers": sleepers(engine, count=6, seconds=0.3),
            "pipelined": pipelined(engine, rows=500),
            "readiness": readiness(),
        }
    finally:
        engine.dispose()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
