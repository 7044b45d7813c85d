"""Target 1: bid round trip, POST /api/v1/bids -> the recipient's Socket.IO `bid.created`.

Systems, all started by this script, measured in the same run and interleaved per repetition:
  baseline     bench/baseline_relay.py (gunicorn, one gevent worker, emit on POST, no database)
  relay-pg     bench/relay_pg.py: the same relay with one autocommitted INSERT per bid into
               PostgreSQL (database reach_bench_relay) before the emit: the floor of a bid
               stored before it is answered (RESULTS "Why 1a still fails")
  reach-sqlite Reach on SQLite, WORKER_MODE=inline (pushes logged in-process)
  reach-pg     Reach on PostgreSQL (database reach_bench) + a separate `reach worker`,
               PUSH_BACKEND=log

Per repetition and system:
  1. max sustained rate: offered load ramps up (x1.3 per step) until a step is not sustained,
     then bisects 3 times. A step is sustained when every POST succeeded, >= 99% of the bids
     reached the recipient's socket, >= 95% of the offered rate arrived within the step, and the
     median round trip of the step's last third stayed under --lag-ms (50 ms): once the server
     is saturated its queue, hence the delivery lag, grows through the step. The median (not
     p99) is used so that a noise spike from other work on the shared machine does not end the
     ramp; p99 is reported for every step.
  2. fixed rates: 25%, 50%, 75% of the baseline's max (median over repetitions), for each,
     plus 50% of each other system's own max.

Usage: .venv/bin/python -m bench.bench_roundtrip [--reps 3] [--quick]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import common
from bench.common import log, median, pct, spread
from bench.loadgen import LoadGenerator

PORTS = {"baseline": 7101, "reach-sqlite": 7102, "reach-pg": 7103, "relay-pg": 7104}


def _runqueue_text(s: dict[str, Any]) -> str:
    """The server's wait for a core in a step: per second, and its worst 100 ms (when)."""
    waits = s.get("server_runqueue")
    if not waits:
        return ""
    at = time.strftime("%H:%M:%S", time.localtime(waits["worst_at"])) if waits["worst_at"] else "-"
    return (
        f" | server waited for a core {waits['ms_per_s']:.0f} ms/s,"
        f" worst {waits['worst_ms']:.0f} ms in 100 ms at {at}"
    )


def summarize(step: dict[str, Any]) -> dict[str, Any]:
    rtt = step.pop("rtt_ms")
    step.pop("arrived_at", None)  # per bid: only the tail probe (probe_tail) keeps them
    late = step.pop("rtt_late_ms")
    post = step.pop("post_ms")
    dur = step["duration"]
    return {
        **step,
        "achieved_per_s": round(step["received_in_window"] / dur, 1),
        "rtt_p50": pct(rtt, 50),
        "rtt_p90": pct(rtt, 90),
        "rtt_p99": pct(rtt, 99),
        "rtt_max": max(rtt) if rtt else None,
        "rtt_late_p50": pct(late, 50),
        "post_p50": pct(post, 50),
        "post_p99": pct(post, 99),
    }


def sustained(s: dict[str, Any], lag_ms: float) -> bool:
    return (
        s["errors"] == 0
        and s["dropped"] == 0
        and s["received"] >= 0.99 * s["scheduled"]
        and s["achieved_per_s"] >= 0.95 * s["rate"]
        and s["rtt_late_p50"] is not None
        and s["rtt_late_p50"] < lag_ms
    )


class Runner:
    def __init__(
        self,
        args: argparse.Namespace,
        servers: dict[str, common.Server],
        couples: dict[str, list[dict[str, str]]],
    ) -> None:
        self.args = args
        self.servers = servers
        self.couples = couples
        self.tag = 0

    def loadgen(self, name: str) -> LoadGenerator:
        server = self.servers[name]
        gen = LoadGenerator(server.url, self.couples[name], self.args.procs, self.args.http_conns)
        res = gen.call("connect", which="b", concurrency=20)
        connected = sum(r["connected"] for r in res)
        failed = sum(r["failed"] for r in res)
        if failed:
            log(f"  {name}: {failed} receivers failed to connect: {res[0]['failures']}")
        log(f"  {name}: {connected} receivers connected")
        return gen

    def wait_idle(self, name: str, limit: float = 90.0) -> None:
        """After a saturated step the server still works off requests it accepted: wait
        (bounded) until its worker uses under 0.1 core, so the next step starts clean."""
        import psutil

        proc = psutil.Process(self.servers[name].worker_pid)
        deadline = time.monotonic() + limit
        proc.cpu_percent(None)
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if proc.cpu_percent(None) < 10.0:
                return
        log(f"  {name}: still busy after {limit:.0f} s")

    def meter(self, name: str, gen: LoadGenerator) -> common.CpuMeter:
        server = self.servers[name]
        pids = {"server": [server.worker_pid], "loadgen": gen.pids}
        if server.extra:
            pids["reach_worker"] = [p.pid for p in server.extra]
        return common.CpuMeter(pids, common.SYSTEM_DATABASES.get(name))

    def step(self, name: str, gen: LoadGenerator, rate: float, duration: float) -> dict[str, Any]:
        self.tag += 1
        meter = self.meter(name, gen)
        waits = common.RunQueueMeter(self.servers[name].worker_pid)
        meter.start()
        waits.start()
        raw = gen.step(self.tag, rate, duration, drain=self.args.drain)
        runqueue, cpu = waits.stop(), meter.stop()
        s = summarize(raw)
        s["server_runqueue"], s["cpu_cores"] = runqueue, cpu
        return s

    def max_rate(self, name: str, gen: LoadGenerator) -> dict[str, Any]:
        a = self.args
        start = {"baseline": a.start_rate, "relay-pg": a.relay_pg_start_rate}.get(
            name, a.reach_start_rate
        )
        self.step(name, gen, start / 2, 2.0)  # warm-up, not counted
        steps = []
        rate, good, bad = start, None, None
        while rate <= a.max_offered:
            s = self.step(name, gen, rate, a.step_s)
            s["sustained"] = sustained(s, a.lag_ms)
            steps.append(s)
            self._print_step(name, s)
            if s["sustained"]:
                good = rate
                rate = round(rate * a.factor)
            else:
                bad = rate
                self.wait_idle(name)  # let the server work off its queue
                if good is None and len(steps) < 5 and rate > 10:
                    rate = round(rate * 0.6)  # the first step already failed: step down
                    continue
                break
            time.sleep(0.5)
        if good is not None and bad is not None:
            for _ in range(a.bisect):
                mid = round((good + bad) / 2)
                if mid in (good, bad):
                    break
                time.sleep(1.0)
                s = self.step(name, gen, mid, a.step_s)
                s["sustained"] = sustained(s, a.lag_ms)
                if not s["sustained"]:
                    self.wait_idle(name)  # let the server work off its queue
                steps.append(s)
                self._print_step(name, s)
                if s["sustained"]:
                    good = mid
                else:
                    bad = mid
        peak = max((s["achieved_per_s"] for s in steps), default=None)
        return {
            "max_sustained": good,
            "first_unsustained": bad,
            "peak_achieved": peak,
            "steps": steps,
        }

    @staticmethod
    def _print_step(name: str, s: dict[str, Any]) -> None:
        cpu = s["cpu_cores"]
        log(
            f"  {name:12s} offered {s['rate']:6.0f}/s achieved {s['achieved_per_s']:6.1f}/s "
            f"rtt p50 {s['rtt_p50'] or 0:7.1f} p99 {s['rtt_p99'] or 0:8.1f} ms "
            f"err {s['errors']} drop {s['dropped']} "
            f"cpu server {cpu.get('server', 0):.2f} loadgen {cpu.get('loadgen', 0):.2f} "
            f"other {cpu.get('other', 0):.2f} steal {cpu.get('steal', 0):.2f} "
            f"{'OK' if s.get('sustained', True) else 'SATURATED'}" + _runqueue_text(s)
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--couples", type=int, default=240)
    p.add_argument("--procs", type=int, default=3)
    p.add_argument("--http-conns", type=int, default=12, help="keep-alive connections per process")
    p.add_argument("--start-rate", type=float, default=300, help="baseline's first step")
    p.add_argument("--relay-pg-start-rate", type=float, default=150)
    p.add_argument("--reach-start-rate", type=float, default=40)
    p.add_argument("--factor", type=float, default=1.3, help="ramp: next step = rate x factor")
    p.add_argument("--max-offered", type=float, default=3000)
    p.add_argument("--step-s", type=float, default=4.0)
    p.add_argument("--fixed-s", type=float, default=8.0)
    p.add_argument("--drain", type=float, default=2.0)
    p.add_argument(
        "--lag-ms",
        type=float,
        default=50.0,
        help="a step is sustained while the last third's median round trip stays under",
    )
    p.add_argument("--bisect", type=int, default=3)
    p.add_argument("--systems", default="baseline,relay-pg,reach-sqlite,reach-pg")
    p.add_argument("--quick", action="store_true", help="1 repetition, short steps (smoke test)")
    args = p.parse_args()
    if args.quick:
        args.reps, args.step_s, args.fixed_s, args.bisect = 1, 2.5, 4.0, 1
    systems = args.systems.split(",")

    servers: dict[str, common.Server] = {}
    couples: dict[str, list[dict[str, str]]] = {}
    result: dict[str, Any] = {"args": vars(args), "reps": []}
    try:
        log("starting servers ...")
        if "baseline" in systems:
            servers["baseline"] = common.start_baseline(PORTS["baseline"])
            couples["baseline"] = [c.to_json() for c in common.baseline_couples(args.couples)]
        if "relay-pg" in systems:
            servers["relay-pg"] = common.start_relay_pg(PORTS["relay-pg"])
            couples["relay-pg"] = [c.to_json() for c in common.baseline_couples(args.couples)]
        if "reach-sqlite" in systems:
            url = common.fresh_sqlite("roundtrip")
            couples["reach-sqlite"] = [c.to_json() for c in common.seed_couples(url, args.couples)]
            servers["reach-sqlite"] = common.start_reach("reach-sqlite", PORTS["reach-sqlite"], url)
        if "reach-pg" in systems:
            url = common.fresh_postgres()
            couples["reach-pg"] = [c.to_json() for c in common.seed_couples(url, args.couples)]
            servers["reach-pg"] = common.start_reach("reach-pg", PORTS["reach-pg"], url)
        up = ", ".join(f"{n} :{s.port} (worker pid {s.worker_pid})" for n, s in servers.items())
        log(f"servers up: {up}")
        runner = Runner(args, servers, couples)

        # Phase 1: max sustained rate, interleaved per repetition.
        for rep in range(args.reps):
            log(f"== max rate, repetition {rep + 1}/{args.reps}")
            rep_out: dict[str, Any] = {"max": {}, "fixed": {}}
            for name in systems:
                quiet = common.wait_quiet()
                gen = runner.loadgen(name)
                try:
                    rep_out["max"][name] = runner.max_rate(name, gen)
                    rep_out["max"][name]["busy_before"] = quiet
                finally:
                    gen.close()
                log(f"  {name}: max sustained {rep_out['max'][name]['max_sustained']}/s")
            result["reps"].append(rep_out)

        maxima = {n: median(r["max"][n]["max_sustained"] for r in result["reps"]) for n in systems}
        result["max_sustained_median"] = maxima
        base_max = maxima.get("baseline") or 400
        fixed_rates: dict[str, list[tuple[str, float]]] = {}
        for name in systems:
            rates = [(f"{q}% of baseline", round(base_max * q / 100)) for q in (25, 50, 75)]
            if name != "baseline" and maxima.get(name):
                rates.append(("50% of own max", round(maxima[name] / 2)))
            fixed_rates[name] = sorted(rates, key=lambda r: r[1])  # saturating steps last

        # Phase 2: fixed rates, interleaved per repetition.
        for rep in range(args.reps):
            log(f"== fixed rates, repetition {rep + 1}/{args.reps}")
            for name in systems:
                quiet = common.wait_quiet()
                gen = runner.loadgen(name)
                try:
                    out = {"busy_before": quiet}
                    for label, rate in fixed_rates[name]:
                        s = runner.step(name, gen, rate, args.fixed_s)
                        s["label"] = label
                        s["sustained"] = sustained(s, args.lag_ms)
                        runner._print_step(name, s)
                        out[label] = s
                        if s["sustained"]:
                            time.sleep(0.5)
                        else:
                            runner.wait_idle(name)
                    result["reps"][rep]["fixed"][name] = out
                finally:
                    gen.close()
        result["summary"] = summarize_all(result, systems, fixed_rates)
    finally:
        for s in servers.values():
            s.stop()
    result["worker_nice"] = common.WORKER_NICE
    if "reach-pg" in systems:
        # Every push of the run, the ramps' included: a worker starved of a core shows here.
        result["push_delay_ms"] = common.push_delay_ms()
        log(f"reach-pg pushes, bid's commit to sent, ms: {result['push_delay_ms']}")
    common.write_result("roundtrip", result)
    print(render(result["summary"]))


def summarize_all(
    result: dict[str, Any], systems: list[str], fixed_rates: dict[str, list[tuple[str, float]]]
) -> dict[str, Any]:
    reps = result["reps"]
    out: dict[str, Any] = {"max": {}, "fixed": []}
    base = result["max_sustained_median"].get("baseline")
    for name in systems:
        vals = [r["max"][name]["max_sustained"] for r in reps]
        peaks = [r["max"][name]["peak_achieved"] for r in reps]
        m = median(vals)
        out["max"][name] = {
            "max_sustained_median": m,
            "max_sustained_runs": vals,
            "peak_achieved_median": median(peaks),
            "ratio_to_baseline": round(m / base, 3) if (m and base) else None,
        }
    for name in systems:
        for label, rate in fixed_rates[name]:
            runs = [r["fixed"][name][label] for r in reps if label in r["fixed"].get(name, {})]
            out["fixed"].append(
                {
                    "system": name,
                    "label": label,
                    "rate": rate,
                    "p50_median": median(s["rtt_p50"] for s in runs),
                    "p99_median": median(s["rtt_p99"] for s in runs),
                    "p99_range": spread(s["rtt_p99"] for s in runs),
                    "post_p50_median": median(s["post_p50"] for s in runs),
                    "achieved_median": median(s["achieved_per_s"] for s in runs),
                    "server_cpu_median": median(s["cpu_cores"].get("server") for s in runs),
                    "loadgen_cpu_median": median(s["cpu_cores"].get("loadgen") for s in runs),
                    "other_cpu_median": median(s["cpu_cores"].get("other") for s in runs),
                    # Runs from before steal was counted apart have none (it was in `other`).
                    "steal_cpu_median": median(
                        s["cpu_cores"]["steal"] for s in runs if "steal" in s["cpu_cores"]
                    ),
                    "machine_cpu_median": median(s["cpu_cores"].get("machine") for s in runs),
                    # Runs from before the run-queue meter have none: None, not a failure.
                    "server_runqueue_ms_per_s_median": median(
                        s["server_runqueue"]["ms_per_s"] for s in runs if "server_runqueue" in s
                    ),
                    "server_runqueue_worst_ms": max(
                        (s["server_runqueue"]["worst_ms"] for s in runs if "server_runqueue" in s),
                        default=None,
                    ),
                }
            )
    return out


def render(summary: dict[str, Any]) -> str:
    lines = ["", "Max sustained rate (bids/s, median of repetitions)"]
    lines.append(
        common.table(
            ["system", "max sustained", "runs", "peak achieved", "ratio to baseline"],
            [
                [
                    n,
                    v["max_sustained_median"],
                    v["max_sustained_runs"],
                    v["peak_achieved_median"],
                    v["ratio_to_baseline"],
                ]
                for n, v in summary["max"].items()
            ],
        )
    )
    lines.append("")
    lines.append("Round trip at fixed rates (ms, medians of repetitions; CPU in cores)")
    lines.append(
        common.table(
            [
                "system",
                "rate",
                "offered/s",
                "achieved/s",
                "p50",
                "p99",
                "p99 range",
                "POST p50",
                "server cpu",
                "loadgen cpu",
                "other cpu",
                "steal",
            ],
            [
                [
                    f["system"],
                    f["label"],
                    f["rate"],
                    f["achieved_median"],
                    f["p50_median"],
                    f["p99_median"],
                    "{:.1f}-{:.1f}".format(*f["p99_range"]) if f["p99_range"][0] else "-",
                    f["post_p50_median"],
                    f["server_cpu_median"],
                    f["loadgen_cpu_median"],
                    f["other_cpu_median"],
                    f["steal_cpu_median"],
                ]
                for f in summary["fixed"]
            ],
        )
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
