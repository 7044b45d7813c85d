"""`reach demo`: the embedded service and two simulated phones, telling the story live."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import click
import requests
import socketio

PASSWORD = "demo password, not for real use"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Story:
    """Prints what happens, with the time since the demo started."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def say(self, who: str, text: str) -> None:
        with self.lock:
            click.echo(f"[{time.monotonic() - self.started:7.3f}s] {who:<8} {text}")


class Phone:
    def __init__(self, name: str, base: str, story: Story) -> None:
        self.name, self.base, self.story = name, base, story
        self.http = requests.Session()
        self.events: dict[str, threading.Event] = {}
        self.received: dict[str, Any] = {}
        self.client = socketio.Client(reconnection=False)
        self.client.on("*", self._on_event)

    def _on_event(self, event: str, data: Any = None) -> None:
        self.received[event] = data
        self.events.setdefault(event, threading.Event()).set()
        if event == "bid.created" and self.name == "Ben":
            self.story.say(self.name, f"socket: bid.created (cursor {data['cursor']})")
        elif event == "bid.answered" and self.name == "Ana":
            self.story.say(self.name, f"socket: bid.answered (cursor {data['cursor']})")

    def wait(self, event: str, timeout: float = 10.0) -> Any:
        if not self.events.setdefault(event, threading.Event()).wait(timeout):
            raise click.ClickException(f"{self.name} did not receive {event} in {timeout}s")
        return self.received[event]

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.base}/api/v1{path}", timeout=10, **kwargs)
        if response.status_code >= 400:
            raise click.ClickException(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def register(self) -> None:
        email = f"{self.name.lower()}-{uuid.uuid4().hex[:8]}@demo.reach"
        body = self.api(
            "POST",
            "/auth/register",
            json={
                "email": email,
                "password": PASSWORD,
                "display_name": self.name,
                "timezone": "Europe/Berlin",
            },
        )
        self.user = body["user"]
        self.token = body["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def connect(self) -> None:
        self.client.connect(self.base, auth={"token": self.token}, transports=["websocket"])


def _wait_ready(base: str, server: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise click.ClickException("the service exited; run `reach serve` to see why")
        try:
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise click.ClickException("the service did not become ready in time")


def _follow_pushes(stream: Any, story: Story) -> None:
    for raw in iter(stream.readline, b""):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        # The log backend's line says what kind of push went, never its title (it names the
        # sender) or its text.
        if entry.get("logger") == "reach.push" and entry.get("notification"):
            kind, data = entry["notification"], entry["data"]
            story.say("push", f"{entry['platform']} device: {kind} {data}")


@contextlib.contextmanager
def embedded_service(
    env: dict[str, str],
    stderr: Any = subprocess.DEVNULL,
    open_files: tuple[int, int] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`reach serve` (gunicorn + gevent) in a subprocess on a free port, with `env`, and with
    `open_files` as its (soft, hard) open-files limit if given.

    Yields its base URL once /readyz answers, and the process; stops it afterwards.
    """
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "service.entry", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        preexec_fn=(
            None
            if open_files is None
            else functools.partial(resource.setrlimit, resource.RLIMIT_NOFILE, open_files)
        ),
    )
    try:
        _wait_ready(base, server, time.monotonic() + 30)
        yield base, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def run_demo(on_server: Callable[[str], None] | None = None) -> None:
    story = Story()
    with tempfile.TemporaryDirectory(prefix="reach-demo-") as instance:
        env = {
            **os.environ,
            "REACH_INSTANCE_DIR": instance,
            "PUSH_BACKEND": "log",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
        }
        # A production shell's settings are not the embedded service's: its own worker sends
        # the pushes the story shows.
        for name in ("DATABASE_URL", "REDIS_URL", "WORKER_MODE"):
            env.pop(name, None)
        story.say("reach", "starting the embedded service (SQLite, inline worker)")
        with embedded_service(env, stderr=subprocess.PIPE) as (base, server):
            story.say("reach", f"serving on {base}")
            threading.Thread(
                target=_follow_pushes, args=(server.stderr, story), daemon=True
            ).start()
            if on_server:
                on_server(base)
            _story(base, story)


def _story(base: str, story: Story) -> None:
    ana, ben = Phone("Ana", base, story), Phone("Ben", base, story)
    ana.register()
    ben.register()
    code = ana.api("POST", "/couple/invites")["code"]
    ben.api("POST", "/couple/join", json={"code": code})
    story.say("reach", f"Ana and Ben are paired with invite code {code}")
    ben.api(
        "POST",
        "/devices",
        json={"platform": "android", "push_token": "demo-ben-" + uuid.uuid4().hex},
    )
    ana.connect()
    ben.connect()
    story.say("reach", "both phones are connected over Socket.IO")

    sent_at = time.monotonic()
    bid = ana.api(
        "POST",
        "/bids",
        json={
            "client_id": str(uuid.uuid4()),
            "kind": "comfort",
            "note": "Rough day. Can we talk tonight?",
        },
    )
    story.say("Ana", f"reaches for Ben: {bid['kind']} bid {bid['id'][:8]}")
    ben.wait("bid.created")
    story.say("Ben", f"received it {1000 * (time.monotonic() - sent_at):.1f} ms after Ana's POST")
    ben.api("POST", f"/bids/{bid['id']}/delivered")
    story.say("Ben", "phone acknowledged delivery")
    time.sleep(1.0)  # Ben picks up the phone
    seen = ben.client.call("bid.seen", {"bid_id": bid["id"]}, timeout=10)
    story.say("Ben", f"opened it (status {seen['status']})")
    time.sleep(1.0)  # and answers
    answered = ben.client.call(
        "bid.respond",
        {
            "bid_id": bid["id"],
            "client_id": str(uuid.uuid4()),
            "kind": "toward",
            "note": "Of course. Calling you at 7.",
        },
        timeout=10,
    )
    story.say("Ben", f"turned toward the bid: outcome {answered['outcome']}")
    ana.wait("bid.answered")
    story.say("Ana", f"sees Ben turned toward her after {answered['response_seconds']} s")
    for phone in (ana, ben):
        phone.client.disconnect()
        phone.http.close()
    story.say("reach", "done: the service stops now")
