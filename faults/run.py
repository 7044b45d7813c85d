"""Fault suite: simulated phones write bids, responses and repair messages with client_ids against
the loopback topology (nginx + 2 API processes + worker, PostgreSQL and Redis behind cuttable TCP
proxies, FCM stand-in) while a driver kills the worker, restarts an API process and cuts Redis and
PostgreSQL. Afterwards every phone syncs from cursor 0 and a checker reports lost, duplicated and
out-of-order writes, and pushes expected vs received.

    .venv/bin/python -m faults.run [--couples 10] [--target-ops 5000] [--max-load 200]

Writes faults/out/summary-<stamp>.json (and faults/out/latest.json) and prints a table.
Exit status: 0 when nothing was lost, duplicated, out of order or unpushed; 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import socketio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fcm_standin import FcmStandIn  # noqa: E402
from tests.support.tcp_proxy import TcpProxy  # noqa: E402

SCRIPT = ROOT / "deploy" / "local" / "topology.sh"
OUT = ROOT / "faults" / "out"
NGINX, API1, API2 = 8381, 8301, 8302
PASSWORD = "correct horse battery staple"
T0 = time.monotonic()


def now() -> float:
    return round(time.monotonic() - T0, 2)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{now():7.1f}s] {msg}", flush=True)


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


# --- topology ------------------------------------------------------------------------------------


class Topology:
    def __init__(self, env: dict[str, str], state: Path) -> None:
        self.env, self.state = env, state

    def run(self, *args: str, timeout: float = 150) -> tuple[int, str]:
        r = subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return r.returncode, (r.stdout + r.stderr)

    def pid(self, name: str) -> int | None:
        try:
            return int((self.state / "run" / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def process_env(self, name: str) -> dict[str, str]:
        pid = self.pid(name)
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return {}
        pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def ready(port: int) -> int:
    try:
        return requests.get(f"{url(port)}/readyz", timeout=3).status_code
    except requests.RequestException:
        return 0


# --- phones --------------------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.c: collections.Counter[str] = collections.Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.c[key] += n


class Couple:
    def __init__(self, index: int) -> None:
        self.index = index
        self.phones: list[PhoneSim] = []
        self.repairs: list[str] = []
        self.lock = threading.Lock()
        # bids waiting for a response, by recipient user id
        self.pending: dict[str, list[str]] = collections.defaultdict(list)


class PhoneSim:
    def __init__(
        self,
        name: str,
        couple: Couple,
        user: dict[str, Any],
        tokens: dict[str, str],
        seed: int,
        stats: Stats,
    ) -> None:
        self.name, self.couple, self.user = name, couple, user
        self.access, self.refresh = tokens["access_token"], tokens["refresh_token"]
        self.rng = random.Random(seed)
        self.stats = stats
        self.push_token = f"faults-{name}-{uuid.uuid4().hex}"
        self.device_id: str | None = None
        self.sessions = {p: requests.Session() for p in (NGINX, API1, API2)}
        for s in self.sessions.values():
            s.cookies.set("reach_affinity", name)
        self.ops: list[dict[str, Any]] = []
        self.socket_cursors: set[int] = set()
        self.socket_events = 0
        self.sio_lock = threading.Lock()
        self.sio = self._new_client()
        # some phones post mostly directly to one API process, the rest through nginx
        mode = zlib.crc32(name.encode()) % 3
        self.bases = {0: [NGINX], 1: [API1, NGINX], 2: [API2, NGINX]}[mode]

    @property
    def id(self) -> str:
        return str(self.user["id"])

    def _new_client(self) -> socketio.Client:
        c = socketio.Client(reconnection=True, reconnection_delay=0.3, reconnection_delay_max=2)

        def on_any(event: str, data: Any = None) -> None:
            self.socket_events += 1
            if isinstance(data, dict) and isinstance(data.get("cursor"), int):
                self.socket_cursors.add(data["cursor"])

        c.on("*", on_any)
        return c

    def connect(self) -> bool:
        with self.sio_lock:
            if self.sio.connected:
                return True
            try:
                self.sio.connect(
                    url(NGINX),
                    auth={"token": self.access},
                    transports=["websocket"],
                    headers={"Cookie": f"reach_affinity={self.name}"},
                    wait_timeout=5,
                )
                self.stats.add("socket_connects")
                return True
            except Exception:
                self.stats.add("socket_connect_failures")
                # a client that failed mid-connect is not always reusable: start a new one
                with contextlib.suppress(Exception):
                    self.sio.disconnect()
                self.sio = self._new_client()
                return False

    def disconnect(self) -> None:
        with self.sio_lock:
            try:
                if self.sio.connected:
                    self.sio.disconnect()
                    self.stats.add("socket_disconnects_random")
            except Exception:
                pass

    def http(self, method: str, path: str, port: int | None = None, **kw: Any) -> requests.Response:
        port = port or NGINX
        headers = {"Authorization": f"Bearer {self.access}"}
        return self.sessions[port].request(
            method, url(port) + path, headers=headers, timeout=kw.pop("timeout", 6), **kw
        )

    # -- writes with retries ---------------------------------------------------------------------

    def _send_until_ok(
        self, op: dict[str, Any], path: str, body: dict[str, Any], deadline: float
    ) -> dict[str, Any] | None:
        """POST until 200/201, retrying network errors, 5xx and 429 with the same client_id."""
        delay = 0.1
        while True:
            port = self.rng.choice(self.bases)
            op["attempts"] += 1
            self.stats.add("http_requests")
            try:
                r = self.http("POST", path, port, json=body)
            except requests.RequestException as exc:
                op["errors"].append(f"{now()}:{port}:net:{type(exc).__name__}")
                self.stats.add("retry_network")
            else:
                if r.status_code in (200, 201):
                    op["statuses"].append(r.status_code)
                    return dict(r.json())
                if r.status_code == 429 or r.status_code >= 500:
                    op["errors"].append(f"{now()}:{port}:{r.status_code}")
                    self.stats.add(f"retry_http_{r.status_code}")
                else:
                    op["errors"].append(f"{now()}:{port}:{r.status_code}:{r.text[:200]}")
                    op["rejected"] = r.status_code
                    self.stats.add(f"rejected_{r.status_code}")
                    return None
            if time.monotonic() > deadline:
                return None
            time.sleep(delay * (0.5 + self.rng.random()))
            delay = min(delay * 2, 2.0)

    def write(self, kind: str, path: str, body: dict[str, Any], extract: Any) -> None:
        op: dict[str, Any] = {
            "kind": kind,
            "client_id": body["client_id"],
            "phone": self.name,
            "couple": self.couple.index,
            "path": path,
            "started": now(),
            "attempts": 0,
            "statuses": [],
            "errors": [],
            "server_id": None,
            "extra_ids": [],
            "rejected": None,
            "dup_sends": 0,
        }
        self.ops.append(op)
        deadline = time.monotonic() + 90
        first = self._send_until_ok(op, path, body, deadline)
        if first is None:
            op["result"] = "rejected" if op["rejected"] else "unconfirmed"
            return
        op["server_id"], op["detail"] = extract(first)
        op["result"] = "ok"
        op["confirmed"] = now()
        self.stats.add(f"ok_{kind}")
        if op["statuses"][0] == 200:
            # the first success was a retry: an earlier attempt committed but its answer was lost
            self.stats.add("first_success_was_200")
        # duplicate retries: the same client_id 1-2 more times
        if self.rng.random() < 0.3:
            for _ in range(self.rng.randint(1, 2)):
                op["dup_sends"] += 1
                self.stats.add("duplicate_sends")
                again = self._send_until_ok(op, path, body, time.monotonic() + 60)
                if again is not None:
                    sid, _ = extract(again)
                    if sid != op["server_id"]:
                        op["extra_ids"].append(sid)
        return

    def send_bid(self) -> None:
        cid = str(uuid.uuid4())
        kind = self.rng.choice(["comfort", "connect", "share", "help"])

        def extract(b: dict[str, Any]) -> tuple[str, Any]:
            return str(b["id"]), {"recipient_id": b.get("recipient_id")}

        self.write(
            "bid", "/api/v1/bids", {"client_id": cid, "kind": kind, "note": f"n-{cid[:8]}"}, extract
        )
        op = self.ops[-1]
        if op["result"] == "ok" and op["detail"]["recipient_id"]:
            with self.couple.lock:
                self.couple.pending[op["detail"]["recipient_id"]].append(op["server_id"])

    def respond(self) -> bool:
        with self.couple.lock:
            queue = self.couple.pending.get(self.id)
            if not queue:
                return False
            bid_id = queue.pop(self.rng.randrange(len(queue)))
        cid = str(uuid.uuid4())

        def extract(b: dict[str, Any]) -> tuple[str, Any]:
            match = [r for r in b.get("responses", []) if r.get("client_id") == cid]
            return (str(match[0]["id"]) if match else f"missing-in-answer:{b['id']}"), {
                "bid_id": str(b["id"])
            }

        self.write(
            "response",
            f"/api/v1/bids/{bid_id}/responses",
            {"client_id": cid, "kind": "toward", "note": "on my way"},
            extract,
        )
        return True

    def send_message(self) -> None:
        repair = self.rng.choice(self.couple.repairs)
        cid = str(uuid.uuid4())

        def extract(m: dict[str, Any]) -> tuple[str, Any]:
            return str(m["id"]), {"repair_id": str(m["repair_id"]), "seq": m["seq"]}

        written_at = datetime.now(UTC).isoformat()
        self.write(
            "repair_message",
            f"/api/v1/repairs/{repair}/messages",
            {
                "client_id": cid,
                "body": f"message {cid[:8]} from {self.name}",
                "written_at": written_at,
            },
            extract,
        )

    def loop(self, stop: threading.Event) -> None:
        next_disconnect = self.rng.randint(10, 40)
        done = 0
        while not stop.is_set():
            if not self.sio.connected and self.rng.random() < 0.3:
                self.connect()
            r = self.rng.random()
            try:
                if r < 0.2 and self.respond():
                    pass
                elif r < 0.6:
                    self.send_bid()
                else:
                    self.send_message()
            except Exception as exc:  # a bug in the harness must not end the phone silently
                self.stats.add("harness_exceptions")
                log(f"{self.name}: harness exception {exc!r}")
                time.sleep(0.5)
            done += 1
            if done >= next_disconnect:
                next_disconnect = done + self.rng.randint(10, 40)
                self.disconnect()
                time.sleep(self.rng.uniform(0.2, 1.5))
                self.connect()

    def sync_all(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        since = 0
        for _ in range(1000):
            for _attempt in range(20):
                try:
                    r = self.http(
                        "GET", "/api/v1/sync", params={"since": since, "limit": 1000}, timeout=20
                    )
                    if r.status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.5)
            else:
                raise RuntimeError(f"{self.name}: sync since={since} kept failing")
            page = r.json()
            events.extend(page["events"])
            since = page["next"]
            if not page["has_more"]:
                return events
        raise RuntimeError("too many sync pages")


# --- setup ---------------------------------------------------------------------------------------


def must(r: requests.Response, *codes: int) -> dict[str, Any]:
    if r.status_code not in codes:
        raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}")
    return dict(r.json())


def make_couples(n: int, stats: Stats, seed: int) -> list[Couple]:
    s = requests.Session()
    couples = []
    for i in range(n):
        couple = Couple(i)
        people = []
        for side in ("a", "b"):
            email = f"faults-{i}{side}-{uuid.uuid4().hex[:6]}@example.test"
            body = must(
                s.post(
                    f"{url(NGINX)}/api/v1/auth/register",
                    json={
                        "email": email,
                        "password": PASSWORD,
                        "display_name": f"P{i}{side}",
                        "timezone": "Europe/Berlin",
                    },
                    timeout=10,
                ),
                201,
            )
            people.append(body)
        a, b = people
        h = {"Authorization": f"Bearer {a['access_token']}"}
        code = must(s.post(f"{url(NGINX)}/api/v1/couple/invites", headers=h, timeout=10), 201)[
            "code"
        ]
        must(
            s.post(
                f"{url(NGINX)}/api/v1/couple/join",
                json={"code": code},
                headers={"Authorization": f"Bearer {b['access_token']}"},
                timeout=10,
            ),
            201,
        )
        for side, p in zip(("a", "b"), people, strict=False):
            phone = PhoneSim(
                f"c{i}{side}", couple, p["user"], p, seed * 1000 + i * 2 + (side == "b"), stats
            )
            dev = must(
                phone.http(
                    "POST",
                    "/api/v1/devices",
                    json={
                        "platform": "android" if side == "a" else "ios",
                        "push_token": phone.push_token,
                        "app_version": "1.0.0",
                        "locale": "en-US",
                    },
                ),
                201,
                200,
            )
            phone.device_id = dev["id"]
            couple.phones.append(phone)
        for k in range(2):
            starter = couple.phones[k]
            rep = must(
                starter.http(
                    "POST",
                    "/api/v1/repairs",
                    json={"client_id": str(uuid.uuid4()), "topic": f"topic {k}"},
                ),
                201,
            )
            couple.repairs.append(str(rep["id"]))
        couples.append(couple)
    return couples


# --- faults --------------------------------------------------------------------------------------


class FaultDriver(threading.Thread):
    def __init__(
        self,
        topo: Topology,
        pg: TcpProxy,
        rd: TcpProxy,
        schedule: list[tuple[float, str]],
        cut_seconds: float,
        load_started: float,
    ) -> None:
        super().__init__(daemon=True)
        self.topo, self.pg, self.rd = topo, pg, rd
        self.schedule, self.cut = schedule, cut_seconds
        self.load_started = load_started
        self.records: list[dict[str, Any]] = []
        self.done = threading.Event()

    def _record(self, name: str, started: float, ok: bool, note: str) -> None:
        rec = {
            "fault": name,
            "t_start_s": started,
            "wall_start": self.wall,
            "t_end_s": now(),
            "t_start_load_s": round(started - self.load_started, 2),
            "ok": ok,
            "note": note.strip()[-600:],
        }
        self.records.append(rec)
        log(
            f"FAULT {name}: {'ok' if ok else 'FAILED'} ({rec['t_end_s'] - started:.1f}s) "
            f"{note.strip().splitlines()[-1] if note.strip() else ''}"
        )

    def run(self) -> None:
        try:
            for at, name in self.schedule:
                while now() - self.load_started < at:
                    time.sleep(0.1)
                started = now()
                self.wall = datetime.now(UTC).isoformat(timespec="seconds")
                log(f"FAULT {name} ...")
                if name == "kill-worker":
                    rc, out = self.topo.run("kill-worker")
                    self._record(name, started, rc == 0, out)
                elif name == "start-worker":
                    rc, out = self.topo.run("start-worker")
                    self._record(name, started, rc == 0, out)
                elif name == "restart-api-1":
                    rc, out = self.topo.run("restart-api", "1")
                    self._record(name, started, rc == 0, out)
                elif name in ("cut-redis", "cut-postgres"):
                    proxy = self.rd if name == "cut-redis" else self.pg
                    proxy.down()
                    time.sleep(self.cut)
                    proxy.up()
                    self._record(name, started, True, f"proxy down {self.cut}s, then up")
                rc, out = self.topo.run("status", timeout=30)
                if rc != 0:
                    self.records[-1]["status_after"] = out.strip()
                    log(f"status after {name}: not all healthy yet:\n{out.strip()}")
        finally:
            self.done.set()


# --- checker -------------------------------------------------------------------------------------


def check(
    couples: list[Couple], streams: dict[str, list[dict[str, Any]]], pushes: list[dict[str, Any]]
) -> dict[str, Any]:
    res: dict[str, Any] = collections.defaultdict(int)
    findings: list[dict[str, Any]] = []
    push_seen: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for m in pushes:
        d = m.get("data", {})
        if d.get("type") == "bid.created":
            push_seen[(m.get("token", ""), "bid.created", d.get("bid_id", ""))] += 1
        elif d.get("type") == "repair.message":
            push_seen[
                (m.get("token", ""), "repair.message", f"{d.get('repair_id')}#{d.get('seq')}")
            ] += 1
    expected_push: set[tuple[str, str, str]] = set()

    for couple in couples:
        token_of = {p.id: p.push_token for p in couple.phones}
        ops = [op for p in couple.phones for op in p.ops]
        for phone in couple.phones:
            ev = streams[phone.name]
            cursors = [e["cursor"] for e in ev]
            if cursors != list(range(1, len(cursors) + 1)):
                res["cursor_not_contiguous"] += 1
                findings.append(
                    {
                        "what": "cursors not contiguous 1..N",
                        "phone": phone.name,
                        "first_bad": next((i + 1, c) for i, c in enumerate(cursors) if c != i + 1),
                    }
                )
            by_type: dict[str, collections.Counter[str]] = collections.defaultdict(
                collections.Counter
            )
            client_ids: dict[str, dict[str, set[str]]] = collections.defaultdict(
                lambda: collections.defaultdict(set)
            )
            last_seq: dict[str, int] = {}
            latest_bid: dict[str, dict[str, Any]] = {}
            for e in ev:
                t, d = e["type"], e["data"]
                if t.startswith("bid."):
                    latest_bid[d["id"]] = d
                if t in ("bid.created", "repair.message"):
                    by_type[t][d["id"]] += 1
                    client_ids[t][d["client_id"]].add(d["id"])
                if t == "repair.message":
                    prev = last_seq.get(d["repair_id"], 0)
                    if d["seq"] <= prev:
                        res["repair_seq_out_of_order"] += 1
                        findings.append(
                            {
                                "what": "repair seq not increasing",
                                "phone": phone.name,
                                "repair": d["repair_id"],
                                "prev": prev,
                                "seq": d["seq"],
                                "cursor": e["cursor"],
                            }
                        )
                    elif d["seq"] != prev + 1:
                        res["repair_seq_gaps"] += 1
                        findings.append(
                            {
                                "what": "repair seq gap",
                                "phone": phone.name,
                                "repair": d["repair_id"],
                                "prev": prev,
                                "seq": d["seq"],
                            }
                        )
                    last_seq[d["repair_id"]] = d["seq"]
                    partner = next(p for p in couple.phones if p.id != d["author_id"])
                    expected_push.add(
                        (partner.push_token, "repair.message", f"{d['repair_id']}#{d['seq']}")
                    )
                if t == "bid.created":
                    expected_push.add((token_of[d["recipient_id"]], "bid.created", d["id"]))
            for t, counts in by_type.items():
                for rid, n in counts.items():
                    if n > 1:
                        res["same_resource_twice_in_stream"] += 1
                        findings.append(
                            {
                                "what": f"{t} twice in stream",
                                "phone": phone.name,
                                "id": rid,
                                "times": n,
                            }
                        )
                for cid, ids in client_ids[t].items():
                    if len(ids) > 1:
                        res["client_id_two_resources_in_stream"] += 1
                        findings.append(
                            {
                                "what": f"client_id -> {len(ids)} {t} resources",
                                "phone": phone.name,
                                "client_id": cid,
                                "ids": sorted(ids),
                            }
                        )
            created = set(by_type["bid.created"])
            messages = set(by_type["repair.message"])
            for op in ops:
                if op["result"] != "ok":
                    continue
                if op["kind"] == "bid":
                    present = op["server_id"] in created
                elif op["kind"] == "repair_message":
                    present = op["server_id"] in messages
                else:
                    bid = latest_bid.get(op["detail"]["bid_id"], {})
                    present = any(
                        r.get("client_id") == op["client_id"]
                        and str(r.get("id")) == op["server_id"]
                        for r in bid.get("responses", [])
                    )
                if not present:
                    res[f"lost_{op['kind']}"] += 1
                    findings.append(
                        {
                            "what": f"lost {op['kind']}",
                            "phone_checked": phone.name,
                            "writer": op["phone"],
                            "client_id": op["client_id"],
                            "server_id": op["server_id"],
                            "statuses": op["statuses"],
                            "errors": op["errors"][-5:],
                        }
                    )
        for op in ops:
            if op["extra_ids"]:
                res["client_id_two_resources_on_retry"] += 1
                findings.append(
                    {
                        "what": "retry with same client_id returned another resource",
                        "kind": op["kind"],
                        "client_id": op["client_id"],
                        "first": op["server_id"],
                        "others": op["extra_ids"],
                    }
                )
        a, b = (streams[p.name] for p in couple.phones)
        if [e["cursor"] for e in a] != [e["cursor"] for e in b] or [e["type"] for e in a] != [
            e["type"] for e in b
        ]:
            res["partner_streams_differ"] += 1
            findings.append(
                {"what": "the two phones of a couple got different streams", "couple": couple.index}
            )
        res["events_in_streams"] += len(a)

    missing_all = sorted(k for k in expected_push if push_seen[k] == 0)
    # A bid push still in the outbox when the bid is answered is withdrawn by design
    # (docs/mobile.md, "Quiet hours and withdrawn pushes"). Excuse a missing bid push only when
    # the database says exactly that: its push job is 'cancelled' and the bid is answered.
    withdrawn = withdrawn_bid_pushes([k[2] for k in missing_all if k[1] == "bid.created"])
    missing = [k for k in missing_all if not (k[1] == "bid.created" and k[2] in withdrawn)]
    res["pushes_withdrawn_bid_answered_first"] = len(missing_all) - len(missing)
    res["pushes_expected"] = len(expected_push)
    res["pushes_received_distinct"] = len(expected_push) - len(missing_all)
    res["pushes_missing"] = len(missing)
    res["push_sends_total"] = len(pushes)
    res["push_expected_sent_more_than_once"] = sum(1 for k in expected_push if push_seen[k] > 1)
    res["push_unexpected"] = sum(1 for k in push_seen if k not in expected_push)
    for k in missing[:50]:
        findings.append({"what": "push missing", "token": k[0][:40], "type": k[1], "ref": k[2]})
    return {"counts": dict(res), "findings": findings, "missing_pushes_sample": missing[:50]}


def withdrawn_bid_pushes(bid_ids: list[str]) -> set[str]:
    """Bid ids whose push job was cancelled because the bid was answered (read from PostgreSQL
    directly, not through the proxy)."""
    if not bid_ids:
        return set()
    ids = ",".join(f"'{b}'" for b in bid_ids if all(ch in "0123456789abcdef-" for ch in b))
    sql = (
        "SELECT b.id FROM push_jobs j JOIN bids b ON b.id = (j.payload->'data'->>'bid_id')::uuid "
        f"WHERE j.state = 'cancelled' AND b.responded_at IS NOT NULL AND b.id IN ({ids})"
    )
    r = subprocess.run(
        ["psql", "postgresql://postgres@127.0.0.1:5432/reach_faults", "-Atc", sql],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return set(r.stdout.split())


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--couples", type=int, default=10)
    ap.add_argument("--target-ops", type=int, default=5000)
    ap.add_argument("--min-load", type=float, default=115.0)
    ap.add_argument("--max-load", type=float, default=200.0)
    ap.add_argument("--settle", type=float, default=120.0)
    ap.add_argument("--cut-seconds", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tmp = Path(tempfile.mkdtemp(prefix="reach-faults-"))
    state = tmp / "topology"
    stats = Stats()
    summary: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args),
    }

    standin = FcmStandIn().start()
    pg = TcpProxy("127.0.0.1", 5432).up()
    rd = TcpProxy("127.0.0.1", 6379).up()
    limits = {
        "RATELIMIT_BIDS": "100000 per minute",
        "RATELIMIT_REPAIRS": "100000 per minute",
        "RATELIMIT_AUTH": "100000 per minute",
        "RATELIMIT_AUTH_EMAIL": "100000 per minute",
        "RATELIMIT_JOIN": "100000 per hour",
        "RATELIMIT_JOIN_ADDRESS": "100000 per hour",
    }
    env = {
        **os.environ,
        "TOPOLOGY_DIR": str(state),
        "NGINX_PORT": str(NGINX),
        "API1_PORT": str(API1),
        "API2_PORT": str(API2),
        "TOPOLOGY_PG": f"postgresql://postgres@127.0.0.1:{pg.port}",
        "TOPOLOGY_DB": "reach_faults",
        "TOPOLOGY_REDIS": f"redis://127.0.0.1:{rd.port}",
        "TOPOLOGY_REDIS_DB": "12",
        "TOPOLOGY_FRESH": "1",
        "PUSH_BACKEND": "fcm",
        "FIREBASE_CREDENTIALS": str(standin.write_credentials(tmp / "sa.json")),
        "FCM_ENDPOINT": standin.url,
        "GUNICORN_GRACEFUL_TIMEOUT": "3",
        "LOG_LEVEL": "WARNING",
        "ACCESS_TOKEN_SECONDS": "3600",
        **limits,
        # python-socketio sends Origin: <the URL it connects to>; the service checks origins.
        "ALLOWED_ORIGINS": url(NGINX),
    }
    for name in ("DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL"):
        env.pop(name, None)
    topo = Topology(env, state)
    phones: list[PhoneSim] = []
    exit_code = 2
    try:
        log(f"starting topology (state {state}, pg proxy :{pg.port}, redis proxy :{rd.port}) ...")
        rc, out = topo.run("start")
        if rc != 0:
            print(out)
            raise RuntimeError("topology start failed")
        log("topology up")
        penv = topo.process_env("api1")
        summary["ratelimit_env_in_api1"] = {k: penv.get(k) for k in limits}
        log(f"RATELIMIT_* seen in api1's environment: {summary['ratelimit_env_in_api1']}")

        couples = make_couples(args.couples, stats, args.seed)
        phones = [p for c in couples for p in c.phones]
        for p in phones:
            p.connect()
        log(
            f"{len(couples)} couples, {len(phones)} phones "
            f"({sum(p.sio.connected for p in phones)} sockets connected)"
        )

        schedule = [
            (15, "kill-worker"),
            (21, "start-worker"),
            (32, "restart-api-1"),
            (55, "cut-redis"),
            (75, "cut-postgres"),
            (92, "kill-worker"),
            (98, "start-worker"),
        ]
        stop = threading.Event()
        load_started = now()
        driver = FaultDriver(topo, pg, rd, schedule, args.cut_seconds, load_started)
        threads = [threading.Thread(target=p.loop, args=(stop,), daemon=True) for p in phones]
        for t in threads:
            t.start()
        driver.start()
        last = 0.0
        while True:
            time.sleep(1)
            elapsed = now() - load_started
            with stats.lock:
                ok = sum(v for k, v in stats.c.items() if k.startswith("ok_"))
                snap = dict(stats.c)
            if elapsed - last >= 10:
                last = elapsed
                log(
                    f"load {elapsed:5.0f}s: confirmed writes {ok} "
                    f"(bids {snap.get('ok_bid', 0)}, responses {snap.get('ok_response', 0)}, "
                    f"messages {snap.get('ok_repair_message', 0)}), requests "
                    f"{snap.get('http_requests', 0)}, retries "
                    f"{sum(v for k, v in snap.items() if k.startswith('retry_'))}, sockets "
                    f"{sum(p.sio.connected for p in phones)}/{len(phones)}"
                )
            if elapsed >= args.max_load or (
                driver.done.is_set() and elapsed >= args.min_load and ok >= args.target_ops
            ):
                break
        stop.set()
        log("stopping load ...")
        for t in threads:
            t.join(timeout=120)
        driver.join(timeout=60)
        load_seconds = round(now() - load_started, 1)
        summary["load_seconds"] = load_seconds
        summary["faults"] = driver.records
        log(f"load stopped after {load_seconds}s; settling")

        # settle: everything ready, then wait until the stand-in has every expected push
        settle_start = now()
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline and not all(ready(p) == 200 for p in (NGINX, API1, API2)):
            time.sleep(0.5)
        rc, out = topo.run("status", timeout=30)
        summary["status_after_load"] = out.strip()
        if rc != 0:
            log(f"status after load:\n{out.strip()}")
        pending_missing = None
        while time.monotonic() < deadline:
            streams = {c.phones[0].name: c.phones[0].sync_all() for c in couples}
            for c in couples:
                streams[c.phones[1].name] = streams[c.phones[0].name]
            pending_missing = check(couples, streams, standin.messages())["counts"][
                "pushes_missing"
            ]
            log(f"settle: pushes still missing {pending_missing}")
            if pending_missing == 0:
                break
            time.sleep(5)
        summary["settle_seconds"] = round(now() - settle_start, 1)

        log("final sync from cursor 0 on every phone ...")
        streams = {p.name: p.sync_all() for p in phones}
        result = check(couples, streams, standin.messages())
        for p in phones:
            p.disconnect()

        all_ops = [op for p in phones for op in p.ops]
        by_kind = collections.Counter(op["kind"] for op in all_ops)
        by_result = collections.Counter(f"{op['kind']}:{op['result']}" for op in all_ops)
        counts = result["counts"]
        summary.update(
            {
                "operations": {
                    "writes_by_kind": dict(by_kind),
                    "writes_by_result": dict(by_result),
                    "writes_confirmed": sum(1 for op in all_ops if op["result"] == "ok"),
                    "http_write_requests": stats.c["http_requests"],
                    "duplicate_sends": stats.c["duplicate_sends"],
                    "first_success_was_200": stats.c["first_success_was_200"],
                    "retries": {k: v for k, v in stats.c.items() if k.startswith("retry_")},
                    "rejected": {k: v for k, v in stats.c.items() if k.startswith("rejected_")},
                    "socket": {k: v for k, v in stats.c.items() if k.startswith("socket_")},
                    "socket_events_received": sum(p.socket_events for p in phones),
                    "socket_cursor_coverage": round(
                        sum(len(p.socket_cursors) for p in phones)
                        / max(1, sum(len(streams[p.name]) for p in phones)),
                        4,
                    ),
                    "harness_exceptions": stats.c["harness_exceptions"],
                },
                "check": counts,
                "findings": result["findings"][:200],
                "findings_total": len(result["findings"]),
                "non_ok_writes": [op for op in all_ops if op["result"] != "ok"][:50],
                "pushes": {
                    "expected": counts.get("pushes_expected", 0),
                    "received_distinct": counts.get("pushes_received_distinct", 0),
                    "missing": counts.get("pushes_missing", 0),
                    "withdrawn_bid_answered_first": counts.get(
                        "pushes_withdrawn_bid_answered_first", 0
                    ),
                    "sends_total": counts.get("push_sends_total", 0),
                },
            }
        )
        bad = sum(
            counts.get(k, 0)
            for k in (
                "lost_bid",
                "lost_response",
                "lost_repair_message",
                "same_resource_twice_in_stream",
                "client_id_two_resources_in_stream",
                "client_id_two_resources_on_retry",
                "repair_seq_out_of_order",
                "repair_seq_gaps",
                "cursor_not_contiguous",
                "partner_streams_differ",
                "pushes_missing",
            )
        )
        unconfirmed = sum(1 for op in all_ops if op["result"] != "ok")
        exit_code = 0 if bad == 0 and unconfirmed == 0 else 1
        summary["verdict"] = "pass" if exit_code == 0 else "FAIL"
    except Exception as exc:
        summary["error"] = repr(exc)
        log(f"ERROR: {exc!r}")
        raise
    finally:
        for p in phones:
            p.disconnect()
        log("cleanup: topology stop, proxies down, stand-in stop")
        try:
            rc, out = topo.run("stop", timeout=120)
            if rc != 0:
                print(out)
        finally:
            pg.down()
            rd.down()
            standin.stop()
        summary["duration_seconds"] = now()
        summary["topology_state_dir"] = str(state)
        path = OUT / f"summary-{stamp}.json"
        path.write_text(json.dumps(summary, indent=2, default=str))
        (OUT / "latest.json").write_text(json.dumps(summary, indent=2, default=str))
        print_table(summary)
        log(f"summary: {path}")
    return exit_code


def print_table(s: dict[str, Any]) -> None:
    ops = s.get("operations", {})
    c = s.get("check", {})
    rows = [
        ("verdict", s.get("verdict", s.get("error", "?"))),
        ("duration (s)", s.get("duration_seconds")),
        ("load / settle (s)", f"{s.get('load_seconds')} / {s.get('settle_seconds')}"),
        ("writes by kind", ops.get("writes_by_kind")),
        ("writes confirmed", ops.get("writes_confirmed")),
        ("writes by result", ops.get("writes_by_result")),
        ("HTTP write requests", ops.get("http_write_requests")),
        ("duplicate sends (same client_id)", ops.get("duplicate_sends")),
        ("first success was 200 (earlier try committed)", ops.get("first_success_was_200")),
        ("retries", ops.get("retries")),
        ("rejected", ops.get("rejected")),
        ("sockets", ops.get("socket")),
        ("socket cursor coverage", ops.get("socket_cursor_coverage")),
        ("events in streams (one phone/couple)", c.get("events_in_streams")),
        (
            "lost bid/response/message",
            f"{c.get('lost_bid', 0)}/{c.get('lost_response', 0)}/{c.get('lost_repair_message', 0)}",
        ),
        (
            "duplicated (stream twice / client_id->2 in stream / retry->other id)",
            f"{c.get('same_resource_twice_in_stream', 0)}"
            f"/{c.get('client_id_two_resources_in_stream', 0)}"
            f"/{c.get('client_id_two_resources_on_retry', 0)}",
        ),
        (
            "out of order (seq not increasing / seq gaps / cursor gaps)",
            f"{c.get('repair_seq_out_of_order', 0)}/{c.get('repair_seq_gaps', 0)}"
            f"/{c.get('cursor_not_contiguous', 0)}",
        ),
        ("partner streams differ", c.get("partner_streams_differ", 0)),
        (
            "pushes expected / received / missing",
            f"{c.get('pushes_expected')} / {c.get('pushes_received_distinct')}"
            f" / {c.get('pushes_missing')}",
        ),
        (
            "bid pushes withdrawn (bid answered before push went out)",
            c.get("pushes_withdrawn_bid_answered_first", 0),
        ),
        (
            "push sends total / expected sent >1 / unexpected",
            f"{c.get('push_sends_total')} / {c.get('push_expected_sent_more_than_once')} / "
            f"{c.get('push_unexpected')}",
        ),
    ]
    for f in s.get("faults", []):
        rows.append(
            (
                f"fault {f['fault']} @load+{f['t_start_load_s']}s",
                f"{'ok' if f['ok'] else 'FAILED'} {f['t_end_s'] - f['t_start_s']:.1f}s",
            )
        )
    width = max(len(r[0]) for r in rows)
    print("\n" + "-" * (width + 60))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("-" * (width + 60))


if __name__ == "__main__":
    sys.exit(main())
