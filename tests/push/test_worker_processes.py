"""Separate `reach worker` processes on PostgreSQL: SIGKILL in the middle of a batch loses
nothing and records nothing as sent that was not; two workers never send one push twice."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis as redis_client
import requests
from sqlalchemy import create_engine, text

from service.pubsub import database_channel
from service.worker import wakeups
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn
from tests.support.redis_needed import REDIS_URL
from tests.support.server import LiveServer
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


@pytest.fixture
def slow_standin() -> Iterator[FcmStandIn]:
    server = FcmStandIn(default_delay=0.03).start()
    yield server
    server.stop()


@pytest.fixture
def start_worker(
    database_url: str, slow_standin: FcmStandIn, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    credentials = slow_standin.write_credentials(tmp_path / "service-account.json")
    started: list[subprocess.Popen[bytes]] = []

    def start(
        name: str, idle: str = "0.1", redis: str | None = None, **settings: str
    ) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SECRET_KEY": "worker-test-secret-key-0123456789abcdef",
            "PUSH_BACKEND": "fcm",
            "FIREBASE_CREDENTIALS": str(credentials),
            "FCM_ENDPOINT": slow_standin.url,
            "WORKER_MODE": "separate",
            "LOG_LEVEL": "WARNING",
            # Small passes and a short lease, so a killed worker's claims free up quickly: a
            # send may take 3 s, and a pass keeps 5 s to record, so sends start for 2 s.
            "PUSH_BATCH": "10",
            "PUSH_TIMEOUT_SECONDS": "1",
            "PUSH_LEASE_SECONDS": "10",
        }
        env.pop("REDIS_URL", None)
        if redis:
            env["REDIS_URL"] = redis
        env.update(settings)
        process = subprocess.Popen(
            [sys.executable, "-m", "service.entry", "worker", "--idle", idle],
            env=env,
            stdout=(tmp_path / f"{name}.out").open("wb"),
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def couple_with_devices(client: ApiClient, tag: str, devices: int) -> tuple[Person, list[str]]:
    ana, ben = client.couple()
    tokens = [f"{tag}-ben-{i}-{uuid.uuid4().hex[:6]}" for i in range(devices)]
    for token in tokens:
        client.post("/api/v1/devices", as_=ben, json={"platform": "android", "push_token": token})
    return ana, tokens


def send_bids(client: ApiClient, sender: Person, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = client.post(
            "/api/v1/bids", as_=sender, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
        )
        assert response.status_code == 201
        ids.append(response.json()["id"])
    return ids


def received_pairs(standin: FcmStandIn, tokens: list[str]) -> Counter[tuple[str, str]]:
    return Counter(
        (m["data"]["bid_id"], m["token"]) for m in standin.messages() if m["token"] in tokens
    )


def sent_in_database(database_url: str, tokens: list[str]) -> set[tuple[str, str]]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT j.payload->'data'->>'bid_id', d.push_token FROM push_deliveries pd "
                "JOIN push_jobs j ON j.id = pd.job_id JOIN devices d ON d.id = pd.device_id "
                "WHERE pd.state = 'sent' AND d.push_token = ANY(:tokens)"
            ),
            {"tokens": tokens},
        ).all()
    engine.dispose()
    return {(str(bid_id), str(token)) for bid_id, token in rows}


def test_a_killed_worker_loses_nothing_and_records_only_what_was_sent(
    client: ApiClient,
    database_url: str,
    slow_standin: FcmStandIn,
    start_worker: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    ana, tokens = couple_with_devices(client, "kill", 3)
    bids = send_bids(client, ana, 60)
    expected = {(bid_id, token) for bid_id in bids for token in tokens}

    first = start_worker("first")
    wait_until(lambda: len(received_pairs(slow_standin, tokens)) >= 40, 60, "the first sends")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    received_before = set(received_pairs(slow_standin, tokens))
    recorded = sent_in_database(database_url, tokens)
    assert recorded <= received_before, "a push was recorded as sent that FCM never got"
    assert len(received_before) < len(expected), "the kill came too late to test anything"

    second = start_worker("second")
    wait_until(
        lambda: sent_in_database(database_url, tokens) == expected, 90, "every push recorded"
    )
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=20) == 0
    assert set(received_pairs(slow_standin, tokens)) == expected


def test_two_workers_never_send_the_same_push_twice(
    client: ApiClient,
    database_url: str,
    slow_standin: FcmStandIn,
    start_worker: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    ana, tokens = couple_with_devices(client, "pair", 2)
    bids = send_bids(client, ana, 80)
    workers = [start_worker("a"), start_worker("b")]
    expected = {(bid_id, token) for bid_id in bids for token in tokens}
    recorded_then_stopped(database_url, tokens, expected, workers)
    counts = received_pairs(slow_standin, tokens)
    assert set(counts) == expected
    assert max(counts.values()) == 1


def test_two_workers_never_send_a_push_twice_when_fcm_is_slower_than_a_lease(
    client: ApiClient,
    database_url: str,
    slow_standin: FcmStandIn,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """One send at a time, 0.6 s each: a batch of 10 jobs to two phones would take 12 s, more
    than the 10 s lease, and the other worker would take the jobs over and send them again.
    Each pass starts sends for 2 s (10 s less 3 s for a send, 5 s to record); the rest are
    due again at once, for whichever worker comes first."""
    slow_standin.default_delay = 0.6
    ana, tokens = couple_with_devices(client, "slow", 2)
    bids = send_bids(client, ana, 12)
    expected = {(bid_id, token) for bid_id in bids for token in tokens}
    workers = [start_worker(name, PUSH_CONCURRENCY="1") for name in ("slow-a", "slow-b")]
    recorded_then_stopped(database_url, tokens, expected, workers)
    counts = received_pairs(slow_standin, tokens)
    assert max(counts.values()) == 1, f"sent twice: {counts.most_common(3)}"
    assert set(counts) == expected
    assert attempts_in_database(database_url, tokens) == len(expected)


def recorded_then_stopped(
    database_url: str,
    tokens: list[str],
    expected: set[tuple[str, str]],
    workers: list[subprocess.Popen[bytes]],
) -> None:
    """Wait until every expected push is recorded as sent, then stop the workers (cleanly)."""
    wait_until(
        lambda: sent_in_database(database_url, tokens) == expected, 90, "every push recorded"
    )
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0


def attempts_in_database(database_url: str, tokens: list[str]) -> int:
    """Attempts recorded for the deliveries to these tokens."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(
            text(
                "SELECT count(*) FROM push_attempts a JOIN push_deliveries pd "
                "ON pd.id = a.delivery_id JOIN devices d ON d.id = pd.device_id "
                "WHERE d.push_token = ANY(:tokens)"
            ),
            {"tokens": tokens},
        ).scalar_one()
    engine.dispose()
    return int(count)


class RestingWorker:
    """A worker that rests 30 s between idle passes, listening for wake-ups at `redis_url`, and
    a couple whose bids it pushes. Its start-up passes are behind it once it is made."""

    def __init__(
        self,
        start_worker: Callable[..., subprocess.Popen[bytes]],
        server: LiveServer,
        database_url: str,
        redis_url: str,
    ) -> None:
        self.client = ApiClient(server.url)
        self.sender, self.tokens = couple_with_devices(self.client, "wake", 1)
        self.database_url = database_url
        self.sent: list[str] = []
        self.redis = redis_client.Redis.from_url(REDIS_URL)
        self.quiet = self.listening()
        start_worker("resting", idle="30", redis=redis_url)
        self.wait_listening()
        # A first bid, sent and recorded: after the pass that finds nothing more, it rests.
        self.pushed_within(self.send(), 40)

    def listening(self) -> int:
        channel = database_channel(wakeups.CHANNEL, self.redis)
        return int(dict(self.redis.pubsub_numsub(channel))[channel.encode()])

    def wait_listening(self) -> None:
        wait_until(lambda: self.listening() > self.quiet, 20, "the worker to listen")

    def send(self) -> str:
        [bid_id] = send_bids(self.client, self.sender, 1)
        self.sent.append(bid_id)
        return bid_id

    def pushed_within(self, bid_id: str, seconds: float) -> None:
        wait_until(
            lambda: (bid_id, self.tokens[0]) in sent_in_database(self.database_url, self.tokens),
            seconds,
            f"the push of bid {bid_id} to be recorded",
        )

    def each_pushed_once(self, standin: FcmStandIn) -> bool:
        expected = Counter({(bid_id, self.tokens[0]): 1 for bid_id in self.sent})
        return received_pairs(standin, self.tokens) == expected


def test_a_queued_push_wakes_a_resting_worker_at_once(
    start_worker: Callable[..., subprocess.Popen[bytes]],
    slow_standin: FcmStandIn,
    server_with: Callable[..., LiveServer],
    database_url: str,
) -> None:
    """The worker rests 30 s between idle passes, yet a new bid's push leaves within seconds:
    the API process that queued it wakes the worker over Redis."""
    worker = RestingWorker(start_worker, server_with(REDIS_URL=REDIS_URL), database_url, REDIS_URL)
    worker.pushed_within(worker.send(), 10)
    assert worker.each_pushed_once(slow_standin)
    worker.redis.close()


def test_a_resting_worker_hears_wake_ups_again_after_a_redis_outage(
    start_worker: Callable[..., subprocess.Popen[bytes]],
    slow_standin: FcmStandIn,
    server_with: Callable[..., LiveServer],
    database_url: str,
) -> None:
    """Redis goes away under a resting worker and comes back: the worker subscribes again,
    sends at once what was queued while it could not hear, and is woken as before."""
    target = urlsplit(REDIS_URL)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).up()
    try:
        worker = RestingWorker(
            start_worker,
            server_with(REDIS_URL=REDIS_URL),
            database_url,
            f"redis://127.0.0.1:{proxy.port}{target.path}",
        )
        proxy.down()
        wait_until(lambda: worker.listening() == worker.quiet, 10, "the worker to be cut off")
        during = worker.send()  # its wake-up reaches nobody
        proxy.up()
        worker.wait_listening()
        worker.pushed_within(during, 10)
        worker.pushed_within(worker.send(), 10)
        assert worker.each_pushed_once(slow_standin)
        worker.redis.close()
    finally:
        proxy.down()


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


def scraped(url: str) -> str:
    """The endpoint's answer, or "" while it does not answer yet."""
    try:
        return requests.get(url, timeout=5).text
    except requests.ConnectionError:
        return ""


def sent_counted(metrics: str) -> float:
    found = re.search(
        r'^reach_push_outcomes_total\{outcome="sent",platform="android"\} (\S+)$', metrics, re.M
    )
    return float(found[1]) if found else 0.0


def test_a_worker_process_serves_its_push_outcomes_and_its_liveness(
    client: ApiClient, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """No API process counts what a separate worker sent: it serves its own /metrics at
    WORKER_METRICS_BIND for Prometheus to scrape, and /healthz for a liveness probe."""
    ana, _tokens = couple_with_devices(client, "metrics", 1)
    base = f"http://127.0.0.1:{free_port()}"
    worker = start_worker("metrics", WORKER_METRICS_BIND=base.removeprefix("http://"))
    send_bids(client, ana, 3)
    wait_until(lambda: sent_counted(scraped(f"{base}/metrics")) == 3.0, 60, "3 sends counted")
    alive = requests.get(f"{base}/healthz", timeout=5)
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert requests.get(f"{base}/", timeout=5).status_code == 404
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
