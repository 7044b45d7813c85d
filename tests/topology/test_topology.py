"""The production topology on loopback: two API processes behind nginx, a separate worker,
PostgreSQL and Redis (reached through proxies the test can cut)."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import socketio

from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn
from tests.support.phones import Phone
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local" / "topology.sh"
NGINX, API1, API2 = 8281, 8201, 8202


def ready(port: int) -> int:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
    except requests.RequestException:
        return 0


class Topology:
    def __init__(self, state: Path, env: dict[str, str]) -> None:
        self.state, self.env = state, env

    def run(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def upstream_of(self, affinity: str) -> int:
        """The API port nginx sent this client's Socket.IO requests to (latest first)."""
        lines = (self.state / "nginx" / "access.log").read_text().splitlines()
        for line in reversed(lines):
            if "/socket.io/" in line and f"affinity={affinity}" in line:
                match = re.search(r"upstream=127\.0\.0\.1:(\d+)", line)
                if match:
                    return int(match.group(1))
        raise AssertionError(f"no socket request with affinity {affinity} in the nginx log")


@pytest.fixture
def proxies() -> Iterator[tuple[TcpProxy, TcpProxy]]:
    pg, redis_ = TcpProxy("127.0.0.1", 5432).up(), TcpProxy("127.0.0.1", 6379).up()
    yield pg, redis_
    pg.down()
    redis_.down()


@pytest.fixture
def standin() -> Iterator[FcmStandIn]:
    server = FcmStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def topology(
    tmp_path: Path, proxies: tuple[TcpProxy, TcpProxy], standin: FcmStandIn
) -> Iterator[Topology]:
    pg, redis_ = proxies
    env = {
        **os.environ,
        "TOPOLOGY_DIR": str(tmp_path / "topology"),
        "NGINX_PORT": str(NGINX),
        "API1_PORT": str(API1),
        "API2_PORT": str(API2),
        "TOPOLOGY_PG": f"postgresql://postgres@127.0.0.1:{pg.port}",
        "TOPOLOGY_DB": "reach_topology_test",
        "TOPOLOGY_REDIS": f"redis://127.0.0.1:{redis_.port}",
        "TOPOLOGY_REDIS_DB": "13",
        "TOPOLOGY_FRESH": "1",
        "PUSH_BACKEND": "fcm",
        "FIREBASE_CREDENTIALS": str(standin.write_credentials(tmp_path / "sa.json")),
        "FCM_ENDPOINT": standin.url,
        "GUNICORN_GRACEFUL_TIMEOUT": "3",
        "LOG_LEVEL": "WARNING",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL"):
        env.pop(name, None)
    topo = Topology(tmp_path / "topology", env)
    topo.run("start")
    try:
        yield topo
    finally:
        topo.run("stop")


def bid(api: ApiClient, sender: Person) -> dict[str, Any]:
    response = api.post(
        "/api/v1/bids", as_=sender, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def socket_handshake(origin: str) -> int:
    """A browser's first Socket.IO request through nginx, from `origin`: its status."""
    response = requests.get(
        f"http://127.0.0.1:{NGINX}/socket.io/",
        params={"EIO": "4", "transport": "polling"},
        headers={"Origin": origin},
        timeout=10,
    )
    return response.status_code


def test_events_cross_processes_survive_a_restart_and_pushes_go_out_from_the_worker(
    topology: Topology, standin: FcmStandIn
) -> None:
    through_nginx = ApiClient(f"http://127.0.0.1:{NGINX}")
    ana, ben = through_nginx.couple()
    token = f"ben-topology-{uuid.uuid4().hex[:8]}"
    # The /ops page's socket comes from the balancer's own origin, port included; others don't.
    own, foreign = f"http://127.0.0.1:{NGINX}", "http://elsewhere.example"
    assert socket_handshake(own) == 200
    assert socket_handshake(foreign) == 400
    through_nginx.post("/api/v1/devices", as_=ben, json={"platform": "ios", "push_token": token})

    ben_phone = Phone(f"http://127.0.0.1:{NGINX}", ben.access_token)

    def connect_ben(wait_timeout: float = 10) -> bool:
        try:
            ben_phone.client.connect(
                # Long-polling first, as browsers do, then the upgrade: both must stick to one
                # process.
                ben_phone.url,
                auth={"token": ben.access_token},
                transports=["polling", "websocket"],
                headers={"Cookie": "reach_affinity=ben-phone"},
                wait_timeout=wait_timeout,
            )
        except socketio.exceptions.ConnectionError:
            return False
        return True

    assert connect_ben()
    phones = [ben_phone]
    try:
        ben_port = topology.upstream_of("ben-phone")
        other_port = API2 if ben_port == API1 else API1
        direct_to_other = ApiClient(f"http://127.0.0.1:{other_port}")
        # A process subscribes to the queue when its first socket connects, and Redis drops
        # what is published before: wait until Ana typing on the other process reaches Ben.
        ana_phone = Phone(f"http://127.0.0.1:{other_port}", ana.access_token).connect()
        phones.append(ana_phone)
        wait_until(lambda: heard_typing(ana_phone, ben_phone), 20, "Ben's process to listen")

        first = bid(direct_to_other, ana)
        created = ben_phone.wait_for("bid.created", timeout=3)
        assert created["data"]["id"] == first["id"]
        wait_until(lambda: any(m["token"] == token for m in standin.messages()), 20, "the push")
        push = next(m for m in standin.messages() if m["token"] == token)
        assert push["data"]["bid_id"] == first["id"]
        applied = [created["cursor"]]

        # Restart the process Ben's phone is connected to; Ana keeps reaching for him.
        restart = subprocess.Popen(
            ["bash", str(SCRIPT), "restart-api", "1" if ben_port == API1 else "2"],
            env=topology.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        during = [bid(direct_to_other, ana) for _ in range(5)]
        assert restart.wait(timeout=90) == 0, restart.stdout.read() if restart.stdout else ""
        after = [bid(direct_to_other, ana) for _ in range(3)]
        # The stopping process closed the phone's socket (an Engine.IO CLOSE). The phone
        # libraries take it as "transport close" and reconnect by themselves, with their
        # backoff; python-socketio's client calls it a server disconnect and leaves that to its
        # user. Its connect over polling can lose the race between its CONNECT and its own
        # upgrade (the CONNECT's POST is refused once upgraded): try again, as its automatic
        # reconnection would.
        assert ben_phone.wait_for("disconnect", timeout=3) == "server disconnect"
        wait_until(lambda: connect_ben(wait_timeout=2), 30, "the phone to reconnect")

        # The phone syncs from the last cursor it applied, then applies what the socket says.
        since = max(applied)
        page = through_nginx.get("/api/v1/sync", as_=ben, params={"since": since}).json()
        applied += [event["cursor"] for event in page["events"]]
        bid_ids = {created["data"]["id"]} | {
            e["data"]["id"] for e in page["events"] if e["type"] == "bid.created"
        }
        assert bid_ids == {b["id"] for b in [first, *during, *after]}
        assert applied == list(range(applied[0], applied[0] + len(applied)))
        assert len(applied) == len(set(applied)) == 9
        wait_until(
            lambda: (
                {m["data"]["bid_id"] for m in standin.messages() if m["token"] == token} == bid_ids
            ),
            30,
            "a push for every bid",
        )
    finally:
        for phone in phones:
            phone.disconnect()


def heard_typing(typist: Phone, partner: Phone) -> bool:
    typist.client.emit("typing", {})
    try:
        partner.wait_for("typing", timeout=0.5)
    except AssertionError:
        return False
    return True


def test_readiness_follows_postgres_and_redis(
    topology: Topology, proxies: tuple[TcpProxy, TcpProxy]
) -> None:
    pg, _redis = proxies
    ana = ApiClient(f"http://127.0.0.1:{API1}").register("Ana")
    for proxy in proxies:
        assert ready(API1) == ready(API2) == 200
        proxy.down()
        wait_until(lambda: ready(API1) == ready(API2) == 503, 20, "readiness to fail")
        if proxy is pg:
            # Meanwhile requests and connecting phones get a 503 at once: try again shortly.
            me = requests.get(f"http://127.0.0.1:{API1}/api/v1/me", headers=ana.headers, timeout=10)
            assert me.status_code == 503, me.text
            assert me.json()["code"] == "server_error"
            assert int(me.headers["Retry-After"]) > 0
            phone = Phone(f"http://127.0.0.1:{API1}", ana.access_token)
            with pytest.raises(socketio.exceptions.ConnectionError):
                phone.connect()
            assert phone.refusal["data"]["status"] == 503, phone.refusal
        proxy.up()
        wait_until(lambda: ready(API1) == ready(API2) == 200, 30, "readiness to recover")
    assert requests.get(f"http://127.0.0.1:{NGINX}/readyz", timeout=5).json()["checks"] == {
        "database": "ok",
        "redis": "ok",
    }
