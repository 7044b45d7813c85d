"""Who held the cores while the slow round trips happened.

1b's tail is the API process waiting for a core ("Open finding" in RESULTS.md). This probe says
which of the machine's processes ran, and waited, during each slow spell. It starts Reach on
PostgreSQL with its `reach worker`, connects every couple's recipient, offers `--rate` bids/s for
`--seconds`, `--reps` times, and meanwhile reads every `--period` seconds how long each group of
processes ran and sat runnable but off a core (/proc/PID/task/*/schedstat): the API process,
the worker, PostgreSQL's processes, the load generator and this script. Round trips over
`--slow-ms` that arrived within 100 ms of each other form one spell; for each spell it prints the
groups' running and waiting milliseconds over the spell's window, and, for scale, what the same
groups used per second over the whole step. It reads the disk under PostgreSQL's data directory
as often (/proc/diskstats: writes, cache flushes, their mean times, requests in flight), so a
spell spent waiting on a commit's flush shows as slow writes rather than as a wait for a core.

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
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

from bench import common
from bench.bench_roundtrip import Runner
from bench.common import log

PORT = 7123
S = TypeVar("S")


def _postgres_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "postgres"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


class Sampler(ABC, Generic[S]):
    """Every `period` s, on a thread of its own: (time, `sample()`)."""

    name = "sampler"

    def __init__(self, period: float) -> None:
        self.period = period
        self.rows: list[tuple[float, S]] = []
        self.times: list[float] = []  # each row's time, for bisecting
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    @abstractmethod
    def sample(self) -> S:
        """One row: what the subclass reads at each period."""

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            row = self.sample()
            now = time.time()
            self.rows.append((now, row))
            self.times.append(now)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _around(self, start: float, end: float) -> tuple[int, int]:
        """The last sample before `start` and the first after `end`."""
        i = max(0, bisect.bisect_left(self.times, start) - 1)
        return i, min(len(self.times) - 1, bisect.bisect_right(self.times, end))

    def span(self, start: float, end: float) -> float:
        """Milliseconds between the samples around `start` and `end`: the window `used` covers."""
        i, j = self._around(start, end)
        return (self.rows[j][0] - self.rows[i][0]) * 1000


class CoreSampler(Sampler[dict[str, tuple[int, int]]]):
    """{group: (ran ns, waited ns)} for fixed groups of processes; PostgreSQL's processes are
    looked up again every 2 s (its pool may open backends)."""

    name = "core-sampler"

    def __init__(self, groups: dict[str, list[int]], period: float) -> None:
        super().__init__(period)
        self.groups = groups
        self._postgres, self._looked = _postgres_pids(), time.monotonic()

    def sample(self) -> dict[str, tuple[int, int]]:
        if time.monotonic() - self._looked > 2:
            self._postgres, self._looked = _postgres_pids(), time.monotonic()
        row = {}
        for group, pids in {**self.groups, "postgres": self._postgres}.items():
            stats = [common.schedstat(pid) for pid in pids]
            row[group] = (sum(s[0] for s in stats), sum(s[1] for s in stats))
        return row

    def used(self, start: float, end: float) -> dict[str, tuple[float, float]]:
        """Each group's (ran ms, waited ms) between the samples around `start` and `end`."""
        i, j = self._around(start, end)
        first, last = self.rows[i][1], self.rows[j][1]
        return {
            g: ((last[g][0] - first[g][0]) / 1e6, (last[g][1] - first[g][1]) / 1e6) for g in last
        }


class DiskSampler(Sampler[tuple[int, ...]]):
    """/proc/diskstats of the disk holding PostgreSQL's data directory: writes and cache flushes
    completed, the milliseconds spent on each, requests in flight. A WAL flush (every bid
    commits) that waits behind other writes shows as a window whose writes or flushes took long
    on average."""

    name = "disk-sampler"

    def __init__(self, period: float) -> None:
        super().__init__(period)
        data = common.psql("show data_directory").strip()
        device = os.stat(data).st_dev
        self.disk = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}").resolve().name

    def sample(self) -> tuple[int, ...]:
        """Writes, ms writing, in flight, flushes, ms flushing."""
        with open("/proc/diskstats") as stats:
            for line in stats:
                fields = [*line.split(), "0", "0"]  # kernels before 5.5 count no flushes
                if fields[2] == self.disk:
                    return tuple(int(fields[k]) for k in (7, 10, 11, 18, 19))
        raise RuntimeError(f"{self.disk} is not in /proc/diskstats")

    def used(self, start: float, end: float) -> dict[str, float]:
        """Writes completed and their mean milliseconds, cache flushes (what an fdatasync waits
        for) and theirs, and the most requests in flight, between the samples around `start` and
        `end`."""
        i, j = self._around(start, end)
        first, last = self.rows[i][1], self.rows[j][1]
        writes, flushes = last[0] - first[0], last[3] - first[3]
        return {
            "writes": writes,
            "write_ms_mean": round((last[1] - first[1]) / writes, 1) if writes else 0.0,
            "flushes": flushes,
            "flush_ms_mean": round((last[4] - first[4]) / flushes, 1) if flushes else 0.0,
            "in_flight_max": max(row[1][2] for row in self.rows[i : j + 1]),
        }


def _fmt_disk(disk: dict[str, float]) -> str:
    return (
        f"disk {disk['writes']:.0f} writes of {disk['write_ms_mean']:.1f} ms,"
        f" {disk['flushes']:.0f} flushes of {disk['flush_ms_mean']:.1f} ms,"
        f" <= {disk['in_flight_max']:.0f} in flight"
    )


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
    disk = DiskSampler(args.period).start()
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
            disk_whole = disk.used(began, ended)
            log(
                f"  {rep + 1}/{args.reps}: {len(rtts)} round trips, p99 {p99 or 0:.1f} ms, "
                f"{sum(len(s) for s in slow)} over {args.slow_ms:g} ms in {len(slow)} spells; "
                f"ms ran/waited per second: {_fmt(per_s)}; {_fmt_disk(disk_whole)}"
            )
            found = []
            for spell in slow:
                start = min(at - ms / 1000 for at, ms in spell)
                end = max(at for at, _ in spell)
                used, span = sampler.used(start, end), sampler.span(start, end)
                disk_used = disk.used(start, end)
                found.append(
                    {
                        "round_trips": len(spell),
                        "max_ms": round(max(ms for _, ms in spell), 1),
                        "window_ms": round(span),
                        "ran_waited_ms": {g: (round(r), round(w)) for g, (r, w) in used.items()},
                        "disk": disk_used,
                    }
                )
                log(
                    f"    {len(spell):4d} slow, max {max(ms for _, ms in spell):6.1f} ms, "
                    f"window {span:5.0f} ms, ms ran/waited: {_fmt(used)}; {_fmt_disk(disk_used)}"
                )
            steps.append(
                {
                    "p99": p99,
                    "round_trips": len(rtts),
                    "per_second": {g: (round(r, 1), round(w, 1)) for g, (r, w) in per_s.items()},
                    "spells": found,
                    "disk": disk_whole,
                }
            )
    finally:
        sampler.stop()
        disk.stop()
        gen.close()
        server.stop()
    common.write_result(
        "probe_tail", {"args": vars(args), "source": common.SRC_NOTE, "steps": steps}
    )


if __name__ == "__main__":
    main()
