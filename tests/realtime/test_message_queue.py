"""Messages between processes over Redis (service/pubsub.py, service/realtime/queue.py): in
order, one wake-up for many commits, and a slow, hung or absent Redis costs no request."""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from flask_socketio import SocketIO
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from service import create_app
from service.config import Settings
from service.pubsub import Publications, client_options, database_channel
from service.realtime.queue import CHANNEL, SYNC_SPREAD_SECONDS, QueueManager
from service.realtime.rooms import user_room
from tests.support.client import ApiClient, Person
from tests.support.guide import GuidedPhone, stream_head
from tests.support.phones import Phone
from tests.support.queue import carries, from_server, listening
from tests.support.redis_needed import REDIS_URL, require_redis
from tests.support.server import LiveServer
from tests.support.settings import make_settings
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

TARGET = redis.connection.parse_url(REDIS_URL)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """Redis through a proxy the test can stall (connections stay open, nothing answers) or
    take down (refused)."""
    require_redis("the message-queue tests")
    forward = TcpProxy(TARGET.get("host", "127.0.0.1"), int(TARGET.get("port", 6379))).up()
    yield forward
    # Left forwarding, whatever the test left (stalled or down): a server whose socket events
    # were dropped tries its `sync.needed` every 2 s until Redis takes it. Cut, it would retry
    # for the rest of the run, warning in later tests' logs (tests/test_database.py counts its
    # own warnings) and in streams pytest has closed. (The servers' listeners stop with them.)
    forward.forwarding()


def through(proxy: TcpProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}/{TARGET.get('db', 0)}"


def listening_pair(
    client: ApiClient,
    proxy: TcpProxy,
    queued: Callable[..., LiveServer],
    phones: list[Phone],
    **there_settings: object,
) -> tuple[LiveServer, LiveServer, Person, Phone]:
    """Two processes on Redis through `proxy`: `here`, which holds no socket and so only
    publishes, and `there`, which holds Ben's phone and so listens; `here`'s emits already
    reach the phone."""
    url = through(proxy)
    here = queued(REDIS_URL=url, REDIS_TIMEOUT_MS=200)
    there = queued(REDIS_URL=url, **there_settings)
    ben = client.register("Ben")
    far = Phone(there.url, ben.access_token).connect()
    phones.append(far)
    listening(here, far, ben.id)
    return here, there, ben, far


class Listener:
    """A plain Redis subscriber on a channel of its own, recording what arrives in order."""

    def __init__(self) -> None:
        self.channel = f"test:{uuid.uuid4().hex}"
        self.client = redis.Redis.from_url(REDIS_URL)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(self.channel)
        self.heard: list[bytes] = []
        # Redis drops what is published before the subscription is in place.
        wait_until(self._subscribed, timeout=5, what="the subscription")

    def _subscribed(self) -> bool:
        self.pubsub.get_message(timeout=0.01)  # reads the subscription's confirmation
        return bool(dict(self.client.pubsub_numsub(self.channel)).get(self.channel.encode()))

    def hear(self, count: int, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.heard) < count and time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.1)
            if message is not None:
                self.heard.append(message["data"])
        return self.heard

    def drain(self, quiet: float = 0.2) -> list[bytes]:
        """Everything that arrives until nothing has for `quiet` seconds."""
        while (message := self.pubsub.get_message(timeout=quiet)) is not None:
            self.heard.append(message["data"])
        return self.heard

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    heard = Listener()
    yield heard
    heard.close()


def publications_through(proxy: TcpProxy, timeout: float, backlog: int = 10_000) -> Publications:
    client = redis.Redis.from_url(through(proxy), **client_options(timeout))
    return Publications(client, backlog=backlog)


def dropped(channel: str) -> float:
    labels = {"channel": channel, "outcome": "dropped"}
    return REGISTRY.get_sample_value("reach_pubsub_messages_total", labels) or 0.0


def test_messages_go_out_in_order_and_waiting_wake_ups_are_one(
    proxy: TcpProxy, listener: Listener
) -> None:
    out = publications_through(proxy, timeout=5)
    out.publish(listener.channel, b"first")
    assert out.flush(timeout=5)  # answered: the stall below cannot hold its answer back
    assert listener.hear(1) == [b"first"]
    # Redis answers nothing for a while: the next message is on its way, what follows waits.
    proxy.stall()
    out.publish(listener.channel, b"second")
    wait_until(lambda: out.waiting() == 0, timeout=5, what="the task to take the message")
    for _ in range(5):
        out.notify(listener.channel)
    for n in range(3, 53):
        out.publish(listener.channel, f"m{n}".encode())
    assert out.waiting() == 1 + 50
    proxy.flow()
    assert out.flush(timeout=5)
    heard = listener.hear(53 + 1, timeout=1.0)
    assert [m for m in heard if m] == [
        b"first",
        b"second",
        *(f"m{n}".encode() for n in range(3, 53)),
    ]
    assert heard.count(b"") == 1, "the five waiting wake-ups go out as one"


@pytest.mark.parametrize("outage", ["hung", "down"])
def test_publishing_never_waits_for_a_redis_that_does_not_answer_and_resumes_after(
    proxy: TcpProxy, listener: Listener, outage: str
) -> None:
    out = publications_through(proxy, timeout=0.2)
    out.publish(listener.channel, b"before")
    assert out.flush(timeout=5)
    assert listener.hear(1) == [b"before"]
    before = dropped(listener.channel)
    proxy.stall() if outage == "hung" else proxy.down()
    started = time.monotonic()
    for n in range(200):
        out.publish(listener.channel, f"lost {n}".encode())
        out.notify(listener.channel)
    assert time.monotonic() - started < 0.1
    assert out.flush(timeout=5), "what Redis does not take is dropped, not kept forever"
    assert dropped(listener.channel) - before == 200 + 1
    proxy.flow() if outage == "hung" else proxy.up()

    def after() -> bool:
        out.publish(listener.channel, b"after")
        out.flush(timeout=1)
        return b"after" in listener.drain()

    wait_until(after, timeout=10, what="messages to get through again once Redis answers")
    late = [m for m in listener.heard if m.startswith(b"lost")]
    if outage == "down":
        assert not late
    # A hung Redis may still act on what was written to it before the timeout: those messages
    # arrive late, in order, and never twice.
    assert late == [f"lost {n}".encode() for n in range(len(late))]


def test_a_full_backlog_drops_its_oldest_messages(proxy: TcpProxy, listener: Listener) -> None:
    out = publications_through(proxy, timeout=5, backlog=3)
    proxy.stall()
    out.publish(listener.channel, b"taken")
    wait_until(lambda: out.waiting() == 0, timeout=5, what="the task to take the message")
    for n in range(5):
        out.publish(listener.channel, f"m{n}".encode())
    assert out.waiting() == 3
    proxy.flow()
    assert out.flush(timeout=5)
    assert listener.hear(5, timeout=1.0) == [b"taken", b"m2", b"m3", b"m4"]


class BreaksOnce:
    """A Redis client whose first pipeline fails with an error no Redis client raises."""

    def __init__(self) -> None:
        self.real = redis.Redis.from_url(REDIS_URL)
        self.broken = False

    def pipeline(self, transaction: bool) -> Any:
        if not self.broken:
            self.broken = True
            raise RuntimeError("unexpected")
        return self.real.pipeline(transaction=transaction)


def test_a_flush_tries_the_recovery_owed_at_once(proxy: TcpProxy, listener: Listener) -> None:
    """A process whose messages were dropped owes their channel's recovery message, tried 2 s
    after the last failure: one stopping sooner after Redis's return (its exit flushes for at
    most 1 s) left it unsent, and the other processes' phones untold. A flush tries it at once."""
    out = publications_through(proxy, timeout=0.2)
    out.on_dropped(listener.channel, lambda: b"catch up")
    proxy.down()
    out.publish(listener.channel, b"lost")
    assert out.flush(timeout=5)
    assert dropped(listener.channel) >= 1
    proxy.up()
    assert out.flush(timeout=1)
    assert listener.drain() == [b"catch up"]


def test_the_publishing_task_outlives_an_unexpected_error(listener: Listener) -> None:
    out = Publications(BreaksOnce())
    out.publish(listener.channel, b"lost")
    assert out.flush(timeout=5)
    out.publish(listener.channel, b"next")
    assert out.flush(timeout=5)
    assert listener.drain() == [b"next"]


# --- API processes joined by the message queue ------------------------------------------


@pytest.fixture
def queued(
    database_url: str, server_with: Callable[..., LiveServer]
) -> Iterator[Callable[..., LiveServer]]:
    """Start API servers with Redis: `queued(REDIS_URL=...)`."""
    yield server_with
    # flask-limiter's Limiter is one object: the app built last chose its storage (Redis).
    # Building one more app puts the tests after this one back on in-memory limits.
    create_app(make_settings(database_url))


@pytest.fixture
def joined(proxy: TcpProxy, queued: Callable[..., LiveServer]) -> tuple[LiveServer, LiveServer]:
    """Two API servers joined by the message queue, both through the proxy."""
    url = through(proxy)
    return queued(REDIS_URL=url, REDIS_TIMEOUT_MS=200), queued(REDIS_URL=url, REDIS_TIMEOUT_MS=200)


def timed_bid(here: LiveServer, sender: Person) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    response = ApiClient(here.url).post(
        "/api/v1/bids", as_=sender, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    )
    assert response.status_code == 201, response.text
    return time.monotonic() - started, dict(response.json())


def socket_events(here: LiveServer, outcome: str) -> float:
    """`reach_pubsub_messages_total` for socket events, as GET /metrics shows it."""
    response = ApiClient(here.url).get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "reach_pubsub_messages_total" and sample.labels == {
                "channel": database_channel(CHANNEL, redis.Redis.from_url(REDIS_URL)),
                "outcome": outcome,
            }:
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize("outage", ["hung", "down"])
def test_bids_are_answered_at_once_while_redis_does_not_answer_and_cross_processes_after(
    client: ApiClient,
    proxy: TcpProxy,
    joined: tuple[LiveServer, LiveServer],
    phones: list[Phone],
    outage: str,
) -> None:
    here, there = joined
    ana, ben = client.couple()
    near, far = Phone(here.url, ben.access_token).connect(), Phone(there.url, ben.access_token)
    phones.extend([near, far.connect()])
    listening(here, far, ben.id)

    dropped_before = socket_events(here, "dropped")
    proxy.stall() if outage == "hung" else proxy.down()
    for _ in range(3):
        took, sent = timed_bid(here, ana)
        # The rate limiter gives up on Redis after REDIS_TIMEOUT_MS, once; publishing waits
        # for nothing (before, a hung Redis held every bid for longer than ten seconds).
        assert took < 1.0, f"POST /bids took {took:.2f} s while Redis was {outage}"
        near.wait_for("bid.created", lambda e, bid=sent: e["data"]["id"] == bid["id"])
    # Each bid's event for the other process was dropped, and counted.
    wait_until(
        lambda: socket_events(here, "dropped") == dropped_before + 3,
        timeout=5,
        what="the three events to be counted as dropped",
    )

    proxy.flow() if outage == "hung" else proxy.up()
    listening(here, far, ben.id)
    sent_before = socket_events(here, "sent")
    _, after = timed_bid(here, ana)
    far.wait_for("bid.created", lambda e: e["data"]["id"] == after["id"])
    assert socket_events(here, "sent") > sent_before


def test_a_phone_that_follows_the_guide_applies_every_event_once_in_order(
    client: ApiClient,
    proxy: TcpProxy,
    joined: tuple[LiveServer, LiveServer],
    phones: list[Phone],
) -> None:
    """A couple's events written in two processes reach a phone out of cursor order (the other
    process's come through Redis), and some not at all (while Redis does not answer). A phone
    that follows the sync loop of docs/mobile.md §7, syncing two events a page here, applies
    each once, in order, and holds every bid."""
    here, there = joined
    ana, ben = client.couple()
    near = Phone(here.url, ben.access_token).connect()
    phones.append(near)
    listening(there, near, ben.id)
    couple_id = client.get("/api/v1/couple", as_=ben).json()["id"]
    guided = GuidedPhone(ApiClient(here.url), ben, couple_id, page=2).connect(here.url)

    def bids_to(server: LiveServer, count: int) -> list[str]:
        return [timed_bid(server, ana)[1]["id"] for _ in range(count)]

    try:
        with ThreadPoolExecutor(2) as pool:
            sent = list(itertools.chain(*pool.map(bids_to, (here, there), (8, 8))))
        proxy.stall()
        sent += bids_to(there, 2)  # their events wait for Redis, or are dropped
        sent += bids_to(here, 1)
        proxy.flow()
        sent += bids_to(here, 1)
        # The phone also posts `delivered` for each bid, as the guide says: their events too.
        guided.settle(timeout=20)
        head = stream_head(client, ben)
        assert guided.applied == list(range(1, head + 1))
        assert set(guided.bids) == set(sent)
    finally:
        guided.close()


def test_a_stock_flask_socketio_emitter_reaches_phones_through_the_queue(
    client: ApiClient, queued: Callable[..., LiveServer], phones: list[Phone]
) -> None:
    """Another program (a script, an older process in a rolling deploy) that emits with
    Flask-SocketIO as shipped reaches the phones: same channel, same format."""
    here = queued(REDIS_URL=REDIS_URL)
    ben = client.register("Ben")
    phone = Phone(here.url, ben.access_token).connect()
    phones.append(phone)
    channel = database_channel(CHANNEL, redis.Redis.from_url(REDIS_URL))
    external = SocketIO(message_queue=REDIS_URL, channel=channel)
    carries(lambda data: external.emit("probe", data, to=user_room(ben.id), namespace="/"), phone)


def test_deployments_on_other_databases_of_one_redis_server_do_not_hear_each_other(
    client: ApiClient, queued: Callable[..., LiveServer], phones: list[Phone]
) -> None:
    """Staging on one database of a Redis server, production on another: what one emits
    reaches its own processes' phones, never the other's (Redis hands a published message to
    every subscriber on the server, whatever database each chose)."""
    ours, theirs = (f"{REDIS_URL.rsplit('/', 1)[0]}/{number}" for number in (11, 12))
    here, there, there_too = (queued(REDIS_URL=url) for url in (ours, theirs, theirs))
    ben = client.register("Ben")
    near = Phone(here.url, ben.access_token).connect()
    far = Phone(there.url, ben.access_token).connect()
    phones.extend([near, far])
    listening(there_too, far, ben.id)  # `there` hears its own deployment's other process
    probe, after = uuid.uuid4().hex, uuid.uuid4().hex
    from_server(here, ben.id)({"probe": probe})
    near.wait_for("probe", lambda data: data.get("probe") == probe)
    assert here.app.extensions["reach.publications"].flush(5)  # published to Redis
    # Published after it: `there` receives its channel's messages on one connection, in the order
    # Redis took them, so by the time this one arrives the probe would have, had it crossed.
    from_server(there_too, ben.id)({"probe": after})
    far.wait_for("probe", lambda data: data.get("probe") == after)
    assert probe not in [data.get("probe") for data in far.named("probe")]


def test_a_process_receives_again_soon_after_a_long_redis_outage(
    client: ApiClient,
    proxy: TcpProxy,
    queued: Callable[..., LiveServer],
    phones: list[Phone],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """python-socketio's listener waits 1, 2, 4, 8 ... s between attempts to subscribe again:
    after an outage of seven seconds a process heard nothing from the others for up to eight
    more, and its phones missed the socket events of writes handled elsewhere. It tries every
    2 s at most: the process hears the others within about that once Redis is back."""
    here, _there, ben, far = listening_pair(client, proxy, queued, phones)

    def failed_attempts() -> int:
        return len(receive_errors(proxy, caplog))

    proxy.down()
    wait_until(lambda: failed_attempts() >= 4, timeout=20, what="four failed attempts to receive")
    proxy.up()
    back = time.monotonic()
    carries(from_server(here, ben.id), far, timeout=4)
    assert time.monotonic() - back < 4
    assert any("receiving from redis again" in r.getMessage() for r in caplog.records)


def test_a_stopped_listener_ends_without_a_word_even_while_redis_is_away(
    client: ApiClient,
    proxy: TcpProxy,
    queued: Callable[..., LiveServer],
    phones: list[Phone],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """python-socketio's listening thread goes on through any error: a test server's went on
    retrying its Redis for the rest of the run once the test's proxy was gone, and logged
    `Cannot receive from redis` into a stream pytest had closed (`--- Logging error ---`)."""
    _here, there, _ben, _far = listening_pair(
        client, proxy, queued, phones, REDIS_RECEIVE_CHECK_SECONDS=1
    )
    manager = there.app.extensions["socketio"].server.manager
    assert isinstance(manager, QueueManager) and manager.thread.is_alive()
    proxy.down()
    wait_until(lambda: receive_errors(proxy, caplog), timeout=20, what="a failure to receive")
    manager.stop_listening()  # as a test server's stop does
    stopped = time.monotonic()
    manager.thread.join(timeout=5)
    assert not manager.thread.is_alive()
    assert time.monotonic() - stopped < 3  # within its wait before the next attempt (<= 2 s)
    tried = len(receive_errors(proxy, caplog))
    # The thread has ended: no attempt can come after it.
    assert len(receive_errors(proxy, caplog)) == tried
    assert not [r for r in caplog.records if "exited unexpectedly" in r.getMessage()]


def test_a_process_that_receives_again_tells_its_phones_to_sync(
    client: ApiClient,
    proxy: TcpProxy,
    queued: Callable[..., LiveServer],
    phones: list[Phone],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What the other processes sent while this one could not receive never comes: its phones
    learnt of it only at their next event, reconnect or foreground (a partner's `bid.seen`
    with nothing after it stayed unseen). Once it receives again, it tells them to sync."""
    here, _there, ben, far = listening_pair(client, proxy, queued, phones)
    proxy.down()
    wait_until(lambda: receive_errors(proxy, caplog), timeout=20, what="a failure to receive")
    from_server(here, ben.id)({"probe": "lost"})  # dropped: Redis is away
    assert not far.named("sync.needed")
    proxy.up()
    told = far.wait_for("sync.needed", timeout=10)
    assert told == {"within_seconds": SYNC_SPREAD_SECONDS}
    assert not [p for p in far.named("probe") if p.get("probe") == "lost"]


def test_a_process_whose_events_were_dropped_tells_every_phone_to_sync_once_it_publishes(
    client: ApiClient,
    proxy: TcpProxy,
    queued: Callable[..., LiveServer],
    phones: list[Phone],
) -> None:
    """Redis did not take `here`'s events for a while (its link broke) while the
    other processes heard Redis fine: those phones never got the events and were not told.
    Once `here` publishes again, unasked (nothing else need be sent), every phone is told to
    sync."""
    require_redis("the message-queue tests")
    here = queued(REDIS_URL=through(proxy), REDIS_TIMEOUT_MS=200)
    there = queued(REDIS_URL=REDIS_URL)
    ana, ben = client.couple()
    far = Phone(there.url, ben.access_token).connect()
    phones.append(far)
    listening(here, far, ben.id)

    dropped_before = socket_events(here, "dropped")
    proxy.down()
    _, lost = timed_bid(here, ana)
    wait_until(
        lambda: socket_events(here, "dropped") > dropped_before,
        timeout=5,
        what="the bid's event to be dropped",
    )
    proxy.up()
    told = far.wait_for("sync.needed", timeout=10)
    assert told == {"within_seconds": SYNC_SPREAD_SECONDS}
    assert not [e for e in far.named("bid.created") if e["data"]["id"] == lost["id"]]
    assert len(far.named("sync.needed")) == 1


def test_a_phone_that_follows_the_guide_holds_a_bid_whose_event_was_lost_in_an_outage(
    client: ApiClient,
    proxy: TcpProxy,
    queued: Callable[..., LiveServer],
    phones: list[Phone],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bid written while Redis was away reached neither the phone nor, with nothing written
    after it, the phone's sync: it stayed unknown to the phone until its next reconnect. A
    phone following docs/mobile.md §7 holds it once Redis is back, with nothing else sent."""
    url = through(proxy)
    here, there = queued(REDIS_URL=url, REDIS_TIMEOUT_MS=200), queued(REDIS_URL=url)
    ana, ben = client.couple()
    probe = Phone(there.url, ben.access_token).connect()
    phones.append(probe)
    listening(here, probe, ben.id)
    couple_id = client.get("/api/v1/couple", as_=ben).json()["id"]
    guided = GuidedPhone(ApiClient(there.url), ben, couple_id).connect(there.url)
    try:
        proxy.down()
        wait_until(lambda: receive_errors(proxy, caplog), timeout=20, what="a failure to receive")
        _, lost = timed_bid(here, ana)
        proxy.up()
        wait_until(
            lambda: lost["id"] in guided.bids,
            timeout=SYNC_SPREAD_SECONDS + 10,
            what="the phone to hold the bid written during the outage",
        )
        assert "bid.created" not in guided.heard
    finally:
        guided.close()


# --- A link to Redis that dies without a word ---------------------------------------------


def receive_failures() -> float:
    return REGISTRY.get_sample_value("reach_pubsub_receive_failures_total") or 0.0


def receive_errors(proxy: TcpProxy, caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The listener's failures to receive through `proxy` (other servers' listeners, through
    their own proxies, log alike)."""
    port = f":{proxy.port}"
    return [
        record
        for record in caplog.records
        if "Cannot receive from redis" in record.getMessage()
        and port in str(getattr(record, "redis_exception", ""))
    ]


def pings(here: LiveServer, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When `here`'s listener pings Redis from now on (on its current connection)."""
    pubsub = here.app.extensions["socketio"].server.manager.pubsub
    sent: list[float] = []
    ping = pubsub.ping

    def counted(*args: Any) -> Any:
        sent.append(time.monotonic())
        return ping(*args)

    monkeypatch.setattr(pubsub, "ping", counted)
    return sent


def test_a_process_whose_link_to_redis_died_without_a_word_receives_again_within_the_bound(
    client: ApiClient,
    proxy: TcpProxy,
    queued: Callable[..., LiveServer],
    phones: list[Phone],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A network path that dies without a FIN or RST (a NAT entry dropped, a failover that
    leaves the old peer unreachable) left the listener reading for ever: the process never
    again received the others' emits, and nothing counted or logged it. At the default
    REDIS_RECEIVE_CHECK_SECONDS it gives the link up within twice that, and receives again
    on a new one."""
    bound = 2 * Settings().REDIS_RECEIVE_CHECK_SECONDS
    here, _there, ben, far = listening_pair(client, proxy, queued, phones)
    failures = receive_failures()

    proxy.black_hole()  # every link open now, the listener's and the publishers', is dead
    cut, cut_at = time.monotonic(), time.time()
    carries(from_server(here, ben.id), far, timeout=bound + 10)
    took = time.monotonic() - cut

    errors = receive_errors(proxy, caplog)
    assert len(errors) == 1, [e.redis_exception for e in errors]  # type: ignore[attr-defined]
    assert "did not answer a PING" in errors[0].redis_exception  # type: ignore[attr-defined]
    assert errors[0].created - cut_at <= bound + 0.5, "the dead link is found within the bound"
    assert took < bound + 3, f"received again {took:.1f} s after the link died"
    assert receive_failures() - failures == 1
    assert any("receiving from redis again" in r.getMessage() for r in caplog.records)


def test_a_listener_gives_a_hung_redis_up_again_and_again_and_receives_once_it_answers(
    client: ApiClient,
    proxy: TcpProxy,
    queued: Callable[..., LiveServer],
    phones: list[Phone],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis takes connections and answers nothing: each new subscription is given up on in
    turn, counted, and not taken for recovery until Redis answers on it."""
    here, _there, ben, far = listening_pair(
        client, proxy, queued, phones, REDIS_RECEIVE_CHECK_SECONDS=1
    )
    failures = receive_failures()

    proxy.stall()
    wait_until(
        lambda: len(receive_errors(proxy, caplog)) >= 3,
        timeout=15,
        what="three connections to the hung Redis to be given up on",
    )
    assert receive_failures() - failures >= 3
    assert not any("receiving from redis again" in r.getMessage() for r in caplog.records)
    proxy.flow()
    carries(from_server(here, ben.id), far, timeout=10)
    assert any("receiving from redis again" in r.getMessage() for r in caplog.records)


def test_a_quiet_queue_is_checked_without_failures_or_reconnects(
    client: ApiClient,
    proxy: TcpProxy,
    queued: Callable[..., LiveServer],
    phones: list[Phone],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No emits for longer than the detection bound is no reason to give the link up: the
    listener pings, Redis answers, and it goes on reading on the same connection."""
    here, there, ben, far = listening_pair(
        client, proxy, queued, phones, REDIS_RECEIVE_CHECK_SECONDS=1
    )
    sent = pings(there, monkeypatch)
    accepted, failures = proxy.accepted, receive_failures()

    # Four answered checks: at least four seconds without an emit, twice the bound of 2 s.
    wait_until(lambda: len(sent) >= 4, timeout=20, what="the quiet listener to ping Redis")
    carries(from_server(here, ben.id), far, timeout=2)

    assert proxy.accepted == accepted, "no connection was opened: the listener kept its own"
    assert receive_failures() == failures
    assert not receive_errors(proxy, caplog)
    assert min(b - a for a, b in itertools.pairwise(sent)) >= 0.9, "no busy pinging"


def test_bids_are_answered_at_once_on_a_dead_link_and_cross_processes_again_within_the_bound(
    client: ApiClient,
    proxy: TcpProxy,
    queued: Callable[..., LiveServer],
    phones: list[Phone],
) -> None:
    """Publishing (and the rate limiter) give up on a dead link after REDIS_TIMEOUT_MS and
    open a new one; the listener across finds its own dead within its bound."""
    url = through(proxy)
    here = queued(REDIS_URL=url, REDIS_TIMEOUT_MS=200, REDIS_RECEIVE_CHECK_SECONDS=1)
    there = queued(REDIS_URL=url, REDIS_TIMEOUT_MS=200, REDIS_RECEIVE_CHECK_SECONDS=1)
    ana, ben = client.couple()
    near, far = Phone(here.url, ben.access_token).connect(), Phone(there.url, ben.access_token)
    phones.extend([near, far.connect()])
    listening(here, far, ben.id)
    timed_bid(here, ana)  # the rate limiter's connection is open, and dies with the others

    proxy.black_hole()
    cut = time.monotonic()
    for _ in range(3):
        took, sent = timed_bid(here, ana)
        assert took < 1.0, f"POST /bids took {took:.2f} s on a dead link to Redis"
        near.wait_for("bid.created", lambda e, bid=sent: e["data"]["id"] == bid["id"])

    listening(here, far, ben.id)
    assert time.monotonic() - cut < 2 + 3, "events cross processes again within the bound"
    _, after = timed_bid(here, ana)
    far.wait_for("bid.created", lambda e: e["data"]["id"] == after["id"])
