"""Target 2: idle authenticated sockets held by one API process, memory per socket, and bid
delivery latency while they are connected.

For each system (bare relay, then Reach on PostgreSQL with a separate `reach worker`):
  1. warm up (a few sockets and bids), read the gunicorn worker's VmRSS (/proc/PID/status);
  2. connect N WebSocket clients (both partners of N/2 couples), authenticated with their token,
     from several load processes; they answer Engine.IO pings;
  3. read VmRSS again: (after - before) / connected = memory per socket;
  4. send bids at a fixed rate for --hold seconds (spanning at least one 25 s ping cycle) and
     measure the recipients' round trip;
  5. with no bids for --idle-s seconds (a whole ping cycle), the server's CPU: what the idle
     sockets' heartbeats cost it;
  6. count the sockets still connected.

Usage: .venv/bin/python -m bench.bench_connections [--sockets 5000] [--rate 25]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import log, median, pct
from bench.loadgen import LoadGenerator

PORTS = {"baseline": 7121, "reach-pg": 7122}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _gc_stats(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    for _ in range(30):
        try:
            return json.loads(Path(path).read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            time.sleep(0.2)
    return None


def _gc_diff(a: dict[str, Any] | None, b: dict[str, Any] | None, since: float) -> dict[str, Any]:
    if not a or not b:
        return {}
    out: dict[str, Any] = {}
    for g in ("0", "1", "2"):
        out[f"gen{g}_collections"] = b["gen"][g]["collections"] - a["gen"][g]["collections"]
        out[f"gen{g}_ms"] = round(b["gen"][g]["total_ms"] - a["gen"][g]["total_ms"], 1)
    pauses = [p for p in b["pauses_over_5ms"] if p[0] >= since]
    out["pauses_over_20ms"] = sum(1 for p in pauses if p[2] > 20)
    out["longest_pause_ms"] = max((p[2] for p in pauses), default=0.0)
    out["frozen_objects"] = b.get("frozen_objects")
    return out


# Engine.IO's ping interval, the service's and the relay's default (SOCKET_PING_INTERVAL).
PING_INTERVAL_S = 25.0


def _idle_cost(
    server: common.Server, gen: LoadGenerator, connected: int, seconds: float
) -> dict[str, float]:
    """What `connected` idle sockets cost the server: its CPU with no bids for `seconds`
    (heartbeats only: every socket pings once per PING_INTERVAL_S)."""
    import psutil

    worker = psutil.Process(server.worker_pid)
    loadgen = common.CpuMeter({"loadgen": gen.pids}, None)
    before, started = worker.cpu_times(), time.monotonic()
    loadgen.start()
    time.sleep(seconds)
    loadgen_cores = loadgen.stop().get("loadgen", 0.0)
    after, wall = worker.cpu_times(), time.monotonic() - started
    # in the kernel (the sockets' reads and writes, the event loop's waits) and in Python
    system = (after.system - before.system) / wall
    user = (after.user - before.user) / wall
    cores = system + user
    return {
        "seconds": round(wall, 2),
        "server_cores": round(cores, 4),
        "server_system_cores": round(system, 4),
        "server_user_cores": round(user, 4),
        "loadgen_cores": round(loadgen_cores, 4),
        "us_per_socket_ping": round(cores * PING_INTERVAL_S / max(1, connected) * 1e6, 1),
    }


def run_system(
    name: str, server: common.Server, couples: list[dict[str, str]], args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {"system": name, "busy_before": common.wait_quiet()}
    # warm-up on a few couples, then a settled baseline RSS
    warm = LoadGenerator(server.url, couples[:10], 1, 4)
    try:
        warm.call("connect", which="both", concurrency=10)
        warm.step(tag=900, rate=20, duration=1.0, drain=1.0)
        warm.call("disconnect")
    finally:
        warm.close()
    time.sleep(2)
    out["rss_before_kb"] = before = rss_kb(server.worker_pid)
    out["fds_before"] = fds(server.worker_pid)
    log(f"{name}: worker RSS before {before / 1024:.1f} MiB")

    gen = LoadGenerator(server.url, couples, args.procs, 4)
    try:
        t0 = time.monotonic()
        res = gen.call("connect", timeout=900, which="both", concurrency=args.connect_concurrency)
        out["connect_wall_s"] = round(time.monotonic() - t0, 2)
        connect_ms = [v for r in res for v in r["connect_ms"]]
        out["connected"] = connected = sum(r["connected"] for r in res)
        out["connect_failed"] = sum(r["failed"] for r in res)
        out["connect_failures"] = [f for r in res for f in r["failures"]][:5]
        out["connect_p50_ms"] = pct(connect_ms, 50)
        out["connect_p99_ms"] = pct(connect_ms, 99)
        out["connect_rate_per_s"] = round(connected / max(0.001, out["connect_wall_s"]), 1)
        log(
            f"{name}: {connected} sockets connected in {out['connect_wall_s']} s "
            f"({out['connect_failed']} failed; connect p50 {out['connect_p50_ms']:.1f} ms)"
        )
        time.sleep(3)
        out["rss_after_kb"] = after = rss_kb(server.worker_pid)
        out["fds_after"] = fds(server.worker_pid)
        out["kb_per_socket"] = round((after - before) / max(1, connected), 2)
        if name.startswith("baseline"):
            import requests

            out["greenlet_stats"] = requests.get(f"{server.url}/debug/stats", timeout=30).json()
            log(f"{name}: {out['greenlet_stats']}")
        log(
            f"{name}: worker RSS after {after / 1024:.1f} MiB -> {out['kb_per_socket']} KB/socket, "
            f"{out['fds_after']} fds"
        )

        gc_path = server.env.get("BENCH_GC_STATS")
        gc_before = _gc_stats(gc_path)
        hold_start = time.time()
        steps = []
        t_end = time.monotonic() + args.hold
        tag = 1000
        while time.monotonic() < t_end and len(steps) < 20:
            meter = common.CpuMeter(
                {
                    "server": [server.worker_pid],
                    "loadgen": gen.pids,
                    "reach_worker": [p.pid for p in server.extra],
                },
                common.PG_DB if name.startswith("reach") else None,
            )
            meter.start()
            tag += 1
            s = gen.step(tag, args.rate, args.step_s, drain=2.0)
            cpu = meter.stop()
            rtt = s.pop("rtt_ms")
            s.pop("rtt_late_ms")
            post = s.pop("post_ms")
            steps.append(
                {
                    "rate": args.rate,
                    "ok": s["ok"],
                    "errors": s["errors"],
                    "received": s["received"],
                    "scheduled": s["scheduled"],
                    "p50": pct(rtt, 50),
                    "p99": pct(rtt, 99),
                    "max": max(rtt) if rtt else None,
                    "post_p50": pct(post, 50),
                    "cpu_cores": cpu,
                    "error_samples": s.get("error_samples"),
                }
            )
            log(
                f"{name}: {args.rate}/s with {connected} sockets: delivered "
                f"{s['received']}/{s['scheduled']}, p50 {steps[-1]['p50'] or 0:.1f} ms "
                f"p99 {steps[-1]['p99'] or 0:.1f} ms; cpu server {cpu.get('server', 0):.2f} "
                f"other {cpu.get('other', 0):.2f}"
            )
        out["latency_steps"] = steps
        out["p50_median"] = median(s["p50"] for s in steps)
        out["p99_median"] = median(s["p99"] for s in steps)
        out["p99_worst"] = max((s["p99"] for s in steps if s["p99"] is not None), default=None)
        out["delivered"] = sum(s["received"] for s in steps)
        out["scheduled"] = sum(s["scheduled"] for s in steps)
        if args.idle_s > 0:  # after the hold: every socket is in its ping cycle by now
            out["idle"] = idle = _idle_cost(server, gen, connected, args.idle_s)
            log(
                f"{name}: idle for {args.idle_s:.0f} s with {connected} sockets: server "
                f"{idle['server_cores']:.3f} cores ({idle['server_system_cores']:.3f} in the "
                f"kernel), {idle['us_per_socket_ping']:.0f} us of CPU per socket per "
                f"{PING_INTERVAL_S:.0f} s ping cycle"
            )
        out["alive_after_hold"] = sum(r["alive"] for r in gen.call("alive"))
        if gc_path:
            time.sleep(1.2)
            out["gc_during_hold"] = gc = _gc_diff(gc_before, _gc_stats(gc_path), hold_start)
            log(f"{name}: garbage collection during the hold: {gc}")
        out["rss_end_kb"] = rss_kb(server.worker_pid)
        log(
            f"{name}: {out['alive_after_hold']} sockets alive after {args.hold:.0f} s "
            f"(spans Engine.IO ping cycles)"
        )
    finally:
        gen.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sockets", type=int, default=5000)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--connect-concurrency", type=int, default=16, help="per load process")
    p.add_argument("--rate", type=float, default=25.0, help="bids/s while connected")
    p.add_argument("--step-s", type=float, default=8.0)
    p.add_argument("--hold", type=float, default=40.0)
    p.add_argument(
        "--idle-s",
        type=float,
        default=25.0,
        help="seconds with the sockets connected and no bids, after the hold, to measure what "
        "their heartbeats cost the server (0: skip)",
    )
    p.add_argument("--systems", default="baseline,reach-pg")
    p.add_argument(
        "--transports",
        default="lean,stock",
        help="WebSocket transports to measure each system on (SOCKET_TRANSPORT): lean is the "
        "service's default (service/realtime/transport/), stock is engineio + simple-websocket",
    )
    p.add_argument(
        "--gc-probe",
        action="store_true",
        help="serve with bench/gc_probe_config.py: time every garbage collection",
    )
    p.add_argument("--gc-freeze", action="store_true", help="with --gc-probe: gc.freeze() each s")
    p.add_argument(
        "--gc-policy",
        choices=["service", "off", "freeze"],
        default="service",
        help="the API process's garbage-collection policy (service/gc_tuning.py): off "
        "(GC_FREEZE=false: CPython's defaults), freeze, or service (the service's default)",
    )
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # `ulimit -n` for us and children
    log(f"open files limit raised {soft} -> {hard}")
    pairs = args.sockets // 2
    results: dict[str, Any] = {"args": vars(args), "systems": {}}
    runs = [(n, t) for n in args.systems.split(",") for t in args.transports.split(",")]
    for name, transport in runs:
        label = name if transport == "lean" else f"{name} ({transport})"
        server = None
        try:
            extra = {"SOCKET_TRANSPORT": transport}
            if args.gc_policy != "service":
                extra["GC_FREEZE"] = "true" if args.gc_policy == "freeze" else "false"
            if args.gc_probe:
                extra["BENCH_GC_STATS"] = str(common.OUT / f"gc-{name}.json")
                Path(extra["BENCH_GC_STATS"]).unlink(missing_ok=True)
                if args.gc_freeze:
                    extra["BENCH_GC_FREEZE"] = "1"
            if name == "baseline":
                couples = [c.to_json() for c in common.baseline_couples(pairs)]
                server = common.start_baseline(PORTS[name], **extra)
            else:
                url = common.fresh_postgres()
                log(f"seeding {pairs} couples ...")
                couples = [c.to_json() for c in common.seed_couples(url, pairs)]
                server = common.start_reach(name, PORTS[name], url, **extra)
            results["systems"][label] = run_system(label, server, couples, args)
        finally:
            if server is not None:
                server.stop()
    suffix = ("-gcprobe" + ("-freeze" if args.gc_freeze else "")) if args.gc_probe else ""
    if args.gc_policy != "service":
        suffix += f"-gc{args.gc_policy}"
    common.write_result("connections" + suffix, results)
    print()
    print(
        common.table(
            [
                "system",
                "sockets",
                "failed",
                "connect s",
                "RSS before MiB",
                "RSS after MiB",
                "KB/socket",
                f"p50 ms @{args.rate:.0f}/s",
                "p99 ms (median)",
                "p99 worst",
                "alive after",
                "idle cores",
                "us/socket/ping",
            ],
            [
                [
                    n,
                    r["connected"],
                    r["connect_failed"],
                    r["connect_wall_s"],
                    r["rss_before_kb"] / 1024,
                    r["rss_after_kb"] / 1024,
                    r["kb_per_socket"],
                    r["p50_median"],
                    r["p99_median"],
                    r["p99_worst"],
                    r["alive_after_hold"],
                    r.get("idle", {}).get("server_cores"),
                    r.get("idle", {}).get("us_per_socket_ping"),
                ]
                for n, r in results["systems"].items()
            ],
        )
    )


if __name__ == "__main__":
    main()
