"""What the push outbox's schema settings cost and save, measured directly in PostgreSQL.

  statistics     on `reach_bench` as a round trip or `cpu_per_bid` run leaves it (a filled
                 outbox): ANALYZE of `push_jobs` and `push_deliveries` with PostgreSQL's default
                 statistics, with migration 0008's alone, and with 0008 + 0009's (alternated,
                 `--reps` times, median of three ANALYZEs each); then the plan of every statement
                 that reads those tables, analysed at each setting, compared. Leaves the
                 migrations' settings in place.
  device-delete  a database of its own (`reach_probe`), migrated to 0009 and filled with
                 `--jobs` finished pushes (two devices per recipient, an attempt per delivery):
                 deleting one device and the support view's "last push" of one device, before
                 and after migration 0010 indexes `push_deliveries.device_id`; then what the
                 index costs each new delivery (100,000 inserts with and without it, alternated).

Like the other scripts it measures the migrations `BENCH_SRC` names (the committed HEAD by
default). bench/RESULTS.md, "What changed" 16 and 17.

Usage: .venv/bin/python -m bench.probe_outbox_schema statistics [--reps 5]
       .venv/bin/python -m bench.probe_outbox_schema device-delete [--jobs 500000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import common

OUTBOX = ("push_jobs", "push_deliveries")
NO_STATISTICS = {
    "push_jobs": ("payload", "last_error"),
    "push_deliveries": ("message_id", "last_error"),
}
COARSE = 10  # migration 0009's target

# Every statement of the service that reads the outbox, in a form EXPLAIN takes (ids and keys
# filled in from the database).
STATEMENTS = {
    "claim's pick": "SELECT id FROM push_jobs WHERE (state = 'pending' AND available_at <= now())"
    " OR (state = 'claimed' AND claimed_until < now()) ORDER BY available_at LIMIT 32"
    " FOR UPDATE SKIP LOCKED",
    "pass: missing deliveries": "SELECT j.id, d.id FROM push_jobs j JOIN devices d"
    " ON d.user_id = j.recipient_id WHERE j.id IN ({jobs}) AND d.active",
    "pass: deliveries": "SELECT pd.id, d.push_token FROM push_deliveries pd JOIN devices d"
    " ON d.id = pd.device_id WHERE pd.job_id IN ({jobs}) ORDER BY pd.id",
    "dashboard: counts": "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER"
    " (WHERE state = 'dead') FROM push_jobs WHERE state IN ('pending', 'claimed', 'dead')",
    "dashboard: oldest due": "SELECT min(available_at) FROM push_jobs"
    " WHERE state = 'pending' AND available_at <= now()",
    "dashboard: dead": "SELECT id FROM push_jobs WHERE state = 'dead'"
    " ORDER BY finished_at DESC, id DESC LIMIT 50",
    "dashboard: a job's deliveries": "SELECT job_id, state FROM push_deliveries"
    " WHERE job_id IN ({jobs}) ORDER BY id",
    "dashboard: attempts by outcome": "SELECT pd.platform, pa.outcome, count(*)"
    " FROM push_attempts pa JOIN push_deliveries pd ON pd.id = pa.delivery_id"
    " WHERE pa.finished_at >= now() - interval '1 hour' GROUP BY 1, 2",
    "support: a device's last push": "SELECT pa.outcome FROM push_attempts pa"
    " JOIN push_deliveries pd ON pd.id = pa.delivery_id WHERE pd.device_id = '{device}'"
    " ORDER BY pa.finished_at DESC, pa.id DESC LIMIT 1",
    "custody": "SELECT id FROM push_jobs WHERE couple_id = '{couple}'"
    " AND state IN ('pending', 'claimed')",
    "cancel": "SELECT id FROM push_jobs WHERE state = 'pending'"
    " AND dedupe_key LIKE 'bid.created:1%'",
    "withdraw": "SELECT id FROM push_jobs WHERE state = 'pending' AND kind = 'repair.message'"
    " AND recipient_id = '{recipient}' AND dedupe_key LIKE 'repair.message:a%'",
    "release": "SELECT id FROM push_jobs WHERE state = 'pending' AND attempts = 0"
    " AND available_at > now() AND dedupe_key LIKE 'repair.%'",
    "prune": "SELECT id, state FROM push_jobs WHERE id > 0 ORDER BY id LIMIT 1000",
    "skip": "SELECT id FROM push_deliveries WHERE id IN ({deliveries})",
}


def _connect(database: str) -> Any:
    import psycopg

    return psycopg.connect(f"{common.PG_SERVER}/{database}", autocommit=True)


def _median_ms(run: Callable[[], object], times: int = 3) -> float:
    spent = []
    for _ in range(times):
        began = time.perf_counter()
        run()
        spent.append((time.perf_counter() - began) * 1000)
    return statistics.median(spent)


def _set_statistics(conn: Any, setting: str) -> None:
    """ "default": PostgreSQL's for every column; "0008": none for its columns; "0009": also
    the coarse target for every other column (what the migrations leave)."""
    for table in OUTBOX:
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass"
                " AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
        ]
        for column in columns:
            if setting == "default":
                target = -1
            elif column in NO_STATISTICS[table]:
                target = 0
            else:
                target = -1 if setting == "0008" else COARSE
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS {target}")


def _plans(conn: Any) -> dict[str, list[str]]:
    jobs = ",".join(
        str(r[0]) for r in conn.execute("SELECT id FROM push_jobs ORDER BY id DESC LIMIT 32")
    )
    deliveries = ",".join(
        str(r[0]) for r in conn.execute("SELECT id FROM push_deliveries ORDER BY id DESC LIMIT 32")
    )
    couple, recipient = conn.execute(
        "SELECT couple_id, recipient_id FROM push_jobs LIMIT 1"
    ).fetchone()
    device = conn.execute("SELECT device_id FROM push_deliveries LIMIT 1").fetchone()[0]
    values = {
        "jobs": jobs,
        "deliveries": deliveries,
        "couple": couple,
        "recipient": recipient,
        "device": device,
    }
    plans = {}
    for name, sql in STATEMENTS.items():
        explained = conn.execute("EXPLAIN (COSTS OFF) " + sql.format(**values)).fetchall()
        plans[name] = [row[0] for row in explained]
    return plans


def statistics_part(reps: int) -> dict[str, Any]:
    conn = _connect(common.PG_DB)
    size = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in OUTBOX}
    if size["push_jobs"] < 1000:
        raise SystemExit(
            f"{common.PG_DB} holds {size['push_jobs']} push jobs: fill it first, e.g. "
            "`python -m bench.cpu_per_bid --rate 300 --seconds 8 --reps 18`"
        )
    common.log(f"statistics: {size['push_jobs']} jobs, {size['push_deliveries']} deliveries")
    spent: dict[str, dict[str, list[float]]] = {}
    for rep in range(reps):
        for setting in ("default", "0008", "0009"):
            _set_statistics(conn, setting)
            for table in OUTBOX:
                ms = _median_ms(lambda table=table: conn.execute(f"ANALYZE {table}"))
                spent.setdefault(setting, {}).setdefault(table, []).append(ms)
            common.log(
                f"  {rep + 1}/{reps} {setting:>7}: "
                + ", ".join(f"ANALYZE {t} {spent[setting][t][-1]:.1f} ms" for t in OUTBOX)
            )
    plans = {}
    for setting in ("default", "0009"):
        _set_statistics(conn, setting)
        for table in OUTBOX:
            conn.execute(f"ANALYZE {table}")
        plans[setting] = _plans(conn)
    _set_statistics(conn, "0009")
    for table in OUTBOX:
        conn.execute(f"ANALYZE {table}")
    differ = [name for name in STATEMENTS if plans["default"][name] != plans["0009"][name]]
    common.log(
        f"  plans of {len(STATEMENTS)} statements at the default target and at {COARSE}: "
        + ("all the same" if not differ else f"different for {', '.join(differ)}")
    )
    return {
        "rows": size,
        "analyze_ms": {
            setting: {table: statistics.median(v) for table, v in tables.items()}
            for setting, tables in spent.items()
        },
        "analyze_ms_all": spent,
        "statements": len(STATEMENTS),
        "plans_differ": differ,
        "plans": plans,
    }


def _fill(conn: Any, jobs: int) -> None:
    conn.execute(
        "INSERT INTO users (id, email, password_hash, display_name, timezone,"
        " notes_on_lock_screen, created_at) SELECT gen_random_uuid(), 'u' || i || '@example.com',"
        " 'x', 'U', 'UTC', false, now() FROM generate_series(1, 5000) i"
    )
    conn.execute(
        "INSERT INTO devices (id, user_id, platform, push_token, active, created_at, updated_at)"
        " SELECT gen_random_uuid(), u.id, p, 'token-' || u.id || '-' || p, true, now(), now()"
        " FROM users u CROSS JOIN (VALUES ('ios'), ('android')) v(p)"
    )
    conn.execute(
        "INSERT INTO push_jobs (kind, dedupe_key, recipient_id, payload, urgent, state,"
        " available_at, attempts, created_at, finished_at)"
        " SELECT 'bid.created', 'bid.created:' || i, u.id, '{}'::jsonb, true, 'done', now(), 1,"
        " now(), now() FROM generate_series(1, %s) i"
        " JOIN (SELECT id, row_number() OVER () - 1 AS n FROM users) u ON u.n = i %% 5000",
        (jobs,),
    )
    conn.execute(
        "INSERT INTO push_deliveries (job_id, device_id, platform, state, attempts, sent_at,"
        " updated_at) SELECT j.id, d.id, d.platform, 'sent', 1, now(), now()"
        " FROM push_jobs j JOIN devices d ON d.user_id = j.recipient_id"
    )
    conn.execute(
        "INSERT INTO push_attempts (delivery_id, worker, outcome, started_at, finished_at)"
        " SELECT id, 'probe', 'sent', now(), now() FROM push_deliveries"
    )
    conn.execute("VACUUM ANALYZE")


def _rolled_back_ms(
    conn: Any, sql: str, params: tuple[Any, ...] = (), before: str = ""
) -> tuple[float, int]:
    conn.execute("BEGIN")
    try:
        if before:
            conn.execute(before)
        began = time.perf_counter()
        rows = conn.execute(sql, params).rowcount
        return (time.perf_counter() - began) * 1000, rows
    finally:
        conn.execute("ROLLBACK")


SUPPORT = (
    "SELECT pa.outcome FROM push_attempts pa JOIN push_deliveries pd ON pd.id = pa.delivery_id"
    " WHERE pd.device_id = %s ORDER BY pa.finished_at DESC, pa.id DESC LIMIT 1"
)


def _device_costs(conn: Any, devices: list[Any]) -> dict[str, float]:
    delete = [_rolled_back_ms(conn, "DELETE FROM devices WHERE id = %s", (d,))[0] for d in devices]
    support = [_rolled_back_ms(conn, SUPPORT, (d,))[0] for d in devices]
    return {"delete_ms": statistics.median(delete), "support_ms": statistics.median(support)}


def device_delete_part(jobs: int, reps: int) -> dict[str, Any]:
    database = "reach_probe"
    admin = _connect("postgres")
    admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {database}")
    url = f"{common.PG_SERVER}/{database}"
    common.migrate(url, revision="0009_outbox_coarse_statistics")
    conn = _connect(database)
    began = time.monotonic()
    _fill(conn, jobs)
    deliveries = conn.execute("SELECT count(*) FROM push_deliveries").fetchone()[0]
    common.log(
        f"device-delete: {jobs} jobs, {deliveries} deliveries in {time.monotonic() - began:.0f} s"
    )
    devices = [row[0] for row in conn.execute("SELECT id FROM devices ORDER BY random() LIMIT 7")]
    before = _device_costs(conn, devices)
    common.log(f"  before 0010: {before}")
    began = time.monotonic()
    common.migrate(url)
    built = time.monotonic() - began
    conn.execute("ANALYZE")
    after = _device_costs(conn, devices)
    common.log(f"  after 0010 (its indexes built in {built:.1f} s): {after}")

    # What the index costs a new delivery: the same inserts with it and without it (dropped
    # inside the transaction, which is rolled back), alternated.
    conn.execute(
        "INSERT INTO push_jobs (kind, dedupe_key, recipient_id, payload, urgent, state,"
        " available_at, attempts, created_at) SELECT 'bid.created', 'new:' || i, u.id,"
        " '{}'::jsonb, true, 'pending', now(), 0, now() FROM generate_series(1, 50000) i"
        " JOIN (SELECT id, row_number() OVER () - 1 AS n FROM users) u ON u.n = i % 5000"
    )
    conn.execute("VACUUM ANALYZE push_jobs")
    insert = (
        "INSERT INTO push_deliveries (job_id, device_id, platform, state, attempts, updated_at)"
        " SELECT j.id, d.id, d.platform, 'pending', 0, now() FROM push_jobs j"
        " JOIN devices d ON d.user_id = j.recipient_id WHERE j.state = 'pending'"
    )
    per_row: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(reps):
        for variant in ("without", "with"):
            drop = "DROP INDEX ix_push_deliveries_device_id" if variant == "without" else ""
            ms, rows = _rolled_back_ms(conn, insert, before=drop)
            per_row[variant].append(ms * 1000 / rows)
    insert_us = {variant: statistics.median(v) for variant, v in per_row.items()}
    common.log(f"  a new delivery's insert, microseconds: {insert_us} ({rows} rows, {reps} each)")
    conn.close()
    admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
    return {
        "jobs": jobs,
        "deliveries": deliveries,
        "before": before,
        "after": after,
        "index_build_s": built,
        "insert_us_per_delivery": insert_us,
        "insert_us_all": per_row,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("part", choices=("statistics", "device-delete"))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--jobs", type=int, default=500_000)
    args = p.parse_args()
    if args.part == "statistics":
        result = statistics_part(args.reps)
    else:
        result = device_delete_part(args.jobs, args.reps)
    common.write_result(f"probe_outbox_schema-{args.part}", result)


if __name__ == "__main__":
    main()
