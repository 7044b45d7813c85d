"""Where an unloaded POST /bids spends its wall time: CPU in the process vs waiting on
PostgreSQL, with and without gevent's monkey-patching (as under gunicorn's gevent worker), and
with each of psycopg's wait functions (PSYCOPG_WAIT_FUNC).

One process per variant (patching is process-wide), sequential requests through the Flask test
client (no HTTP, no sockets connected), the statements timed with before/after_cursor_execute.

Usage: .venv/bin/python -m bench.probe_latency [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any


def child(n: int) -> None:
    if os.environ.get("PROBE_GEVENT") == "1":
        from gevent import monkey

        monkey.patch_all()
    import uuid

    from sqlalchemy import event

    from bench import common
    from bench.profile_hotpaths import _app
    from service.extensions import db

    couples = common.seed_couples(common.PG_URL, 20)
    app = _app(common.PG_URL)
    with app.app_context():
        engine = db.engine
    db_wall = [0.0]
    count = [0]
    started: list[float] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _before(*_: Any) -> None:
        started.append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(*_: Any) -> None:
        db_wall[0] += time.perf_counter() - started.pop()
        count[0] += 1

    client = app.test_client()

    def run(k: int) -> tuple[float, float, float, float]:
        db_wall[0], count[0] = 0.0, 0
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(k):
            c = couples[i % len(couples)]
            r = client.post(
                "/api/v1/bids",
                json={"client_id": str(uuid.uuid4()), "kind": "connect", "note": "x"},
                headers={"Authorization": f"Bearer {c.a_token}"},
            )
            assert r.status_code == 201, r.status_code
        wall = (time.perf_counter() - w0) / k * 1000
        cpu = (time.process_time() - c0) / k * 1000
        return wall, cpu, db_wall[0] / k * 1000, count[0] / k

    run(30)
    rows = [run(n) for _ in range(3)]
    rows.sort()
    wall, cpu, dbw, stmts = rows[1]  # the median of three by wall time
    from psycopg import waiting

    print(
        json.dumps(
            {
                "gevent": os.environ.get("PROBE_GEVENT") == "1",
                "wait_func": getattr(waiting.wait, "__name__", str(waiting.wait)),
                "wall_ms": round(wall, 2),
                "cpu_ms": round(cpu, 2),
                "statement_wall_ms": round(dbw, 2),
                "statements": stmts,
            }
        ),
        flush=True,
    )
    app.extensions["reach.db"].engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.requests)
        return
    from bench import common

    common.fresh_postgres()
    variants = [
        ("plain", {"PROBE_GEVENT": "0"}),
        ("gevent (psycopg default)", {"PROBE_GEVENT": "1"}),
        ("gevent + wait_select", {"PROBE_GEVENT": "1", "PSYCOPG_WAIT_FUNC": "wait_select"}),
    ]
    results = []
    for label, extra in variants:
        env = common.base_env(**extra)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.probe_latency",
                "--child",
                "--requests",
                str(args.requests),
            ],
            env=env,
            cwd=common.ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        line = next((x for x in out.stdout.splitlines() if x.startswith("{")), None)
        if line is None:
            common.log(f"  {label}: failed: {out.stderr[-800:]}")
            continue
        row = {"variant": label, **json.loads(line)}
        results.append(row)
        common.log(
            f"  {label:28s} wall {row['wall_ms']:6.2f} ms  cpu {row['cpu_ms']:5.2f} ms  "
            f"in statements {row['statement_wall_ms']:5.2f} ms ({row['statements']:.0f} statements)"
            f"  [{row['wait_func']}]"
        )
    common.write_result("probe_latency", {"args": vars(args), "variants": results})


if __name__ == "__main__":
    main()
