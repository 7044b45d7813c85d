"""What sign-ins do to everyone else's bids in the same API process.

A sign-in (and a sign-up) hashes its password with argon2id: tens of milliseconds of CPU by
design. This probe runs Reach on PostgreSQL under gunicorn (one gevent worker, its `reach
worker` beside it), sends bids at a steady `--rate` from four keep-alive connections and times
each POST /bids, first alone for `--seconds`, then as long again with `--signers` clients
signing in back to back (the right password: a session each). Each source runs in a
subprocess of its own, alternated (new, old, old, new, ...), so before and after are measured
in the same run:

    .venv/bin/python -m bench.probe_signins --sources head worktree --reps 2

Sources as in bench_worker: `head`, `worktree`, a source tree or a commit. JSON:
bench/out/signins.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from bench import common
from bench.bench_worker import resolve_source
from bench.common import log

PORT = 7181


def child(out: Path, args: argparse.Namespace) -> None:
    common.fresh_postgres()
    couples = common.seed_couples(common.PG_URL, 40)
    server = common.start_reach("reach-pg", PORT, common.PG_URL)
    try:
        signers = [_register(server.url, n) for n in range(args.signers)]
        result = {
            "alone": _bids(server.url, couples, args, []),
            "with_sign_ins": _bids(server.url, couples, args, signers),
        }
    finally:
        server.stop()
    out.write_text(json.dumps(result, indent=2))


def _register(url: str, n: int) -> dict[str, str]:
    body = {
        "email": f"signer-{n}-{uuid.uuid4().hex[:8]}@bench.example",
        "password": common.PASSWORD,
        "display_name": f"S{n}",
        "timezone": "UTC",
    }
    requests.post(f"{url}/api/v1/auth/register", json=body, timeout=30).raise_for_status()
    return {"email": body["email"], "password": body["password"]}


def _bids(
    url: str, couples: list[common.Couple], args: argparse.Namespace, signers: list[dict[str, str]]
) -> dict[str, Any]:
    """Bids at `args.rate` for `args.seconds` from 4 connections, while `signers` sign in."""
    stop = threading.Event()
    latencies: list[float] = []
    sign_ins: list[float] = []

    def send(k: int) -> None:
        interval = 4 / args.rate
        with requests.Session() as http:
            due = time.perf_counter()
            i = k
            while not stop.is_set():
                couple = couples[i % len(couples)]
                i += 4
                started = time.perf_counter()
                response = http.post(
                    f"{url}/api/v1/bids",
                    headers={"Authorization": f"Bearer {couple.a_token}"},
                    json={"client_id": str(uuid.uuid4()), "kind": "connect"},
                    timeout=30,
                )
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                due += interval
                time.sleep(max(0.0, due - time.perf_counter()))

    def sign_in(credentials: dict[str, str]) -> None:
        with requests.Session() as http:
            while not stop.is_set():
                started = time.perf_counter()
                response = http.post(f"{url}/api/v1/auth/login", json=credentials, timeout=30)
                response.raise_for_status()
                sign_ins.append(time.perf_counter() - started)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=sign_in, args=(who,)) for who in signers]
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join()
    ms = [x * 1000 for x in latencies]
    return {
        "bids": len(ms),
        "bid_p50_ms": common.pct(ms, 50),
        "bid_p99_ms": common.pct(ms, 99),
        "bid_max_ms": max(ms),
        "sign_ins_per_s": len(sign_ins) / args.seconds,
        "sign_in_p50_ms": common.pct([x * 1000 for x in sign_ins], 50) if sign_ins else None,
    }


def run_child(source: str, args: argparse.Namespace) -> dict[str, Any]:
    path, note = resolve_source(source)
    out = common.OUT / "signins" / f"{uuid.uuid4().hex[:8]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BENCH_SRC": str(path),
        "PYTHONPATH": os.pathsep.join([str(path), str(common.ROOT)]),
    }
    cmd = [common.VENV_PY, "-m", "bench.probe_signins", "--child", str(out)]
    cmd += ["--rate", str(args.rate), "--seconds", str(args.seconds)]
    cmd += ["--signers", str(args.signers)]
    log(f"== {source} ({note})")
    done = subprocess.run(cmd, env=env, cwd=str(common.ROOT), timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"the {source} run failed ({done.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    result.update(source=source, source_note=note)
    for phase in ("alone", "with_sign_ins"):
        r = result[phase]
        log(
            f"  {phase}: {r['bids']} bids, p50 {r['bid_p50_ms']:.1f} ms, p99"
            f" {r['bid_p99_ms']:.1f} ms, max {r['bid_max_ms']:.1f} ms;"
            f" {r['sign_ins_per_s']:.1f} sign-ins/s"
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", nargs="+", default=["head", "worktree"])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50.0, help="bids per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="each phase")
    parser.add_argument("--signers", type=int, default=2, help="clients signing in meanwhile")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child), args)
        return
    runs = []
    for rep in range(args.reps):
        order = args.sources if rep % 2 == 0 else list(reversed(args.sources))
        runs += [run_child(source, args) for source in order]
    rows = []
    for r in runs:
        alone, loaded = r["alone"], r["with_sign_ins"]
        rows.append(
            [
                r["source"],
                alone["bid_p50_ms"],
                alone["bid_p99_ms"],
                loaded["bid_p50_ms"],
                loaded["bid_p99_ms"],
                loaded["bid_max_ms"],
                loaded["sign_ins_per_s"],
                loaded["sign_in_p50_ms"],
            ]
        )
    print()
    print(
        f"POST /bids at {args.rate:g}/s, alone and beside {args.signers} client(s) signing in"
        f" ({args.seconds:g} s each), {common.fmt_when()}:"
    )
    print(
        common.table(
            [
                "source",
                "alone p50 ms",
                "alone p99",
                "signing in p50",
                "p99",
                "max",
                "sign-ins/s",
                "sign-in p50 ms",
            ],
            rows,
        )
    )
    common.write_result("signins", {"args": vars(args), "runs": runs})


if __name__ == "__main__":
    main()
