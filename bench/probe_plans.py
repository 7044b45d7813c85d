"""Inside statements of the bid's path and the worker's, with PostgreSQL's `EXPLAIN ANALYZE`.

`bid`: the bid's one statement (`service/services/bid_writes.py`: the bid, the couple's cursor,
the event and the push job, guarded by the sender's proof), as the service builds it, for
`--bids` new bids on a table the service has already written `--warm` bids to; each in a
transaction rolled back, so every one is new. Reports the medians (the first 10 left out: caches,
statistics) of its execution, its planning, and each foreign-key check's trigger time.

`claim`: how the worker's claim of due push jobs (`service/worker/dispatch/statements.py`, its
`SELECT ... FOR UPDATE SKIP LOCKED` of due or lapsed jobs) costs as the outbox's dead versions pile
up between vacuums: jobs go pending -> claimed -> done without a vacuum, up to each of `--dead`
jobs, then 20 due jobs are claimed (in a transaction rolled back) `--reps` times by the service's
query, then `--reps` times by the claim as one condition for due and lapsed jobs (`ONE_CONDITION`,
the service's form before "What changed" 36), whose visits the first form's can only have made
cheaper; medians of the last two thirds. Then once more after a VACUUM.

`backlog`: the same two forms with a queue of `--backlog` jobs all due at once (a worker that was
stopped, or FCM away, while bids went on), vacuumed and analyzed: no dead versions, only how
much of the live queue each form reads to take 32.

`expiry`: the worker's look for overdue bids to expire (`bids.overdue`, 200 at a time), the
service's form against one `status IN (...)` condition (`OVERDUE_ONE_CONDITION`, the form before
"What changed" 36), with `--backlog` open bids overdue at once (a third each sent, delivered and
seen; the workers away while their time ran out), vacuumed and analyzed.

Each part uses a database of its own (`reach_probe_plans`, dropped and recreated), EXPLAIN's own
instrumentation included in every figure.

Usage: .venv/bin/python -m bench.probe_plans [--parts bid claim backlog expiry] [--bids 40]
           [--warm 3000] [--dead 1000 4000 15000 30000] [--backlog 1000 10000 100000] [--reps 15]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

# Read by bench.common when it is imported: a database of our own, and no stand-in vacuum (the
# claim part counts the dead versions a vacuum would remove).
os.environ.setdefault("BENCH_DB", "reach_probe_plans")
os.environ.setdefault("BENCH_VACUUM_SECONDS", "0")

from bench import common
from bench.common import log

_TRIGGER = re.compile(r"Trigger for constraint (\S+) on \S+: time=([0-9.]+)")
_TIME = re.compile(r"(Planning|Execution) Time: ([0-9.]+) ms")
_WAL = re.compile(r"\s*WAL: records=(\d+) bytes=(\d+)")
# The sender's proof, the bid's INSERT's InitPlan: its first node's actual time.
_PROOF = re.compile(r"\s*InitPlan 1 .*\n\s*->.*actual time=[0-9.]+\.\.([0-9.]+) ")

# The claim as one condition for due and lapsed jobs, as the service had it before "What changed"
# 36 (bench/RESULTS.md): the service's claim is compared with it.
ONE_CONDITION = """SELECT id FROM push_jobs
WHERE (state = 'pending' AND available_at <= %(now)s)
   OR (state = 'claimed' AND claimed_until < %(now)s)
ORDER BY available_at LIMIT 32 FOR UPDATE SKIP LOCKED"""


# The look for overdue bids as one condition, as the service had it before "What changed" 36.
OVERDUE_ONE_CONDITION = """SELECT id, couple_id FROM bids
WHERE status IN ('sent', 'delivered', 'seen') AND expires_at <= %(now)s
ORDER BY expires_at LIMIT 200"""


def explain(conn: Any, sql: str, params: dict[str, Any]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS, WAL) of one statement, in a transaction rolled back."""
    with conn.transaction(force_rollback=True):
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, WAL) " + sql, params).fetchall()
    return [str(r[0]) for r in rows]


def raw_connection(url: str) -> Any:
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True)


def bid_part(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from bench.probe_bid_write import NewBids

    new = NewBids(url)
    log(f"  the service writes {args.warm} bids first")
    new.service(args.warm)
    conn = raw_connection(url)
    got: dict[str, list[float]] = defaultdict(list)
    for n in range(args.bids + 10):
        lines = explain(conn, new.sql, new.driver_params())
        if n < 10:
            continue
        checks = 0.0
        if proof := _PROOF.search("\n".join(lines)):
            got["the sender's proof (InitPlan)"].append(float(proof[1]))
        if wal := next(filter(None, map(_WAL.match, lines)), None):  # the whole statement's
            got["WAL records"].append(float(wal[1]))
            got["WAL kB"].append(float(wal[2]) / 1000)
        for line in lines:
            if found := _TRIGGER.match(line):
                got[f"foreign-key check {found[1]}"].append(float(found[2]))
                checks += float(found[2])
            elif found := _TIME.match(line):
                got[found[1].lower()].append(float(found[2]))
        got["all foreign-key checks"].append(checks)
    result = {k: round(statistics.median(v), 3) for k, v in got.items()}
    print(f"\nThe bid's statement, {args.bids} new bids (ms unless named, medians):")
    rows = sorted(result.items(), key=lambda kv: -kv[1])
    print(common.table(["part", "value"], [[k, f"{v:.3f}"] for k, v in rows]))
    return result


class ProbeDatabase:
    """A fresh database (`url`, two couples) whose outbox gets jobs straight in SQL, and where
    statements are timed; the worker's claim in the service's form and in `ONE_CONDITION`."""

    def __init__(self, url: str, reps: int) -> None:
        from sqlalchemy.dialects.postgresql import psycopg

        from service.worker.dispatch.statements import _statements

        common.seed_couples(url, 2)
        dialect = psycopg.dialect()
        self.pick = _statements(dialect, 32).pick.compile(dialect=dialect)
        self.conn = raw_connection(url)
        self.recipient = self.conn.execute("select id from users limit 1").fetchone()[0]
        self.reps = reps

    def add_jobs(self, count: int, state: str = "pending", spread: bool = False) -> None:
        """`count` jobs in `state`, due a second ago (`spread`: a millisecond apart from an hour
        ago, so that due order is an order)."""
        due = (
            "now() - interval '1 hour' + i * interval '1 ms'"
            if spread
            else "now() - interval '1 second'"
        )
        self.conn.execute(
            "insert into push_jobs (kind, dedupe_key, recipient_id, payload, urgent, state, "
            "available_at, attempts, created_at) select 'bid.created', 'probe:' || "
            f"gen_random_uuid(), %s, '{{}}'::jsonb, true, %s, {due}, 0, now() "
            "from generate_series(1, %s) as i",
            (self.recipient, state, count),
        )

    def timed(self, sql: str, params: dict[str, Any]) -> float:
        """`sql`'s execution time in ms (EXPLAIN ANALYZE), the median of the last two thirds."""
        times = []
        for _ in range(self.reps):
            lines = explain(self.conn, sql, params)
            found = (_TIME.match(line) for line in lines)
            times.append(next(float(m[2]) for m in found if m and m[1] == "Execution"))
        return statistics.median(times[self.reps // 3 :])

    def claims(self) -> dict[str, float]:
        """The service's claim and `ONE_CONDITION`, now, in ms."""
        params = {"now": datetime.now(UTC)}
        service_params = dict(self.pick.construct_params(params))
        return {
            "service_ms": round(self.timed(self.pick.string, service_params), 3),
            "one_condition_ms": round(self.timed(ONE_CONDITION, params), 3),
        }


def claim_part(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    probe = ProbeDatabase(url, args.reps)
    conn = probe.conn

    def churn(count: int) -> None:
        """`count` jobs through pending -> claimed -> done, each a transaction of its own."""
        probe.add_jobs(count)
        conn.execute(
            "update push_jobs set state = 'claimed', claimed_until = now() + interval '60 s' "
            "where state = 'pending'"
        )
        conn.execute(
            "update push_jobs set state = 'done', claimed_until = null where state = 'claimed'"
        )

    rows = []
    done = 0
    for dead in [*args.dead, None]:
        if dead is None:
            conn.execute("vacuum push_jobs")
        else:
            churn(dead - done)
            done = dead
        probe.add_jobs(20)
        row = {"dead_jobs": "after VACUUM" if dead is None else dead, **probe.claims()}
        rows.append(row)
        log(f"  {row}")
        conn.execute("update push_jobs set state = 'done' where state = 'pending'")
    print("\nThe worker's claim of 20 due jobs behind dead versions (ms, medians):")
    print(forms_table("jobs gone through since the last vacuum", "dead_jobs", CLAIM, rows))
    return rows


def backlog_part(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    probe = ProbeDatabase(url, args.reps)
    rows = []
    queued = 0
    for size in args.backlog:
        probe.add_jobs(size - queued, spread=True)
        queued = size
        probe.conn.execute("vacuum analyze push_jobs")
        row = {"queued": size, **probe.claims()}
        rows.append(row)
        log(f"  {row}")
    print("\nThe worker's claim of 32 jobs from a queue of due jobs (ms, medians):")
    print(forms_table("jobs due", "queued", CLAIM, rows))
    return rows


def expiry_part(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from sqlalchemy.dialects.postgresql import psycopg

    from service.services import bids

    probe = ProbeDatabase(url, args.reps)
    conn = probe.conn
    couple, sender, recipient = conn.execute(
        "select c.id, c.partner_a_id, c.partner_b_id from couples c limit 1"
    ).fetchone()
    now = datetime.now(UTC)
    look = bids.overdue(now, 200).compile(dialect=psycopg.dialect())
    rows = []
    added = 0
    for size in args.backlog:
        conn.execute(
            "insert into bids (id, couple_id, sender_id, recipient_id, client_id, kind, status, "
            "created_at, reachable_at, expires_at) select gen_random_uuid(), %s, %s, %s, "
            "gen_random_uuid(), 'connect', (array['sent', 'delivered', 'seen'])[1 + i %% 3], "
            "%s - interval '2 days', %s - interval '2 days', %s - interval '1 day' + i * "
            "interval '1 ms' from generate_series(%s::int, %s::int) as i",
            (couple, sender, recipient, now, now, now, added + 1, size),
        )
        added = size
        conn.execute("vacuum analyze bids")
        row = {
            "overdue": size,
            "service_ms": round(probe.timed(look.string, dict(look.construct_params())), 3),
            "one_condition_ms": round(probe.timed(OVERDUE_ONE_CONDITION, {"now": now}), 3),
        }
        rows.append(row)
        log(f"  {row}")
    print("\nThe worker's look for 200 overdue bids to expire (ms, medians):")
    print(forms_table("open bids overdue", "overdue", "the service's look", rows))
    return rows


CLAIM = "the service's claim"


def forms_table(heading: str, key: str, service: str, rows: list[dict[str, Any]]) -> str:
    """Each row's `key`, then the service's form and the one-condition form, in ms."""
    return common.table(
        [heading, service, "one condition"],
        [[r[key], f"{r['service_ms']:.3f}", f"{r['one_condition_ms']:.3f}"] for r in rows],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parts = ["bid", "claim", "backlog", "expiry"]
    p.add_argument("--parts", nargs="+", default=parts, choices=parts)
    p.add_argument("--bids", type=int, default=40)
    p.add_argument("--warm", type=int, default=3000)
    p.add_argument("--dead", type=int, nargs="+", default=[1000, 4000, 15000, 30000])
    p.add_argument("--backlog", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--reps", type=int, default=15)
    args = p.parse_args()
    result: dict[str, Any] = {"args": vars(args)}
    if "bid" in args.parts:
        log("== the bid's statement")
        url = common.fresh_postgres()
        common.seed_couples(url, 240)
        result["bid"] = bid_part(url, args)
    if "claim" in args.parts:
        log("== the worker's claim")
        url = common.fresh_postgres()
        result["claim"] = claim_part(url, args)
    if "backlog" in args.parts:
        log("== the worker's claim from a queue of due jobs")
        url = common.fresh_postgres()
        result["backlog"] = backlog_part(url, args)
    if "expiry" in args.parts:
        log("== the worker's look for overdue bids")
        url = common.fresh_postgres()
        result["expiry"] = expiry_part(url, args)
    common.write_result("probe_plans", result)


if __name__ == "__main__":
    main()
