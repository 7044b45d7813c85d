"""Target 3: push throughput through firebase-admin (service.push.fcm.FcmBackend.send_batch) to
the local FCM stand-in answering after a fixed 20 ms, against plain HTTP posts (requests, one
Session with a pool of the same size, a thread pool of the same concurrency) of the same
FCM v1 body with the same bearer token to the same stand-in.

The stand-in runs in its own process (bench/fcm_standin_server.py). The senders run in a child
process per mode:
  threads  plain Python threads (a process that is not monkey-patched);
  gevent   gevent.monkey.patch_all() first, as `reach worker` does (service/entry.py): the
           SDK's threads become greenlets.
Per concurrency (16/32/64), repetitions alternate baseline and FcmBackend; each sends
--messages pushes in calls of --batch messages. Ideal = concurrency / 20 ms.

Usage: .venv/bin/python -m bench.bench_push [--messages 2000] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import log, median


def client(args: argparse.Namespace) -> None:
    """Runs in the child: measure both senders, print one JSON line per measurement."""
    if args.mode == "gevent":
        from gevent import monkey

        monkey.patch_all()
    import threading
    import uuid
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from google.oauth2 import service_account

    from service.push import PushMessage
    from service.push.fcm import FcmBackend

    creds_path, url = args.credentials, args.url
    project = json.loads(Path(creds_path).read_text())["project_id"]
    send_url = f"{url}/v1/projects/{project}/messages:send"

    def messages(n: int) -> list[PushMessage]:
        return [
            PushMessage(
                key=f"job{i}:dev",
                device_id=uuid.uuid4(),
                platform="android",
                token=f"tok-{uuid.uuid4().hex}",
                data={"type": "bid.created", "bid_id": str(uuid.uuid4()), "cursor": str(i)},
                collapse_key=f"bid:{uuid.uuid4()}",
                title="Sam is reaching for you",
                body="They're thinking of you.",
                ttl_seconds=86400,
                category="BID",
                extra={"thread_id": "couple:x"},
            )
            for i in range(n)
        ]

    # the baseline's bearer token: the same OAuth exchange, done once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sa = service_account.Credentials.from_service_account_file(
            creds_path, scopes=["https://www.googleapis.com/auth/firebase.messaging"]
        )
        import google.auth.transport.requests as gr

        sa.refresh(gr.Request())
    token = sa.token

    def baseline(conc: int, msgs: list[PushMessage]) -> tuple[float, int]:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=conc)
        session.mount(url + "/", adapter)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        ok = 0
        lock = threading.Lock()

        def post(m: PushMessage) -> None:
            nonlocal ok
            body = {
                "message": {
                    "token": m.token,
                    "data": m.data,
                    "notification": {"title": m.title, "body": m.body},
                    "android": {
                        "collapse_key": m.collapse_key,
                        "priority": "high",
                        "ttl": "86400s",
                        "notification": {"channel_id": "bids"},
                    },
                }
            }
            r = session.post(send_url, data=json.dumps(body), headers=headers, timeout=10)
            if r.status_code == 200:
                with lock:
                    ok += 1

        t = time.perf_counter()
        for i in range(0, len(msgs), args.batch):
            with ThreadPoolExecutor(max_workers=conc) as pool:
                list(pool.map(post, msgs[i : i + args.batch]))
        wall = time.perf_counter() - t
        session.close()
        return wall, ok

    def fcm(conc: int, msgs: list[PushMessage]) -> tuple[float, int]:
        backend = FcmBackend(creds_path, url, max_concurrency=conc, timeout_seconds=10)
        backend.send_batch(msgs[:2])  # OAuth exchange and first connections, not timed
        t = time.perf_counter()
        ok = 0
        for i in range(0, len(msgs), args.batch):
            ok += sum(r.outcome == "sent" for r in backend.send_batch(msgs[i : i + args.batch]))
        wall = time.perf_counter() - t
        backend.close()
        return wall, ok

    import resource

    for conc in args.concurrency:
        for rep in range(args.reps):
            for kind, fn in (("baseline", baseline), ("fcm", fcm)):
                msgs = messages(args.messages)
                cpu0 = resource.getrusage(resource.RUSAGE_SELF)
                wall, ok = fn(conc, msgs)
                cpu1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
                print(
                    json.dumps(
                        {
                            "mode": args.mode,
                            "concurrency": conc,
                            "rep": rep,
                            "kind": kind,
                            "messages": len(msgs),
                            "ok": ok,
                            "wall_s": wall,
                            "per_s": ok / wall,
                            "client_cpu_cores": cpu / wall,
                            "client_cpu_ms_per_msg": cpu * 1000 / max(1, ok),
                        }
                    ),
                    flush=True,
                )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--batch", type=int, default=500, help="messages per send_batch call")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--modes", default="gevent,threads")
    p.add_argument("--delay", type=float, default=0.02)
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="threads", help=argparse.SUPPRESS)
    p.add_argument("--credentials", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        client(args)
        return

    work = common.OUT / "push"
    work.mkdir(parents=True, exist_ok=True)
    creds, url_file = work / "service-account.json", work / "standin.url"
    url_file.unlink(missing_ok=True)
    env = common.base_env()
    standin = common.start_process(
        [
            common.VENV_PY,
            "-m",
            "bench.fcm_standin_server",
            "--delay",
            str(args.delay),
            "--credentials",
            str(creds),
            "--url-file",
            str(url_file),
            "--lifetime",
            "1800",
        ],
        env,
        common.OUT / "logs" / "fcm-standin.log",
        cwd=common.ROOT,
    )
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while not url_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        url = url_file.read_text().strip()
        log(f"FCM stand-in at {url} (pid {standin.pid}), delay {args.delay * 1000:.0f} ms")
        for mode in args.modes.split(","):
            common.wait_quiet()
            cmd = [
                common.VENV_PY,
                "-m",
                "bench.bench_push",
                "--client",
                "--mode",
                mode,
                "--credentials",
                str(creds),
                "--url",
                url,
                "--messages",
                str(args.messages),
                "--batch",
                str(args.batch),
                "--reps",
                str(args.reps),
                "--concurrency",
                *map(str, args.concurrency),
            ]
            import psutil

            sp = psutil.Process(standin.pid)
            proc = subprocess.Popen(
                cmd, env=env, cwd=common.ROOT, stdout=subprocess.PIPE, text=True
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                if not line.startswith("{"):
                    continue
                row = json.loads(line)
                rows.append(row)
                log(
                    f"  {row['mode']:7s} c={row['concurrency']:3d} {row['kind']:8s} "
                    f"{row['per_s']:7.0f}/s ({row['ok']}/{row['messages']} ok) "
                    f"client cpu {row['client_cpu_cores']:.2f} cores, "
                    f"{row['client_cpu_ms_per_msg']:.2f} ms/msg"
                )
            proc.wait(timeout=900)
            log(f"  stand-in CPU so far {sum(sp.cpu_times()[:2]):.1f} s")
    finally:
        common.stop_process(standin)
    summary = []
    for mode in args.modes.split(","):
        for conc in args.concurrency:
            sel = [r for r in rows if r["mode"] == mode and r["concurrency"] == conc]
            b = median(r["per_s"] for r in sel if r["kind"] == "baseline")
            f = median(r["per_s"] for r in sel if r["kind"] == "fcm")
            summary.append(
                {
                    "mode": mode,
                    "concurrency": conc,
                    "ideal_per_s": conc / args.delay,
                    "baseline_per_s": b,
                    "fcm_per_s": f,
                    "ratio": round(f / b, 3) if (b and f) else None,
                    "baseline_cpu_ms_per_msg": median(
                        r["client_cpu_ms_per_msg"] for r in sel if r["kind"] == "baseline"
                    ),
                    "fcm_cpu_ms_per_msg": median(
                        r["client_cpu_ms_per_msg"] for r in sel if r["kind"] == "fcm"
                    ),
                    "fcm_runs": [round(r["per_s"]) for r in sel if r["kind"] == "fcm"],
                    "baseline_runs": [round(r["per_s"]) for r in sel if r["kind"] == "baseline"],
                }
            )
    common.write_result(
        "push",
        {
            "args": {
                k: v
                for k, v in vars(args).items()
                if k not in ("client", "mode", "credentials", "url")
            },
            "runs": rows,
            "summary": summary,
        },
    )
    print()
    print(
        common.table(
            [
                "mode",
                "concurrency",
                "ideal/s",
                "baseline/s",
                "firebase-admin/s",
                "ratio",
                "baseline ms CPU/msg",
                "fcm ms CPU/msg",
                "fcm runs",
            ],
            [
                [
                    s["mode"],
                    s["concurrency"],
                    s["ideal_per_s"],
                    s["baseline_per_s"],
                    s["fcm_per_s"],
                    s["ratio"],
                    s["baseline_cpu_ms_per_msg"],
                    s["fcm_cpu_ms_per_msg"],
                    s["fcm_runs"],
                ]
                for s in summary
            ],
        )
    )


if __name__ == "__main__":
    main()
