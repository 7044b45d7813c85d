"""Rate limits kept in Redis (service/security/rate_counters.py): every API process counts
against the same limit, every limited answer says what is left, and counting a request costs
it one round trip to Redis."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from service import create_app
from service.extensions import SENDING_BIDS
from tests.support.client import PASSWORD, ApiClient, Person
from tests.support.phones import Phone
from tests.support.redis_needed import REDIS_URL, require_redis
from tests.support.server import LiveServer
from tests.support.settings import make_settings
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

REDIS_AT = redis.connection.parse_url(REDIS_URL)
REDIS_DB = int(REDIS_AT.get("db", 0))


@pytest.fixture
def limited(
    database_url: str, server_with: Callable[..., LiveServer]
) -> Iterator[Callable[..., LiveServer]]:
    """Start API servers whose rate limits live in Redis: `limited(RATELIMIT_BIDS=...)`."""
    require_redis("the shared rate-limit tests")
    yield lambda **settings: server_with(**{"REDIS_URL": REDIS_URL, **settings})
    # flask-limiter's Limiter is one object: the app built last chose its storage (Redis).
    # Building one more app puts the tests after this one back on in-memory limits.
    create_app(make_settings(database_url))


@pytest.fixture
def behind_proxy(
    limited: Callable[..., LiveServer],
) -> Iterator[tuple[Callable[..., LiveServer], TcpProxy]]:
    """An API server that reaches Redis through a proxy the test can cut or hang."""
    proxy = TcpProxy(REDIS_AT.get("host", "127.0.0.1"), int(REDIS_AT.get("port", 6379))).up()
    url = f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}"
    try:
        yield (
            lambda **settings: limited(
                **{"REDIS_URL": url, "RATELIMIT_BIDS": "100 per minute", **settings}
            ),
            proxy,
        )
    finally:
        # Left forwarding: REDIS_URL is these servers' Socket.IO message queue too, whose
        # listener thread (python-socketio's, which has no way to stop) stays subscribed through
        # the proxy until the test process ends. Cut, it would retry every 2 s for the rest of
        # the run and log into streams pytest has closed (as tests/realtime's proxy is left).
        proxy.forwarding()


def post_bid(server: LiveServer, sender: Person) -> Any:
    body = {"client_id": str(uuid.uuid4()), "kind": "connect"}
    return ApiClient(server.url).post("/api/v1/bids", as_=sender, json=body)


def counted_for(sender: Person) -> int:
    """The bids counted in Redis against `sender`'s limit (POST /bids), over every window."""
    shared = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    keys = shared.keys(f"LIMITS:LIMITER/user:{sender.id}/{SENDING_BIDS}/*")
    return sum(int(shared.get(key) or 0) for key in keys)


class RedisCommands:
    """The commands Redis runs (MONITOR) from `start()` until `stop()`, in order."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []
        self._mark = f"stop-{uuid.uuid4().hex}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._record, daemon=True)

    def start(self) -> RedisCommands:
        self._thread.start()
        assert self._ready.wait(5), "MONITOR did not start"
        return self

    def stop(self) -> list[dict[str, Any]]:
        redis.Redis.from_url(REDIS_URL, socket_timeout=5).echo(self._mark)
        self._thread.join(5)
        assert not self._thread.is_alive(), "MONITOR did not see the end mark"
        return self.commands

    def _record(self) -> None:
        with redis.Redis.from_url(REDIS_URL).monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                if self._mark in command["command"]:
                    return
                self.commands.append(command)


def test_every_process_counts_against_one_limit_and_each_answer_says_what_is_left(
    limited: Callable[..., LiveServer],
) -> None:
    here, there = limited(RATELIMIT_BIDS="3 per minute"), limited(RATELIMIT_BIDS="3 per minute")
    ana, _ben = ApiClient(here.url).couple()
    started = time.time()
    answers = [post_bid(server, ana) for server in (here, there, here, there)]

    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert answers[-1].json()["code"] == "rate_limited"
    assert [a.headers["X-RateLimit-Limit"] for a in answers] == ["3"] * 4
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    # One window for all four, opened by the first: it ends a minute after it. (Each answer
    # rounds the window's end from its own reading of the time left, in milliseconds.)
    resets = [int(a.headers["X-RateLimit-Reset"]) for a in answers]
    assert max(resets) - min(resets) <= 1
    assert started + 59 <= min(resets) and max(resets) <= time.time() + 61
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 61
    assert not any("Retry-After" in a.headers for a in answers[:-1])  # only the refusal says


def test_sign_ins_count_in_redis_as_they_arrive_and_only_refusals_stay_counted(
    limited: Callable[..., LiveServer],
) -> None:
    here, there = (limited(RATELIMIT_AUTH_EMAIL="3 per minute") for _ in range(2))
    client = ApiClient(here.url)
    ana, ben = client.register("Ana"), client.register("Ben")

    def sign_in(server: LiveServer, who: Person, password: str) -> int:
        body = {"email": who.email, "password": password}
        return ApiClient(server.url).post("/api/v1/auth/login", json=body).status_code

    # Ben signs in, again and again, through both processes: each is given back.
    assert [sign_in(s, ben, PASSWORD) for s in (here, there) * 3] == [200] * 6
    # Twelve wrong passwords for Ana at once, through both: three get a verdict.
    with ThreadPoolExecutor(max_workers=12) as pool:
        guesses = pool.map(lambda n: sign_in((here, there)[n % 2], ana, f"wrong {n}"), range(12))
        assert sorted(guesses) == [401] * 3 + [429] * 9


def test_refreshes_count_in_redis_for_the_session_through_every_process(
    limited: Callable[..., LiveServer],
) -> None:
    """Only rotations count, wherever they happen: a reused token still gets its 401."""
    here, there = (limited(RATELIMIT_REFRESH="2 per hour") for _ in range(2))
    ana = ApiClient(here.url).register("Ana")
    token = ana.refresh_token
    for server in (here, there):
        rotated = ApiClient(server.url).post("/api/v1/auth/refresh", json={"refresh_token": token})
        assert rotated.status_code == 200, rotated.text
        token = rotated.json()["refresh_token"]
    for server in (here, there):
        refused = ApiClient(server.url).post("/api/v1/auth/refresh", json={"refresh_token": token})
        assert refused.status_code == 429, refused.text
    reused = ApiClient(there.url).post(
        "/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token}
    )
    assert reused.status_code == 401, reused.text


def test_a_limited_request_waits_on_redis_once(limited: Callable[..., LiveServer]) -> None:
    server = limited(RATELIMIT_BIDS="30 per minute")
    ana, _ben = ApiClient(server.url).couple()
    # The first count in a fresh Redis also loads the script; count the second.
    assert post_bid(server, ana).status_code == 201

    seen = RedisCommands().start()
    answer = post_bid(server, ana)
    commands = seen.stop()

    assert answer.status_code == 201, answer.text
    assert answer.headers["X-RateLimit-Remaining"] == "28"
    key = f"user:{ana.id}"
    counted = [
        c["command"].split()[0]
        for c in commands
        if c["db"] == REDIS_DB
        and c["client_type"] != "lua"
        and f"LIMITS:LIMITER/{key}" in c["command"]
    ]
    # The count and its time to live in one script call; no GET or TTL for the headers.
    assert counted == ["EVALSHA"]


def test_while_redis_is_away_limits_are_counted_in_the_process_and_shared_again_once_it_is_back(
    behind_proxy: tuple[Callable[..., LiveServer], TcpProxy],
) -> None:
    start, proxy = behind_proxy
    server = start()
    ana, _ben = ApiClient(server.url).couple()

    assert post_bid(server, ana).status_code == 201
    assert counted_for(ana) == 1

    proxy.down()
    away = [post_bid(server, ana) for _ in range(2)]
    # Answered, and counted by the process alone (flask-limiter's in-memory fallback).
    assert [a.status_code for a in away] == [201, 201], away[-1].text
    assert [a.headers["X-RateLimit-Remaining"] for a in away] == ["99", "98"]

    proxy.up()
    # A limited request tries Redis again after 1, 2, 4 ... s; then it counts there again.
    wait_until(
        lambda: post_bid(server, ana).status_code == 201 and counted_for(ana) > 1,
        timeout=15,
        what="POST /bids counted in Redis again",
    )


def test_an_app_built_after_anothers_redis_was_away_counts_in_redis_at_once(
    limited: Callable[..., LiveServer],
) -> None:
    """flask-limiter's limiter is one object per process; its verdict "Redis is away" on one
    app's storage must not carry over to the next app's storage (the tests build many)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = f"redis://127.0.0.1:{unused.getsockname()[1]}/{REDIS_DB}"
    away = limited(REDIS_URL=nowhere, RATELIMIT_BIDS="100 per minute")
    ana, _ben = ApiClient(away.url).couple()
    # Counted in memory: the first finds Redis away, the second asks again and backs off.
    assert [post_bid(away, ana).status_code for _ in range(2)] == [201, 201]

    fresh = limited(RATELIMIT_BIDS="100 per minute")
    cat, _dan = ApiClient(fresh.url).couple("Cat", "Dan")
    answers = [post_bid(fresh, cat) for _ in range(2)]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["99", "98"]
    assert counted_for(cat) == 2


def test_requests_waiting_on_redis_when_it_hangs_are_all_answered(
    behind_proxy: tuple[Callable[..., LiveServer], TcpProxy],
) -> None:
    """The first request whose Redis call fails moves the process to in-memory counting; the
    others, which were already waiting on Redis, are let through, not failed."""
    start, proxy = behind_proxy
    server = start()
    senders = [ApiClient(server.url).couple()[0] for _ in range(4)]
    assert [post_bid(server, sender).status_code for sender in senders] == [201] * 4

    proxy.stall()
    with ThreadPoolExecutor(len(senders)) as pool:
        answers = list(pool.map(lambda sender: post_bid(server, sender), senders))
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]


def test_while_redis_hangs_socket_writes_wait_on_it_once_and_are_counted_in_the_process(
    behind_proxy: tuple[Callable[..., LiveServer], TcpProxy],
) -> None:
    """A bid sent over the socket counts against the same limit as POST /bids. With Redis hung,
    the first such write gives up on it after REDIS_TIMEOUT_MS and moves the process to
    counting in memory, as a REST request does: the writes after it neither wait on Redis nor
    go uncounted."""
    start, proxy = behind_proxy
    server = start(RATELIMIT_BIDS="3 per minute")
    ana, _ben = ApiClient(server.url).couple()
    phone = Phone(server.url, ana.access_token).connect()
    try:
        proxy.stall()
        took, acks = [], []
        for _ in range(4):
            began = time.monotonic()
            acks.append(phone.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "connect"}))
            took.append(time.monotonic() - began)
    finally:
        phone.disconnect()
    assert [ack.get("code") for ack in acks] == [None, None, None, "rate_limited"], acks
    assert acks[-1]["status"] == 429 and acks[-1]["retry_after"] > 0
    assert took[0] < 2.0
    assert max(took[1:]) < 0.45, took  # none waits REDIS_TIMEOUT_MS (0.5 s) again
