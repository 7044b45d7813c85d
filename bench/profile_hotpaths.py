"""Target 5: where a bid's time goes. Evidence for bench/RESULTS.md, "Profile".

1. queries: SQL statements per request, counted where psycopg is given them (in-process
   app, PostgreSQL reach_bench, Flask test client):
   POST /bids (new and retried), GET /sync, socket connect, and one worker pass per push job.
2. cprofile: cProfile of N POST /bids in-process (no network, no gevent): top functions by own
   time, and own time grouped by package.
3. serialisation: microbenchmarks of the pieces a bid goes through (BidSchema dump, the JSON of
   the envelope, the sync page schema for 1000 events vs plain dicts).
4. keepalive: sequential requests on one keep-alive connection vs a new connection each, on
   the live gunicorn servers (the bare relay, the relay with one INSERT per bid, Reach): GET
   /healthz and POST /bids, unloaded.
5. pyspy: py-spy record (`--gil`: samples where the process runs Python) of the live gunicorn
   worker and the `reach worker` while bids flow at a fixed rate: own time by function and by
   package, and inclusive time of named phases.

Usage: .venv/bin/python -m bench.profile_hotpaths \
           [--parts queries,cprofile,serialisation,keepalive,pyspy]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import json
import pstats
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench import common
from bench.common import log, pct

PORTS = {"baseline": 7141, "reach-pg": 7142, "relay-pg": 7143}
PY_SPY = str(common.ROOT / ".venv" / "bin" / "py-spy")


def _package(path: str) -> str:
    m = re.search(r"site-packages/([^/]+)", path)
    if m:
        name = m.group(1)
        return name[:-3] if name.endswith(".py") else name
    if "/service/" in path or path.startswith("service/"):
        return "service (Reach)"
    if "/schemas/" in path or path.startswith("schemas/"):
        return "schemas (Reach)"
    m = re.search(r"python3\.\d+/([^/]+)", path)
    if m:
        return "stdlib:" + m.group(1).removesuffix(".py")
    return path.rsplit("/", 1)[-1] or "?"


def _app(url: str) -> Any:
    from service import create_app
    from service.config import Settings

    return create_app(
        Settings(
            DATABASE_URL=url,
            SECRET_KEY=common.SECRET,
            WORKER_MODE="separate",
            LOG_LEVEL="WARNING",
            RATELIMIT_ENABLED=common.RATELIMIT_ON,
            **common.RATE_LIMITS,
            ACCESS_TOKEN_SECONDS=6 * 3600,
        )
    )


class QueryLog:
    """The statements psycopg is given, watched at the driver: the bid's write bypasses
    SQLAlchemy's execution (`DriverStatement.first_row_alone`), and its events with it."""

    def __init__(self) -> None:
        import psycopg

        self.statements: list[str] = []
        self._originals = {name: getattr(psycopg.Cursor, name) for name in self.METHODS}
        for name, run in self._originals.items():
            setattr(psycopg.Cursor, name, self._watched(run))

    METHODS = ("execute", "executemany")  # an executemany counts once

    def close(self) -> None:
        """psycopg as it was: the parts after this one time it unwatched."""
        import psycopg

        for name, run in self._originals.items():
            setattr(psycopg.Cursor, name, run)

    def _watched(self, run: Any) -> Any:
        def watched(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            self.statements.append(" ".join(str(query).split())[:140])
            return run(cursor, query, *args, **kwargs)

        return watched

    def take(self) -> list[str]:
        out, self.statements = self.statements, []
        return out


def part_queries(url: str) -> dict[str, Any]:
    from service.push.log import LogBackend
    from service.worker.dispatch import Dispatcher

    couples = common.seed_couples(url, 3)
    app = _app(url)
    out: dict[str, Any] = {}
    qlog = QueryLog()
    client = app.test_client()
    c = couples[0]
    auth = {"Authorization": f"Bearer {c.a_token}"}

    def post(client_id: str) -> list[str]:
        qlog.take()
        r = client.post(
            "/api/v1/bids",
            json={"client_id": client_id, "kind": "connect", "note": "hi"},
            headers=auth,
        )
        assert r.status_code in (200, 201), r.get_data(as_text=True)
        return qlog.take()

    post(str(uuid.uuid4()))  # first request: connection, caches
    cid = str(uuid.uuid4())
    out["POST /bids (new)"] = post(cid)
    out["POST /bids (retry, same client_id)"] = post(cid)
    qlog.take()
    qlog.take()
    r = client.get("/healthz")
    out["GET /healthz"] = qlog.take()
    r = client.get(
        "/api/v1/sync?since=0&limit=50", headers={"Authorization": f"Bearer {c.b_token}"}
    )
    assert r.status_code == 200
    out["GET /sync (limit 50)"] = qlog.take()
    # (socket connect runs members.live_member, the same statement as the auth of a request;
    # Flask-SocketIO's test client cannot run it: the handler reads the server session.)
    # the worker: one pass over the push jobs the bids above queued (LogBackend)
    with app.app_context():
        from service.extensions import db as _db

        for _ in range(3):
            post(str(uuid.uuid4()))
        qlog.take()
        disp = Dispatcher(LogBackend(), batch=32)
        with _db.scope() as session:
            sent = disp.run(session, "profile")
        statements = qlog.take()
        out[f"worker pass: {sent} pushes"] = statements
    qlog.close()
    app.extensions["reach.db"].engine.dispose()
    for name, stmts in out.items():
        log(f"  {name}: {len(stmts)} statements")
        for s in stmts:
            log(f"      {s}")
    return {name: {"count": len(s), "statements": s} for name, s in out.items()}


def part_cprofile(url: str, n: int) -> dict[str, Any]:
    couples = common.seed_couples(url, 20)
    app = _app(url)
    client = app.test_client()
    for c in couples[:3]:  # warm
        client.post(
            "/api/v1/bids",
            json={"client_id": str(uuid.uuid4()), "kind": "connect"},
            headers={"Authorization": f"Bearer {c.a_token}"},
        )
    # CPU time, not wall time: waiting for PostgreSQL is not what limits a gevent server
    prof = cProfile.Profile(time.process_time)
    t0 = time.perf_counter()
    c0 = time.process_time()
    prof.enable()
    for i in range(n):
        c = couples[i % len(couples)]
        client.post(
            "/api/v1/bids",
            json={"client_id": str(uuid.uuid4()), "kind": "connect", "note": "hello"},
            headers={"Authorization": f"Bearer {c.a_token}"},
        )
    prof.disable()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    app.extensions["reach.db"].engine.dispose()
    dump = common.OUT / "profile" / "post_bids.pstats"
    dump.parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(str(dump))
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
    own: list[tuple[float, float, int, str]] = []
    by_pkg: collections.Counter[str] = collections.Counter()
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        own.append((tt, ct, nc, f"{func} ({_package(file)}:{Path(file).name}:{line})"))
        by_pkg[_package(file)] += tt
    own.sort(reverse=True)
    cum = sorted(own, key=lambda x: -x[1])
    interesting = [
        x
        for x in cum
        if re.search(
            r"\b(send|authenticate|live_member|write_new|bid_created|commit|flush|dump|wire|present|"
            r"emit|_publish|hit|encode|decode|jsonify|response|arguments|load|execute|"
            r"read_access_token|require_couple|_by_client_id|next_cursor)\b",
            x[3],
        )
    ][:40]
    res = {
        "requests": n,
        "wall_ms_per_request": wall * 1000 / n,
        "cpu_ms_per_request": cpu * 1000 / n,
        "profiled_cpu_ms_per_request": total * 1000 / n,
        "top_own": [
            {
                "own_ms_per_req": tt * 1000 / n,
                "cum_ms_per_req": ct * 1000 / n,
                "calls_per_req": nc / n,
                "func": f,
            }
            for tt, ct, nc, f in own[:30]
        ],
        "top_cumulative": [
            {
                "cum_ms_per_req": ct * 1000 / n,
                "own_ms_per_req": tt * 1000 / n,
                "calls_per_req": nc / n,
                "func": f,
            }
            for tt, ct, nc, f in interesting
        ],
        "own_by_package_ms_per_req": {k: round(v * 1000 / n, 3) for k, v in by_pkg.most_common(20)},
        "pstats_file": str(dump.relative_to(common.ROOT)),
    }
    log(
        f"  cProfile (CPU timer): {n} POST /bids, {res['wall_ms_per_request']:.2f} ms/request "
        f"wall, {res['cpu_ms_per_request']:.2f} ms/request CPU (both with the profiler's "
        f"overhead); own CPU by package (ms/request):"
    )
    for k, v in list(res["own_by_package_ms_per_req"].items())[:12]:
        log(f"      {v:7.3f}  {k}")
    log("  top own CPU (ms/request):")
    for row in res["top_own"][:15]:
        log(f"      {row['own_ms_per_req']:7.3f}  x{row['calls_per_req']:.1f}  {row['func']}")
    log("  cumulative CPU (ms/request):")
    for row in res["top_cumulative"][:25]:
        log(f"      {row['cum_ms_per_req']:7.3f}  x{row['calls_per_req']:.1f}  {row['func']}")
    return res


def part_serialisation(url: str) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    from schemas.bids import BidSchema
    from schemas.sync import SyncPageSchema

    now = datetime.now(UTC)
    view = {
        "id": uuid.uuid4(),
        "client_id": uuid.uuid4(),
        "kind": "connect",
        "note": "hi",
        "sender_id": uuid.uuid4(),
        "recipient_id": uuid.uuid4(),
        "status": "sent",
        "created_at": now,
        "reachable_at": now,
        "expires_at": now + timedelta(days=1),
        "delivered_at": None,
        "seen_at": None,
        "responded_at": None,
        "expired_at": None,
        "response": None,
        "response_seconds": None,
        "outcome": "pending",
        "turned_toward": None,
        "responses": [],
    }
    schema = BidSchema()
    wire = schema.dump(view)
    env = {"cursor": 1, "type": "bid.created", "at": wire["created_at"], "data": wire}

    def timeit(fn: Any, n: int) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n * 1e6

    page = {"events": [dict(env, cursor=i) for i in range(1000)], "next": 1000, "has_more": True}
    res = {
        "BidSchema.dump (us)": timeit(lambda: schema.dump(view), 3000),
        "json.dumps envelope (us)": timeit(lambda: json.dumps(env), 20000),
        "SyncPageSchema.dump 1000 events (ms)": timeit(lambda: SyncPageSchema().dump(page), 20)
        / 1000,
        "json.dumps 1000-event page (ms)": timeit(lambda: json.dumps(page), 20) / 1000,
    }
    for k, v in res.items():
        log(f"  {k}: {v:.2f}")
    return res


def _sequential(
    url: str,
    path: str,
    n: int,
    keepalive: bool,
    method: str = "GET",
    body_fn: Any = None,
    headers: dict[str, str] | None = None,
) -> list[float]:
    from urllib.parse import urlsplit

    from bench.loadgen import HttpConn

    parts = urlsplit(url)

    async def run() -> list[float]:
        conn = HttpConn(parts.hostname or "127.0.0.1", parts.port or 80)
        out = []
        for _ in range(n):
            t = time.perf_counter()
            status, _ = await conn.request(
                method, path, body_fn() if body_fn else b"", headers or {}
            )
            out.append((time.perf_counter() - t) * 1000)
            assert status < 300, status
            if not keepalive:
                conn.close()
        conn.close()
        return out

    return asyncio.run(run())


def part_keepalive(
    servers: dict[str, common.Server], couples: dict[str, list[Any]], n: int
) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for name, server in servers.items():
        c = couples[name][0]

        def bid_body() -> bytes:
            return json.dumps(
                {"client_id": str(uuid.uuid4()), "kind": "connect", "note": "x"}
            ).encode()

        hdr = {"Authorization": f"Bearer {c.a_token}", "Content-Type": "application/json"}
        for label, kw in (
            ("GET /healthz keep-alive", {"path": "/healthz", "keepalive": True}),
            ("GET /healthz new connection", {"path": "/healthz", "keepalive": False}),
            (
                "POST /bids keep-alive",
                {
                    "path": "/api/v1/bids",
                    "keepalive": True,
                    "method": "POST",
                    "body_fn": bid_body,
                    "headers": hdr,
                },
            ),
        ):
            lat = _sequential(server.url, n=n, **kw)
            res[f"{name}: {label}"] = {
                "p50_ms": pct(lat, 50),
                "p90_ms": pct(lat, 90),
                "p99_ms": pct(lat, 99),
            }
            log(f"  {name:9s} {label:28s} p50 {pct(lat, 50):6.2f} ms  p99 {pct(lat, 99):6.2f} ms")
    return res


def _collapse(raw: Path) -> dict[str, Any]:
    """Aggregate py-spy's raw (collapsed) stacks: own samples per function and per package,
    inclusive samples per named phase."""
    own: collections.Counter[str] = collections.Counter()
    pkg: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    phases = {
        "auth (live_member + JWT)": (
            r"(^|\.)(authenticate|live_member|read_access_token) \(service/"
        ),
        "bids.send (service)": r"^send \(service/services/bids",
        "  bid_writes.write_new (bid, cursor, event, push job)": (
            r"^write_new \(service/services/bid_writes"
        ),
        "  push_outbox.bid_created (job row)": r"^bid_created \(service/services/push_outbox",
        "  the SQL statements (SQLAlchemy + psycopg)": r"^Connection\.execute \(sqlalchemy/engine",
        "  Session.commit": r"^Session\.commit \(sqlalchemy/orm/session",
        "  the request's session (Database.session)": r"^Database\.session \(service/db",
        "  wire (BidSchema dump for the event)": r"^wire \(service/services/bids",
        "request body load (webargs/marshmallow)": r"(^|\.)Parser\.parse \(webargs/",
        "marshmallow (all)": r"\(marshmallow/",
        "socket emit after commit (Reach publisher)": (
            r"^(_publish\.<locals>\.send|SocketPublisher\.couple_event) \(service/"
        ),
        "socketio emit internals": r"^(SocketIO|Server|Manager|BaseManager)\.emit \(",
        "websocket frames (simple_websocket/wsproto)": r"\((simple_websocket|wsproto)/",
        "gunicorn HTTP (parse, write the response)": r"\(gunicorn/http/",
        "psycopg (all)": r"\(psycopg/",
        "sqlalchemy (all)": r"\(sqlalchemy/",
        "PyJWT": r"\(jwt/",
        "logging": r"\(logging/",
        "pool pre-ping (SELECT 1 per checkout)": r"(_do_ping_w_event|do_ping)",
    }
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue  # a frame whose name py-spy printed over several lines
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        frames = [re.sub(r"\(/[^)]*?(site-packages|lib/python3\.\d+)/", "(", f) for f in frames]
        frames = [re.sub(r"\(.*?/(service|schemas|bench)/", r"(\1/", f) for f in frames]
        leaf = frames[-1]
        own[leaf] += n
        m = re.search(r"\(([^)/]+)/", leaf)
        pkg[m.group(1) if m else leaf] += n
        seen = set(frames)
        for label, rx in phases.items():
            if any(re.search(rx, f) for f in seen):
                incl[label] += n
    return {
        "samples": total,
        "own_top": [(f, round(100 * v / total, 1)) for f, v in own.most_common(25)],
        "own_by_package_pct": [(k, round(100 * v / total, 1)) for k, v in pkg.most_common(15)],
        "inclusive_pct": {k: round(100 * incl[k] / total, 1) for k in phases},
    }


def part_pyspy(
    servers: dict[str, common.Server], couples: dict[str, list[Any]], rate: float, seconds: float
) -> dict[str, Any]:
    from bench.loadgen import LoadGenerator

    res: dict[str, Any] = {}
    if not shutil.which(PY_SPY) and not Path(PY_SPY).exists():
        log("  py-spy not installed: .venv/bin/pip install py-spy")
        return res
    for name, server in servers.items():
        gen = LoadGenerator(server.url, [c.to_json() for c in couples[name]], 3, 8)
        try:
            gen.call("connect", which="b", concurrency=20)
            gen.step(tag=1, rate=rate, duration=2.0)  # warm-up
            targets = {"api": server.worker_pid}
            if server.extra:
                targets["worker"] = server.extra[0].pid
            spies = {}
            for role, pid in targets.items():
                raw = common.OUT / "profile" / f"pyspy-{name}-{role}.txt"
                raw.parent.mkdir(parents=True, exist_ok=True)
                spies[role] = (
                    raw,
                    subprocess.Popen(
                        [
                            PY_SPY,
                            "record",
                            "--pid",
                            str(pid),
                            "--rate",
                            "250",
                            "--format",
                            "raw",
                            "--duration",
                            str(int(seconds)),
                            "--output",
                            str(raw),
                            "--nonblocking",
                            # Only samples where the process runs Python: not the time it waits
                            # for PostgreSQL or is preempted by it (the CPU profile, not wall).
                            "--gil",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    ),
                )
            time.sleep(1.0)
            meter = common.CpuMeter(
                {"api": [server.worker_pid], "worker": [p.pid for p in server.extra]},
                common.SYSTEM_DATABASES.get(name),
            )
            meter.start()
            s = gen.step(tag=2, rate=rate, duration=seconds - 2.5)
            cpu = meter.stop()
            for role, (raw, proc) in spies.items():
                proc.wait(timeout=seconds + 30)
                if raw.exists():
                    agg = _collapse(raw)
                    res[f"{name}:{role}"] = agg
                    log(
                        f"  py-spy {name} {role}: {agg['samples']} samples; own time by package: "
                        + ", ".join(f"{k} {v}%" for k, v in agg["own_by_package_pct"][:8])
                    )
                    for k, v in agg["inclusive_pct"].items():
                        if v:
                            log(f"      {v:5.1f}%  {k}")
                else:
                    err = proc.stderr.read().decode()[:300] if proc.stderr else ""
                    log(f"  py-spy {name} {role}: no output ({err})")
            res[f"{name}:load"] = {
                "rate": rate,
                "cpu_cores": cpu,
                "rtt_p50": pct(s["rtt_ms"], 50),
                "rtt_p99": pct(s["rtt_ms"], 99),
            }
            log(
                f"  {name}: at {rate}/s api cpu {cpu.get('api', 0):.2f} cores "
                f"({cpu.get('api', 0) / rate * 1000:.2f} ms CPU per bid), worker "
                f"{cpu.get('worker', 0):.2f}, postgres {cpu.get('postgres', 0):.2f}"
            )
        finally:
            gen.close()
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--parts", default="queries,cprofile,serialisation,keepalive,pyspy")
    p.add_argument("--cprofile-requests", type=int, default=400)
    p.add_argument("--keepalive-requests", type=int, default=300)
    p.add_argument("--pyspy-rate", type=float, default=50.0)
    p.add_argument("--pyspy-seconds", type=float, default=15.0)
    args = p.parse_args()
    parts = args.parts.split(",")
    result: dict[str, Any] = {"args": vars(args)}
    url = common.fresh_postgres()
    if "queries" in parts:
        log("== SQL statements per request")
        result["queries"] = part_queries(url)
    if "cprofile" in parts:
        log("== cProfile, POST /bids in-process")
        result["cprofile"] = part_cprofile(url, args.cprofile_requests)
    if "serialisation" in parts:
        log("== serialisation")
        result["serialisation"] = part_serialisation(url)
    if {"keepalive", "pyspy"} & set(parts):
        servers: dict[str, common.Server] = {}
        couples: dict[str, list[Any]] = {}
        try:
            servers["baseline"] = common.start_baseline(PORTS["baseline"])
            couples["baseline"] = common.baseline_couples(60)
            servers["relay-pg"] = common.start_relay_pg(PORTS["relay-pg"])
            couples["relay-pg"] = common.baseline_couples(60)
            couples["reach-pg"] = common.seed_couples(url, 60)
            servers["reach-pg"] = common.start_reach("profile-pg", PORTS["reach-pg"], url)
            if "keepalive" in parts:
                log("== sequential requests, keep-alive vs new connection (unloaded)")
                result["keepalive"] = part_keepalive(servers, couples, args.keepalive_requests)
            if "pyspy" in parts:
                log(f"== py-spy under load ({args.pyspy_rate}/s)")
                result["pyspy"] = part_pyspy(servers, couples, args.pyspy_rate, args.pyspy_seconds)
        finally:
            for s in servers.values():
                s.stop()
    common.write_result("profile", result)


if __name__ == "__main__":
    main()
