"""Bounded waits on PostgreSQL: a server that stops answering costs a request seconds, not
its whole life.

Without bounds, a PostgreSQL that hung (its disk stalled, the process frozen, a network path
that drops packets without a reset) held every request that reached it for as long as it
hung: a bid waited, /readyz went unanswered, and the pool's connections were all held.
Three bounds, from the settings:

- **connecting**: libpq's `connect_timeout` (`DATABASE_CONNECT_TIMEOUT`), which psycopg
  enforces while it waits for the server's first answers;
- **a statement**: PostgreSQL's own `statement_timeout` (`DATABASE_STATEMENT_TIMEOUT_MS`, set
  when each connection opens) cancels a statement that runs or waits for a lock too long;
- **the answer**: a server that answers nothing cannot cancel anything, so the client stops
  waiting `ANSWER_GRACE_SECONDS` after the statement timeout, closes the connection (the pool
  opens another when next asked) and raises `OperationalError`.

Each ends in a 503 with Retry-After (service/errors.py), and a phone's retry with the same
`client_id` finds what was stored, or stores it.
"""

from __future__ import annotations

from collections.abc import Generator
from time import monotonic
from typing import Any

import psycopg
from psycopg import errors
from sqlalchemy import Engine, event

# How long after the server's own statement timeout the client gives up on an answer: the
# server's cancellation, when the server is alive, arrives well within it.
ANSWER_GRACE_SECONDS = 2.0


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for a statement's answer ends in
    `answer_seconds` at most (None: no bound).

    psycopg runs every operation of a connection (a statement, a commit, a pipeline's sync)
    as a generator consumed by `wait`, which wakes it every 0.1 s when nothing is ready: a wake
    past the deadline closes the connection instead. Waits that carry their own timeout (a
    cancellation, notifications) keep it.
    """

    answer_seconds: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if self.answer_seconds is not None and timeout is None:
            gen = self._answered_by(gen, monotonic() + self.answer_seconds)
        return super().wait(gen, interval=interval, timeout=timeout)

    def _answered_by(self, gen: Any, deadline: float) -> Generator[Any, Any, Any]:
        try:
            wanted = next(gen)
            while True:
                ready = yield wanted
                if not ready and monotonic() >= deadline:
                    gen.close()
                    # The server's state is unknown (the statement may have committed): this
                    # connection cannot be used again, and the pool sees it closed.
                    self.pgconn.finish()
                    raise errors.OperationalError(
                        f"PostgreSQL did not answer within {self.answer_seconds:g} s; "
                        "the connection was closed"
                    )
                wanted = gen.send(ready)
        except StopIteration as done:
            return done.value


def bound(
    engine: Engine,
    *,
    connect_seconds: int,
    statement_ms: int,
    grace_seconds: float = ANSWER_GRACE_SECONDS,
) -> None:
    """Open `engine`'s PostgreSQL connections as `BoundedConnection`s, with a connect timeout
    and a statement timeout (the URL's own `connect_timeout` or `statement_timeout` wins)."""
    answer_seconds = statement_ms / 1000 + grace_seconds

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        cparams.setdefault("connect_timeout", connect_seconds)
        options = cparams.get("options", "")
        if "statement_timeout" not in options:
            cparams["options"] = f"{options} -c statement_timeout={statement_ms}".strip()
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.answer_seconds = answer_seconds
        return connection
