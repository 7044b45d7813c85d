"""CPU per delivered bid, by process, at one fixed rate: the figure to compare two versions by.

Starts one system (Reach on PostgreSQL with its `reach worker`, or the bare relay), connects
every couple's recipient, then offers `--rate` bids/s for `--seconds`, `--reps` times, and reports
per step the CPU milliseconds per delivered bid of the API process, the worker, PostgreSQL's
backends, the load generator and the rest of the machine, with the round trip's p50/p99.
Which Reach is measured follows BENCH_SRC (bench/common.py): run it once per version, e.g.
`BENCH_SRC=bench/out/src/<sha>` for an older commit exported there, then HEAD.

`--server-stats` also reports PostgreSQL's CPU per statement over the counted steps
(`bench/pg_statements.py`: `log_statement_stats`, read from the server's log). The reports cost
PostgreSQL CPU of their own, so that run's CPU figures are not comparable with a run without it.

Usage: .venv/bin/python -m bench.cpu_per_bid [--system reach-pg|baseline] [--rate 200]
           [--seconds 8] [--reps 3] [--no-worker] [--server-stats]
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from bench import common, pg_statements
from bench.bench_roundtrip import Runner
from bench.common import log, median

PORT = 7121


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--system", choices=("reach-pg", "baseline"), default="reach-pg")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--couples", type=int, default=240)
    p.add_argument("--procs", type=int, default=3)
    p.add_argument("--http-conns", type=int, default=12)
    p.add_argument("--no-worker", action="store_true", help="Reach without its `reach worker`")
    p.add_argument(
        "--server-stats",
        action="store_true",
        help="PostgreSQL's CPU per statement (reach-pg; costs PostgreSQL CPU of its own)",
    )
    args = p.parse_args()
    server_log = None
    if args.server_stats:
        if args.system != "reach-pg":
            raise SystemExit("--server-stats measures Reach on PostgreSQL: --system reach-pg")
        server_log = pg_statements.ServerLog(common.PG_DB)
    statements = pg_statements.Tally()
    bids = 0.0
    runner_args = argparse.Namespace(procs=args.procs, http_conns=args.http_conns, drain=1.0)
    name = args.system
    servers: dict[str, common.Server] = {}
    couples: dict[str, list[dict[str, str]]] = {}
    steps: list[dict[str, Any]] = []
    try:
        if name == "baseline":
            servers[name] = common.start_baseline(PORT)
            couples[name] = [c.to_json() for c in common.baseline_couples(args.couples)]
        else:
            url = common.fresh_postgres()
            couples[name] = [c.to_json() for c in common.seed_couples(url, args.couples)]
            if server_log is not None:
                server_log.enable()  # before the system opens its connections
            servers[name] = common.start_reach(name, PORT, url, worker=not args.no_worker)
        runner = Runner(runner_args, servers, couples)
        gen = runner.loadgen(name)
        try:
            runner.step(name, gen, args.rate / 2, 3.0)  # warm-up, not counted
            for rep in range(args.reps):
                common.wait_quiet()
                start = server_log.offset() if server_log is not None else 0
                step = runner.step(name, gen, args.rate, args.seconds)
                done = step["achieved_per_s"] or 1.0
                if server_log is not None:
                    statements.merge(server_log.read(start, server_log.offset()))
                    bids += done * args.seconds
                per_bid = {k: round(v / done * 1000, 2) for k, v in step["cpu_cores"].items()}
                steps.append({**step, "cpu_ms_per_bid": per_bid})
                log(
                    f"  {rep + 1}/{args.reps} {common.SRC_NOTE}: {done:.0f}/s, round trip p50 "
                    f"{step['rtt_p50'] or 0:.1f} p99 {step['rtt_p99'] or 0:.1f} ms, CPU ms per "
                    f"bid {per_bid}"
                )
        finally:
            gen.close()
    finally:
        for server in servers.values():
            server.stop()
        if server_log is not None:
            server_log.disable()
    push_delay = common.push_delay_ms() if name == "reach-pg" and not args.no_worker else None
    keys = sorted({k for s in steps for k in s["cpu_ms_per_bid"]})
    medians = {k: median(s["cpu_ms_per_bid"].get(k) for s in steps) for k in keys}
    print(
        common.table(
            ["source", "system", "rate/s", *keys, "p99 ms (median)"],
            [
                [
                    common.SRC_NOTE,
                    name,
                    args.rate,
                    *(medians[k] for k in keys),
                    median(s["rtt_p99"] for s in steps),
                ]
            ],
        )
    )
    if push_delay:
        log(f"  pushes, bid's commit to sent, ms (warm-up included): {push_delay}")
    if server_log is not None:
        print(f"\nPostgreSQL CPU per statement, {bids:.0f} bids over the counted steps:")
        print(pg_statements.table(statements.summary(), bids or 1.0, "bid"))
    source = re.sub(r"[^\w.-]+", "_", common.SRC_NOTE.split(" (")[0])[-40:]
    common.write_result(
        f"cpu_per_bid-{name}-{source}",
        {
            "args": vars(args),
            "source": common.SRC_NOTE,
            "redis": bool(common.REDIS_URL),
            "worker_nice": common.WORKER_NICE,
            "steps": steps,
            "median": medians,
            "push_delay_ms": push_delay,
            "pg_statements": statements.summary() if server_log is not None else None,
        },
    )


if __name__ == "__main__":
    main()
