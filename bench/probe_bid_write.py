"""What writing one bid costs at each layer, in the client and in PostgreSQL, one process, no HTTP.

  service     `bids.sending._write` as POST /bids runs it: rows, the wire dump, the statement
              autocommitted on a pooled connection's driver (`DriverStatement.first_row_alone`),
              the session's commit and its hooks
  rows        the same with the statement left out: building the bid, event and push job
  core        the statement alone through SQLAlchemy Core, on an autocommitted Connection
  driver      the same compiled statement through psycopg alone, autocommitted, one per bid
  driver-xB   psycopg, B bids per transaction in one pipeline (`executemany`): group commit

Client CPU is this process's (`time.process_time`); PostgreSQL's is every backend of
`reach_bench` (`/proc`, through psutil). The variants alternate, `--reps` times each, and the
table shows the median. This bounds what bypassing SQLAlchemy or grouping commits could save on
the bid path (bench/RESULTS.md, "Why 1a still fails"). Like the other scripts it measures the
service `BENCH_SRC` names (the committed HEAD by default; `worktree` for the work tree).

Usage: .venv/bin/python -m bench.probe_bid_write [--bids 1500 --reps 3 --batches 4 8 16]
                                                [--variants service]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench import common

# A variant writes n bids; it returns the CPU seconds of its timed part, or None when all
# of it is timed.
Variant = Callable[[int], float | None]


class NewBids:
    """The service's app (its context pushed) on `url`, one paired member of it, and new bids
    for that member as `bids.sending._write` builds them: through the service, or as the
    parameters of the one statement (`bid_writes`) for psycopg alone."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import select

        from bench.profile_hotpaths import _app
        from service.extensions import db
        from service.models import AuthSession, User
        from service.services import bid_writes, members

        self.app = _app(url)
        self.app.app_context().push()
        user_id, session_id = db.session.execute(
            select(User.id, AuthSession.id)
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(User.couple_id.is_not(None))
            .limit(1)
        ).one()
        self.member = members.live_member(db.session, user_id, session_id)
        db.session.close()
        self.compiled = bid_writes._ONE_STATEMENT[True].compile(dialect=db.engine.dialect)
        self.sql: str = self.compiled.string

    @staticmethod
    def request() -> Any:
        from service.services.bids import sending

        return sending._BidRequest(uuid.uuid4(), "connect", "hello", 3600)

    def service(self, n: int) -> None:
        """`n` bids written as POST /bids writes them."""
        from service.extensions import db
        from service.services.bids import sending

        for _ in range(n):
            session = db.new_session()
            try:
                written = sending._write(session, self.member, self.request(), proof=self.member)
                assert written is not None
            finally:
                session.close()

    def captured(self) -> dict[str, Any]:
        """The rows of one new bid, as `_write` builds them (nothing is written)."""
        from service.extensions import db
        from service.services import bid_writes
        from service.services.bids import sending

        got: dict[str, Any] = {}
        real = bid_writes._write_in_one_statement

        def capture(*args: Any) -> None:  # (session, bind, bid, event, job, proof params)
            bid, event, job, proof = args[-4:]
            got.update(bid=bid, event=event, job=job, proof=proof)

        bid_writes._write_in_one_statement = capture  # type: ignore[assignment]
        session = db.new_session()
        try:
            sending._write(session, self.member, self.request(), proof=self.member)
        finally:
            session.close()
            bid_writes._write_in_one_statement = real
        return got

    def driver_params(self, w: dict[str, Any] | None = None) -> dict[str, Any]:
        """The statement's parameters for psycopg (`self.sql`), for `w` or a new bid."""
        from psycopg.types.json import Jsonb

        from service.services import bid_writes

        w = w or self.captured()
        params = bid_writes.statement_params(w["bid"], w["event"], w["job"], w["proof"])
        out = dict(self.compiled.construct_params(params))
        return {k: Jsonb(v) if isinstance(v, dict) else v for k, v in out.items()}


def _variants(batches: list[int]) -> dict[str, Variant]:
    import psycopg

    from service.extensions import db
    from service.services import bid_writes

    new = NewBids(common.PG_URL)
    compiled, captured, driver_params = new.compiled, new.captured, new.driver_params
    service = new.service

    def rows(n: int) -> None:
        for _ in range(n):
            captured()

    def core(n: int) -> float:
        writes = [captured() for _ in range(n)]
        statement = bid_writes.compiled_statement(db.engine.dialect, guarded=True)
        with db.engine.connect() as connection:
            auto = connection.execution_options(isolation_level="AUTOCOMMIT")
            started = time.process_time()
            for w in writes:
                params = bid_writes.statement_params(w["bid"], w["event"], w["job"], w["proof"])
                statement.execute(auto, params).scalar()
            return time.process_time() - started

    raw = psycopg.connect(common.PG_URL.replace("postgresql+psycopg", "postgresql"))
    raw.autocommit = True

    def driver(n: int) -> float:
        params = [driver_params(captured()) for _ in range(n)]
        started = time.process_time()
        for p in params:
            raw.execute(compiled.string, p).fetchone()
        return time.process_time() - started

    def grouped(size: int) -> Variant:
        def run(n: int) -> float:
            params = [driver_params(captured()) for _ in range(n)]
            started = time.process_time()
            for i in range(0, n, size):
                with raw.transaction(), raw.cursor() as cursor:
                    cursor.executemany(compiled.string, params[i : i + size], returning=True)
                    while cursor.fetchone() is not None and cursor.nextset():
                        pass
            return time.process_time() - started

        return run

    variants: dict[str, Variant] = {
        "service": service,
        "rows": rows,
        "core": core,
        "driver": driver,
    }
    variants.update({f"driver-x{size}": grouped(size) for size in batches})
    return variants


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bids", type=int, default=1500)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--variants", nargs="+", help="only these (e.g. service, to compare sources)")
    args = p.parse_args()

    common.fresh_postgres()
    common.seed_couples(common.PG_URL, 20)
    variants = _variants(args.batches)
    if args.variants:
        variants = {name: variants[name] for name in args.variants}
    for run in variants.values():  # warm up: compiled caches, prepared statements
        run(50)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for rep in range(1, args.reps + 1):
        for name, run in variants.items():
            meter = common.CpuMeter({"client": [os.getpid()]})
            meter.start()
            wall0 = time.monotonic()
            timed = run(args.bids)
            wall = time.monotonic() - wall0
            used = meter.stop()
            # Variants that prepare their rows first time only the statements.
            client = used["client"] * wall if timed is None else timed
            samples[name].append(
                (1000 * client / args.bids, 1000 * used["postgres"] * wall / args.bids)
            )
            common.log(
                f"  {rep}/{args.reps} {name:12s} client {samples[name][-1][0]:.3f} ms, "
                f"postgres {samples[name][-1][1]:.3f} ms per bid"
            )
    result = {
        name: {
            "client_ms": round(statistics.median(c for c, _ in s), 3),
            "postgres_ms": round(statistics.median(p for _, p in s), 3),
            "samples": s,
        }
        for name, s in samples.items()
    }
    common.write_result("probe_bid_write", {"args": vars(args), "variants": result})
    print(
        common.table(
            ["variant", "client ms per bid", "PostgreSQL ms per bid"],
            [[name, r["client_ms"], r["postgres_ms"]] for name, r in result.items()],
        )
    )


if __name__ == "__main__":
    main()
