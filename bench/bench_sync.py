"""Target 4: a phone that missed 10,000 events catches up through GET /api/v1/sync
(limit=1000: 10 pages), against Reach on PostgreSQL.

Seeding: one real bid through POST /api/v1/bids gives the real `bid.created` event shape; the
other events are inserted with that shape (fresh ids) in one statement, and the couple's
counter row is moved to the last cursor, so the stream is exactly what 10,000 bids leave.

Measured per repetition: the full catch-up with one keep-alive connection (requests.Session,
like a phone's HTTP client), page by page, checking that cursors are 1..N without gaps.
Baseline in the same run: the same 10 pages read straight from PostgreSQL with psycopg and
encoded with json.dumps (the floor: no HTTP, no ORM, no schema).

Usage: .venv/bin/python -m bench.bench_sync [--events 10000] [--reps 7]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import requests

from bench import common
from bench.common import log, median, spread

PORT = 7131


def seed(url: str, server: common.Server, couple: common.Couple, events: int) -> None:
    r = requests.post(
        f"{server.url}/api/v1/bids",
        json={"client_id": str(uuid.uuid4()), "kind": "comfort", "note": "seed " + "x" * 120},
        headers={"Authorization": f"Bearer {couple.a_token}"},
        timeout=10,
    )
    r.raise_for_status()
    import psycopg

    with psycopg.connect(common.PG_URL.replace("postgresql://", "postgresql://", 1)) as conn:
        row = conn.execute(
            "select couple_id, type, data from couple_events order by cursor limit 1"
        ).fetchone()
        couple_id, type_, data = row
        conn.execute(
            """
            insert into couple_events (couple_id, cursor, type, at, data)
            select %s, g, %s, now(),
                   jsonb_set(jsonb_set(%s::jsonb, '{id}', to_jsonb(gen_random_uuid()::text)),
                             '{client_id}', to_jsonb(gen_random_uuid()::text))
            from generate_series(2, %s) g
            """,
            (couple_id, type_, json.dumps(data), events),
        )
        conn.execute("update couples set last_cursor = %s where id = %s", (events, couple_id))
        conn.execute("analyze couple_events")


def catch_up(server: common.Server, token: str, limit: int) -> dict[str, Any]:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    since, cursors, pages, nbytes = 0, 0, [], 0
    t0 = time.perf_counter()
    for _ in range(100):  # bounded
        t = time.perf_counter()
        r = session.get(
            f"{server.url}/api/v1/sync",
            params={"since": since, "limit": limit},
            headers=headers,
            timeout=30,
        )
        r.raise_for_status()
        body = r.json()
        pages.append((time.perf_counter() - t) * 1000)
        nbytes += len(r.content)
        for e in body["events"]:
            cursors += 1
            if e["cursor"] != cursors:
                raise AssertionError(f"gap: expected cursor {cursors}, got {e['cursor']}")
        since = body["next"]
        if not body["has_more"]:
            break
    total = time.perf_counter() - t0
    session.close()
    return {
        "total_s": total,
        "events": cursors,
        "pages": len(pages),
        "page_ms": pages,
        "bytes": nbytes,
    }


def floor(couple_id: Any, limit: int) -> dict[str, Any]:
    import psycopg

    t0 = time.perf_counter()
    n, since = 0, 0
    with psycopg.connect(common.PG_URL) as conn:
        while True:
            rows = conn.execute(
                "select cursor, type, at, data from couple_events where couple_id = %s "
                "and cursor > %s order by cursor limit %s",
                (couple_id, since, limit + 1),
            ).fetchall()
            page = rows[:limit]
            body = json.dumps(
                {
                    "events": [
                        {"cursor": c, "type": t, "at": a.isoformat(), "data": d}
                        for c, t, a, d in page
                    ],
                    "next": page[-1][0] if page else since,
                    "has_more": len(rows) > limit,
                }
            )
            n += len(page)
            since = page[-1][0] if page else since
            if len(rows) <= limit or not body:
                break
    return {"total_s": time.perf_counter() - t0, "events": n}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=10000)
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    url = common.fresh_postgres()
    couple = common.seed_couples(url, 1)[0]
    server = common.start_reach("sync", PORT, url, worker=False)
    runs, floors = [], []
    try:
        seed(url, server, couple, args.events)
        log(f"seeded {args.events} events")
        import psycopg

        with psycopg.connect(common.PG_URL) as conn:
            couple_id = conn.execute("select id from couples limit 1").fetchone()[0]
        catch_up(server, couple.b_token, args.limit)  # warm-up, not counted
        for rep in range(args.reps):
            common.wait_quiet(max_wait=30)
            meter = common.CpuMeter({"server": [server.worker_pid]})
            meter.start()
            r = catch_up(server, couple.b_token, args.limit)
            r["cpu_cores"] = meter.stop()
            runs.append(r)
            f = floor(couple_id, args.limit)
            floors.append(f)
            log(
                f"  rep {rep + 1}: {r['events']} events in {r['pages']} pages, "
                f"{r['total_s'] * 1000:.0f} ms (pages {min(r['page_ms']):.0f}-"
                f"{max(r['page_ms']):.0f} ms, {r['bytes'] / 1e6:.1f} MB); "
                f"psycopg+json floor {f['total_s'] * 1000:.0f} ms; "
                f"other cpu {r['cpu_cores']['other']:.2f}"
            )
    finally:
        server.stop()
    summary = {
        "events": args.events,
        "catch_up_s_median": median(r["total_s"] for r in runs),
        "catch_up_s_range": spread(r["total_s"] for r in runs),
        "page_ms_median": median(v for r in runs for v in r["page_ms"]),
        "floor_s_median": median(f["total_s"] for f in floors),
        "mb": runs[0]["bytes"] / 1e6 if runs else None,
    }
    summary["ratio_to_floor"] = round(summary["catch_up_s_median"] / summary["floor_s_median"], 2)
    common.write_result(
        "sync", {"args": vars(args), "runs": runs, "floor": floors, "summary": summary}
    )
    print()
    print(
        common.table(
            [
                "events",
                "catch-up s (median)",
                "range",
                "page ms (median)",
                "MB",
                "psycopg+json floor s",
                "x floor",
            ],
            [
                [
                    summary["events"],
                    summary["catch_up_s_median"],
                    "{:.2f}-{:.2f}".format(*summary["catch_up_s_range"]),
                    summary["page_ms_median"],
                    summary["mb"],
                    summary["floor_s_median"],
                    summary["ratio_to_floor"],
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
