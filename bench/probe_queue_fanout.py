"""What a bid costs an API process that holds none of its sockets, through the message queue.

With Redis, every emit of every API process is published on one channel (python-socketio's
message queue), and every other process receives it, decodes it and looks for the rooms among
its own sockets. So each process spends some CPU on every bid sent anywhere in the cluster,
and that grows with the cluster's total rate, not the process's own.

Starts Reach on PostgreSQL with Redis: process A (with its `reach worker`) and process B, which
holds one socket of a couple that sends nothing (python-socketio subscribes a process to the
queue when its first socket connects). The recipients' sockets connect to A and the load
generator posts to A; B's CPU is measured in the same steps, and in as long a step with no
bids (its idle cost: timers, the Redis listener), alternated: idle, load, load, idle, ... per
rep. Reports B's CPU per bid (load less idle), and A's, with the round trip.

Usage: BENCH_REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python -m bench.probe_queue_fanout
           [--rate 250] [--seconds 8] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import socketio

os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

from bench import common
from bench.bench_roundtrip import Runner
from bench.common import log, median

PORT_A, PORT_B = 7131, 7132


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def idle_step(pid: int, seconds: float) -> float:
    """Cores process `pid` used over `seconds` with no bids."""
    start, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - start) / (time.monotonic() - started)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=float, default=250.0)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--couples", type=int, default=240)
    args = p.parse_args()
    runner_args = argparse.Namespace(procs=3, http_conns=12, drain=1.0)
    url = common.fresh_postgres()
    couples = [c.to_json() for c in common.seed_couples(url, args.couples + 1)]
    bystander = couples.pop()
    b = common.start_reach("reach-pg-b", PORT_B, url, worker=False)
    a = common.start_reach("reach-pg", PORT_A, url)
    rows: list[dict[str, Any]] = []
    phone = socketio.Client()
    try:
        phone.connect(
            b.url, auth={"token": bystander["b_token"]}, transports=["websocket"], wait_timeout=10
        )
        runner = Runner(runner_args, {"reach-pg": a}, {"reach-pg": couples})
        gen = runner.loadgen("reach-pg")
        try:
            runner.step("reach-pg", gen, args.rate / 2, 3.0)  # warm-up, not counted
            for rep in range(args.reps):
                order = ("idle", "load") if rep % 2 == 0 else ("load", "idle")
                row: dict[str, Any] = {}
                for phase in order:
                    common.wait_quiet()
                    if phase == "idle":
                        row["b_idle_cores"] = idle_step(b.worker_pid, args.seconds)
                        continue
                    start, started = cpu_seconds(b.worker_pid), time.monotonic()
                    step = runner.step("reach-pg", gen, args.rate, args.seconds)
                    row["b_load_cores"] = (cpu_seconds(b.worker_pid) - start) / (
                        time.monotonic() - started
                    )
                    row["achieved_per_s"] = step["achieved_per_s"] or 1.0
                    row["a_cores"] = step["cpu_cores"].get("server", 0.0)
                    row["rtt_p50"], row["rtt_p99"] = step["rtt_p50"], step["rtt_p99"]
                done = row["achieved_per_s"]
                row["b_us_per_bid"] = round(
                    (row["b_load_cores"] - row["b_idle_cores"]) / done * 1e6, 1
                )
                row["a_us_per_bid"] = round(row["a_cores"] / done * 1e6, 1)
                rows.append(row)
                log(
                    f"  {rep + 1}/{args.reps}: {done:.0f} bids/s; process B "
                    f"{row['b_load_cores']:.3f} cores under load, {row['b_idle_cores']:.3f} idle: "
                    f"{row['b_us_per_bid']} µs per bid; process A {row['a_us_per_bid']} µs per bid"
                )
        finally:
            gen.close()
    finally:
        phone.disconnect()
        a.stop()
        b.stop()
    result = {
        "b_us_per_bid": median(r["b_us_per_bid"] for r in rows),
        "a_us_per_bid": median(r["a_us_per_bid"] for r in rows),
        "b_idle_cores": median(r["b_idle_cores"] for r in rows),
        "rtt_p99": median(r["rtt_p99"] for r in rows),
    }
    print(
        common.table(
            [
                "rate/s",
                "B: CPU µs per bid sent to A",
                "B idle cores",
                "A: CPU µs per bid",
                "p99 ms",
            ],
            [
                [
                    args.rate,
                    result["b_us_per_bid"],
                    result["b_idle_cores"],
                    result["a_us_per_bid"],
                    result["rtt_p99"],
                ]
            ],
        )
    )
    common.write_result(
        "probe_queue_fanout",
        {"args": vars(args), "source": common.SRC_NOTE, "rows": rows, "median": result},
    )


if __name__ == "__main__":
    main()
