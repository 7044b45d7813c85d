"""Who held the cores while the slow round trips happened.

1b's tail is the API process waiting for a core ("Open finding" in RESULTS.md). This probe says
which of the machine's processes ran, and waited, during each slow spell. It starts Reach on
PostgreSQL with its `reach worker`, connects every couple's recipient, offers `--rate` bids/s for
`--seconds`, `--reps` times, and meanwhile reads every `--period` seconds how long each group of
processes ran and sat runnable but off a core (/proc/PID/task/*/schedstat): the API process,
the worker, PostgreSQL's processes, the load generator and this script. Round trips over
`--slow-ms` that arrived within 100 ms of each other form one spell; for each spell it prints the
groups' running and waiting milliseconds over the spell's window, and, for scale, what the same
groups used per second over the whole step.

Usage: .venv/bin/python -m bench.probe_tail [--rate 295] [--seconds 8] [--reps 4]
           [--slow-ms 25] [--period 0.02]
"""

from __future__ import annotations

import argparse
import bisect
import os
import subprocess
import threading
import time
from typing import Any

from bench import common
from bench.bench_roundtrip import Runner
from bench.common import log

PORT = 7123


def _postgres_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "postgres"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


class CoreSampler:
    """Every `period` s: (time, {group: (ran ns, waited ns)}) for fixed groups of processes;
    PostgreSQL's processes are looked up again every 2 s (its pool may open backends)."""

    def __init__(self, groups: dict[str, list[int]], period: float) -> None:
        self.groups, self.period = groups, period
        self.rows: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self.times: list[float] = []  # each row's time, for bisecting
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="core-sampler", daemon=True)

    def _run(self) -> None:
        postgres, looked = _postgres_pids(), time.monotonic()
        while not self._stop.wait(self.period):
            if time.monotonic() - looked > 2:
                postgres, looked = _postgres_pids(), time.monotonic()
            row = {}
            for group, pids in {**self.groups, "postgres": postgres}.items():
                stats = [common.schedstat(pid) for pid in pids]
                row[group] = (sum(s[0] for s in stats), sum(s[1] for s in stats))
            now = time.time()
            self.rows.append((now, row))
            self.times.append(now)

    def start(self) -> CoreSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _around(self, start: float, end: float) -> tuple[int, int]:
        """The last sample before `start` and the first after `end`."""
        i = max(0, bisect.bisect_left(self.times, start) - 1)
        return i, min(len(self.times) - 1, bisect.bisect_right(self.times, end))

    def used(self, start: float, end: float) -> dict[str, tuple[float, float]]:
        """Each group's (ran ms, waited ms) between the samples around `start` and `end`."""
        i, j = self._around(start, end)
        first, last = self.rows[i][1], self.rows[j][1]
        return {
            g: ((last[g][0] - first[g][0]) / 1e6, (last[g][1] - first[g][1]) / 1e6) for g in last
        }

    def span(self, start: float, end: float) -> float:
        """Milliseconds between the samples around `start` and `end`: the window `used` covers."""
        i, j = self._around(start, end)
        return (self.rows[j][0] - self.rows[i][0]) * 1000


def spells(arrivals: list[tuple[float, float]], slow_ms: float) -> list[list[tuple[float, float]]]:
    """The slow round trips (arrival time, ms), grouped when they arrived within 100 ms."""
    grouped: list[list[tuple[float, float]]] = []
    for at, ms in sorted(a for a in arrivals if a[1] > slow_ms):
        if grouped and at - grouped[-1][-1][0] < 0.1:
            grouped[-1].append((at, ms))
        else:
            grouped.append([(at, ms)])
    return grouped


def _fmt(used: dict[str, tuple[float, float]]) -> str:
    return " ".join(f"{g} {r:.0f}/{w:.0f}" for g, (r, w) in used.items())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=float, default=295.0)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--slow-ms", type=float, default=25.0)
    p.add_argument("--period", type=float, default=0.02)
    p.add_argument("--couples", type=int, default=240)
    args = p.parse_args()
    url = common.fresh_postgres()
    couples = [c.to_json() for c in common.seed_couples(url, args.couples)]
    server = common.start_reach("reach-pg", PORT, url)
    runner = Runner(
        argparse.Namespace(procs=3, http_conns=12, drain=1.0),
        {"reach-pg": server},
        {"reach-pg": couples},
    )
    gen = runner.loadgen("reach-pg")
    groups = {
        "api": [server.worker_pid],
        "worker": [proc.pid for proc in server.extra],
        "loadgen": gen.pids,
        "probe": [os.getpid()],
    }
    sampler = CoreSampler(groups, args.period).start()
    steps: list[dict[str, Any]] = []
    try:
        runner.step("reach-pg", gen, args.rate / 2, 3.0)  # warm-up, not counted
        for rep in range(args.reps):
            common.wait_quiet()
            began = time.time()
            raw = gen.step(runner.tag + 1, args.rate, args.seconds, drain=1.0)
            runner.tag += 1
            ended = time.time()
            arrivals = list(zip(raw["arrived_at"], raw["rtt_ms"], strict=True))
            whole = sampler.used(began, ended)
            per_s = {g: (r / (ended - began), w / (ended - began)) for g, (r, w) in whole.items()}
            slow = spells(arrivals, args.slow_ms)
            rtts = sorted(raw["rtt_ms"])
            p99 = common.pct(rtts, 99)
            log(
                f"  {rep + 1}/{args.reps}: {len(rtts)} round trips, p99 {p99 or 0:.1f} ms, "
                f"{sum(len(s) for s in slow)} over {args.slow_ms:g} ms in {len(slow)} spells; "
                f"ms ran/waited per second: {_fmt(per_s)}"
            )
            found = []
            for spell in slow:
                start = min(at - ms / 1000 for at, ms in spell)
                end = max(at for at, _ in spell)
                used, span = sampler.used(start, end), sampler.span(start, end)
                found.append(
                    {
                        "round_trips": len(spell),
                        "max_ms": round(max(ms for _, ms in spell), 1),
                        "window_ms": round(span),
                        "ran_waited_ms": {g: (round(r), round(w)) for g, (r, w) in used.items()},
                    }
                )
                log(
                    f"    {len(spell):4d} slow, max {max(ms for _, ms in spell):6.1f} ms, "
                    f"window {span:5.0f} ms, ms ran/waited: {_fmt(used)}"
                )
            steps.append(
                {
                    "p99": p99,
                    "round_trips": len(rtts),
                    "per_second": {g: (round(r, 1), round(w, 1)) for g, (r, w) in per_s.items()},
                    "spells": found,
                }
            )
    finally:
        sampler.stop()
        gen.close()
        server.stop()
    common.write_result(
        "probe_tail", {"args": vars(args), "source": common.SRC_NOTE, "steps": steps}
    )


if __name__ == "__main__":
    main()
