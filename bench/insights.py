"""Insights for a couple with 100,000 bids on PostgreSQL: GET /insights?days=90 vs GET /me.

    .venv/bin/python bench/insights.py [--bids 100000] [--runs 30]

Creates (or reuses) the database `reach_bench_insights`, fills one couple with years of bids
(90 days of them dense), then times both requests through the app (WSGI, no network) and
prints medians; the JSON result goes to bench/out/insights.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB = "reach_bench_insights"
URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bids", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DB}"],
        check=True,
    )
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {DB}"], check=True
    )
    os.environ.update(
        {
            "DATABASE_URL": URL,
            "SECRET_KEY": "bench-secret-" + "x" * 40,
            "LOG_LEVEL": "WARNING",
            "RATELIMIT_ENABLED": "false",
            "SOCKETIO_ASYNC_MODE": "threading",
        }
    )
    from sqlalchemy import text

    from service import create_app, migrate
    from service.extensions import db

    print(f"migrating {DB} ...", flush=True)
    migrate.upgrade(URL)
    app = create_app()
    client = app.test_client()

    def register(name: str) -> str:
        body = {
            "email": f"{name}@bench.test",
            "password": "benchmark password",
            "display_name": name,
            "timezone": "Europe/Berlin",
        }
        return str(client.post("/api/v1/auth/register", json=body).json["access_token"])

    ana, ben = register("ana"), register("ben")
    code = client.post("/api/v1/couple/invites", headers={"Authorization": f"Bearer {ana}"}).json[
        "code"
    ]
    client.post(
        "/api/v1/couple/join", json={"code": code}, headers={"Authorization": f"Bearer {ben}"}
    )

    print(f"inserting {args.bids:,} bids over three years ...", flush=True)
    started = time.perf_counter()
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(
            text("""
            WITH c AS (SELECT id, partner_a_id a, partner_b_id b FROM couples LIMIT 1)
            INSERT INTO bids (id, couple_id, sender_id, recipient_id, client_id, kind, status,
                created_at, reachable_at, expires_at, delivered_at, responded_at, response,
                response_seconds, first_response, back_at, toward_at, delivery_seconds)
            SELECT gen_random_uuid(), c.id,
                CASE WHEN i % 3 = 0 THEN c.b ELSE c.a END,
                CASE WHEN i % 3 = 0 THEN c.a ELSE c.b END,
                gen_random_uuid(), 'connect',
                CASE WHEN i % 7 = 0 THEN 'expired' ELSE 'answered' END,
                t, t, t + interval '1 day', t + interval '2 seconds',
                CASE WHEN i % 7 = 0 THEN NULL ELSE t + (i % 3600) * interval '1 second' END,
                CASE WHEN i % 7 = 0 THEN NULL WHEN i % 5 = 0 THEN 'later' ELSE 'toward' END,
                CASE WHEN i % 7 = 0 THEN NULL ELSE i % 3600 END,
                CASE WHEN i % 7 = 0 THEN NULL WHEN i % 5 = 0 THEN 'later' ELSE 'toward' END,
                CASE WHEN i % 5 = 0 THEN t + interval '1 hour' END,
                CASE WHEN i % 7 <> 0 AND i % 10 <> 5 THEN t + (i % 3600) * interval '1 second' END,
                2
            FROM c, generate_series(1, :n) i,
                LATERAL (SELECT now() - (i::float / :n) * interval '1095 days' AS t) s
        """),
            {"n": args.bids},
        )
        conn.execute(text("ANALYZE bids"))
    print(f"  inserted in {time.perf_counter() - started:.1f} s", flush=True)

    def timed(path: str, token: str) -> list[float]:
        samples = []
        for index in range(args.runs):
            begin = time.perf_counter()
            response = client.get(path, headers={"Authorization": f"Bearer {token}"})
            samples.append(time.perf_counter() - begin)
            assert response.status_code == 200, response.json
            print(f"\r  {path}: {index + 1}/{args.runs}", end="", flush=True)
        print(flush=True)
        return samples

    client.get("/api/v1/insights?days=90", headers={"Authorization": f"Bearer {ana}"})  # warm up
    baseline = timed("/api/v1/me", ana)
    insights = timed("/api/v1/insights?days=90", ana)
    figures = client.get(
        "/api/v1/insights?days=90", headers={"Authorization": f"Bearer {ana}"}
    ).json
    in_window = sum(p["bids_received"] for p in figures["partners"])
    result = {
        "bids_total": args.bids,
        "bids_in_90_days": in_window,
        "runs": args.runs,
        "insights_90d_median_ms": round(1000 * statistics.median(insights), 1),
        "insights_90d_max_ms": round(1000 * max(insights), 1),
        "baseline_me_median_ms": round(1000 * statistics.median(baseline), 2),
        "ratio_to_baseline": round(statistics.median(insights) / statistics.median(baseline), 1),
    }
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "insights.json").write_text(json.dumps(result, indent=2))
    print("\n| measure | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE {DB} WITH (FORCE)"],
        check=False,
    )


if __name__ == "__main__":
    main()
