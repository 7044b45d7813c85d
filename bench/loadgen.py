"""A cheap load generator: raw asyncio HTTP/1.1 keep-alive senders and raw WebSocket clients
speaking Engine.IO 4 / Socket.IO 5, spread over several processes.

Why raw: python-socketio's client costs far more CPU per message than the server under test
spends, so on a 2-core machine the generator would become the bottleneck. Here a client is one
asyncio stream: `0{...}` open, `40{"token": ...}` connect with auth, `2` -> `3` pings, `42[...]`
events. Client frames use a zero masking key (valid framing; masking is then a no-op).

Round trips are measured without matching ids across processes: every bid's note carries the
time it was scheduled (`s=<step>;t=<unix time>`), and the recipient's socket subtracts it from
the arrival time. Sends are open loop (scheduled at a fixed rate whether or not earlier answers
came back), so queueing in the server shows up as latency rather than as a lower offered rate.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import multiprocessing as mp
import os
import struct
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

# --- HTTP -------------------------------------------------------------------------------------


class HttpConn:
    """One keep-alive HTTP/1.1 connection; answers must carry Content-Length."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.writer is None:
                await self._open()
            assert self.reader is not None and self.writer is not None
            head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
            for k, v in (headers or {}).items():
                head.append(f"{k}: {v}")
            if body or method in ("POST", "PUT", "PATCH"):
                head.append(f"Content-Length: {len(body)}")
            self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            try:
                status_line = await self.reader.readuntil(b"\r\n")
                raw = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt == 0:
                    continue
                raise
            status = int(status_line.split(b" ", 2)[1])
            length = 0
            close = False
            for line in raw.split(b"\r\n"):
                low = line.lower()
                if low.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                elif low.startswith(b"connection:") and b"close" in low:
                    close = True
            data = await self.reader.readexactly(length) if length else b""
            if close:
                self.close()
            return status, data
        raise ConnectionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# --- WebSocket + Engine.IO / Socket.IO --------------------------------------------------------


def _frame(payload: bytes, opcode: int = 1) -> bytes:
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + b"\0\0\0\0" + payload  # zero masking key: payload goes as is


class SioClient:
    """One Socket.IO client over a raw WebSocket; `on_event(name_and_args_json)` per event."""

    def __init__(self, host: str, port: int, token: str, on_event: Any) -> None:
        self.host, self.port, self.token = host, port, token
        self.on_event = on_event
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.connected = False

    async def connect(self, timeout: float = 30.0) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout
        )
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {self.host}:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"no upgrade: {head[:80]!r}")
        opened = await asyncio.wait_for(self._read_message(), timeout)
        if not opened.startswith("0"):
            raise ConnectionError(f"no engine.io open: {opened[:80]}")
        self.writer.write(_frame(b"40" + json.dumps({"token": self.token}).encode()))
        while True:
            msg = await asyncio.wait_for(self._read_message(), timeout)
            if msg.startswith("40"):
                break
            if msg.startswith("44"):
                raise ConnectionError(f"refused: {msg[:200]}")
            if msg == "2":
                self.writer.write(_frame(b"3"))
        self.connected = True
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _read_message(self) -> str:
        assert self.reader is not None and self.writer is not None
        chunks: list[bytes] = []
        while True:
            b1, b2 = await self.reader.readexactly(2)
            opcode, fin = b1 & 0x0F, b1 & 0x80
            n = b2 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            if b2 & 0x80:  # servers do not mask, but be correct
                mask = await self.reader.readexactly(4)
                data = bytes(
                    c ^ mask[i % 4] for i, c in enumerate(await self.reader.readexactly(n))
                )
            else:
                data = await self.reader.readexactly(n) if n else b""
            if opcode == 8:
                raise ConnectionError("closed by server")
            if opcode == 9:
                self.writer.write(_frame(data, 10))
                continue
            if opcode == 10:
                continue
            chunks.append(data)
            if fin:
                return b"".join(chunks).decode()

    async def _run(self) -> None:
        assert self.writer is not None
        try:
            while True:
                msg = await self._read_message()
                if msg == "2":
                    self.writer.write(_frame(b"3"))
                elif msg.startswith("42"):
                    self.on_event(msg)
                elif msg.startswith("1"):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.connected = False

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.write(_frame(b"1"))  # engine.io close
                self.writer.close()
        self.connected = False


# --- one load process -------------------------------------------------------------------------


@dataclass
class StepResult:
    tag: int
    rate: float
    duration: float
    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    received: int = 0
    received_in_window: int = 0  # arrived before the step's end: the achieved throughput
    dropped: int = 0  # not scheduled: the backlog cap was reached
    post_ms: list[float] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)
    arrived_at: list[float] = field(default_factory=list)  # unix time of each of rtt_ms
    rtt_late_ms: list[float] = field(default_factory=list)  # last third of the step
    cpu_s: float = 0.0
    wall_s: float = 0.0


class LoadProcess:
    """Runs in a child process: holds receivers and senders for its couples."""

    def __init__(self, url: str, couples: list[dict[str, str]], http_conns: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.couples = couples
        self.pool: asyncio.Queue[HttpConn] = asyncio.Queue()
        for _ in range(http_conns):
            self.pool.put_nowait(HttpConn(self.host, self.port))
        self.receivers: list[SioClient] = []
        self.current: StepResult | None = None
        self.step_start = 0.0
        self.step_late = 0.0
        self.step_end = 0.0
        self.next_couple = 0
        self.outstanding = 0

    # events
    def on_event(self, role: str, msg: str) -> None:
        step = self.current
        now = time.time()
        # Reach emits to both partners: only the recipient's ("b") copy is a round trip.
        if step is None or role != "b" or '"bid.created"' not in msg:
            return
        i = msg.find('"s=')  # the note: "s=<step>;t=<scheduled unix time>"
        if i < 0:
            return
        j = msg.find('"', i + 1)
        note = msg[i + 1 : j]
        tag_s, t_s = note.split(";")
        if int(tag_s[2:]) != step.tag:
            return
        t0 = float(t_s[2:])
        ms = (now - t0) * 1000
        step.received += 1
        if now <= self.step_end:
            step.received_in_window += 1
        step.rtt_ms.append(ms)
        step.arrived_at.append(now)
        if t0 >= self.step_late:
            step.rtt_late_ms.append(ms)

    async def connect(self, which: str, concurrency: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        times: list[float] = []
        failures: list[str] = []

        async def one(role: str, token: str) -> None:
            async with sem:
                client = SioClient(
                    self.host, self.port, token, functools.partial(self.on_event, role)
                )
                t = time.perf_counter()
                try:
                    await client.connect()
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                    return
                times.append((time.perf_counter() - t) * 1000)
                self.receivers.append(client)

        tokens = []
        for c in self.couples:
            if which in ("b", "both"):
                tokens.append(("b", c["b_token"]))
            if which in ("a", "both"):
                tokens.append(("a", c["a_token"]))
        t0 = time.perf_counter()
        await asyncio.gather(*(one(r, t) for r, t in tokens))
        return {
            "connected": len(times),
            "failed": len(failures),
            "failures": failures[:5],
            "connect_ms": times,
            "wall_s": time.perf_counter() - t0,
        }

    async def alive(self) -> dict[str, Any]:
        return {"alive": sum(1 for r in self.receivers if r.connected)}

    async def disconnect(self) -> dict[str, Any]:
        alive = sum(1 for r in self.receivers if r.connected)
        await asyncio.gather(*(r.close() for r in self.receivers))
        self.receivers.clear()
        return {"were_alive": alive}

    async def send_one(self, t0: float, step: StepResult, couple: dict[str, str]) -> None:
        conn = await self.pool.get()
        done = False
        body = json.dumps(
            {"client_id": str(uuid.uuid4()), "kind": "connect", "note": f"s={step.tag};t={t0:.6f}"}
        ).encode()
        try:
            status, answer = await conn.request(
                "POST",
                "/api/v1/bids",
                body,
                {
                    "Authorization": f"Bearer {couple['a_token']}",
                    "Content-Type": "application/json",
                },
            )
            done = True
            if 200 <= status < 300:
                step.ok += 1
                step.post_ms.append((time.time() - t0) * 1000)
            else:
                step.errors += 1
                if len(step.error_samples) < 3:
                    step.error_samples.append(f"{status}: {answer[:200]!r}")
        except Exception as exc:
            step.errors += 1
            if len(step.error_samples) < 3:
                step.error_samples.append(f"{type(exc).__name__}: {exc}")
            conn.close()
        finally:
            if not done:  # cancelled mid-request: the connection's state is unknown
                conn.close()
            self.pool.put_nowait(conn)
            self.outstanding -= 1

    async def step(
        self, tag: int, rate: float, duration: float, drain: float, backlog_s: float
    ) -> dict[str, Any]:
        step = StepResult(tag=tag, rate=rate, duration=duration)
        self.current = step
        cpu0, wall0 = time.process_time(), time.perf_counter()
        start = time.time() + 0.05
        self.step_start, self.step_late = start, start + duration * 2 / 3
        self.step_end = start + duration
        interval = 1.0 / rate if rate > 0 else duration + 1
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        max_backlog = max(50, int(rate * backlog_s))
        n_couples = len(self.couples)
        while True:
            now = time.time()
            due_t = start + i * interval
            if due_t >= start + duration:
                break
            if due_t > now:
                await asyncio.sleep(due_t - now)
                continue
            # fire everything due (several per wake-up at high rates)
            while due_t <= now and due_t < start + duration:
                step.scheduled += 1
                if self.outstanding >= max_backlog:
                    step.dropped += 1
                else:
                    couple = self.couples[self.next_couple % n_couples]
                    self.next_couple += 1
                    self.outstanding += 1
                    step.sent += 1
                    task = asyncio.get_running_loop().create_task(
                        self.send_one(due_t, step, couple)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                i += 1
                due_t = start + i * interval
        # drain: answers, then events
        deadline = time.time() + drain + 8
        while tasks and time.time() < deadline:
            await asyncio.sleep(0.01)
        for t in list(tasks):
            t.cancel()
        end = time.time() + drain
        while step.received < step.ok and time.time() < end:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        self.current = None
        step.cpu_s = time.process_time() - cpu0
        step.wall_s = time.perf_counter() - wall0
        return step.__dict__


def _child(conn: Connection, url: str, couples: list[dict[str, str]], http_conns: int) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        lp = LoadProcess(url, couples, http_conns)
        loop = asyncio.get_running_loop()
        while True:
            cmd, args = await loop.run_in_executor(None, conn.recv)
            if cmd == "quit":
                await lp.disconnect()
                conn.send(("ok", None))
                return
            try:
                result = await getattr(lp, cmd)(**args)
                conn.send(("ok", result))
            except Exception as exc:  # report, keep serving
                conn.send(("error", f"{type(exc).__name__}: {exc}"))

    asyncio.run(main())


class LoadGenerator:
    """Several load processes; commands go to all of them and results come back merged."""

    def __init__(self, url: str, couples: list[dict[str, str]], processes: int, http_conns: int):
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        per = [couples[i::processes] for i in range(processes)]
        for chunk in per:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_child, args=(child, url, chunk, http_conns), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def call(
        self,
        cmd: str,
        timeout: float = 600,
        per_process: list[dict[str, Any]] | None = None,
        **args: Any,
    ) -> list[Any]:
        for i, pipe in enumerate(self.pipes):
            pipe.send((cmd, per_process[i] if per_process else args))
        out = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise TimeoutError(f"load process did not answer {cmd} in {timeout}s")
            status, result = pipe.recv()
            if status != "ok":
                raise RuntimeError(f"load process failed {cmd}: {result}")
            out.append(result)
        return out

    def step(
        self, tag: int, rate: float, duration: float, drain: float = 2.0, backlog_s: float = 1.0
    ) -> dict[str, Any]:
        """Offer `rate` bids/s in total for `duration` s; merge the processes' results."""
        n = len(self.pipes)
        parts = self.call(
            "step",
            timeout=duration + drain + 120,
            tag=tag,
            rate=rate / n,
            duration=duration,
            drain=drain,
            backlog_s=backlog_s,
        )
        merged: dict[str, Any] = {"tag": tag, "rate": rate, "duration": duration}
        for key in (
            "scheduled",
            "sent",
            "ok",
            "errors",
            "received",
            "received_in_window",
            "dropped",
        ):
            merged[key] = sum(p[key] for p in parts)
        merged["error_samples"] = [e for p in parts for e in p["error_samples"]][:5]
        for key in ("post_ms", "rtt_ms", "arrived_at", "rtt_late_ms"):
            merged[key] = [v for p in parts for v in p[key]]
        merged["loadgen_cpu_s"] = sum(p["cpu_s"] for p in parts)
        merged["wall_s"] = max(p["wall_s"] for p in parts)
        return merged

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.send(("quit", None))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
