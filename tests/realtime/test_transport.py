"""The WebSocket transport as deployed: gunicorn's gevent worker, sockets detached from requests.

The rest of the suite serves Socket.IO from werkzeug's threads, where the request's thread reads
the socket; here `reach serve` runs in a subprocess, so the event-loop watcher, the drain task
and the pinger of service/realtime/transport/ are what carry every packet. Engine.IO pings
every second (SOCKET_PING_INTERVAL=1) so that heartbeats and ping timeouts happen in seconds.
"""

from __future__ import annotations

import contextlib
import json
import re
import resource
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websocket  # websocket-client, python-socketio's client transport
from engineio import packet as engineio_packet

from tests.support.client import ApiClient, Person
from tests.support.phones import Phone
from tests.support.served import reach_serve
from tests.support.waiting import wait_until

PING_INTERVAL, PING_TIMEOUT = 1, 1


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with reach_serve(
        tmp_path_factory.mktemp("served"),
        SOCKET_PING_INTERVAL=str(PING_INTERVAL),
        SOCKET_PING_TIMEOUT=str(PING_TIMEOUT),
        RATELIMIT_AUTH="1000 per minute",
        RATELIMIT_JOIN="1000 per minute",
    ) as url:
        yield url


@pytest.fixture
def api(served: str) -> Iterator[ApiClient]:
    client = ApiClient(served)
    yield client
    client.http.close()


@pytest.fixture
def devices(served: str) -> Iterator[list[Phone]]:
    made: list[Phone] = []
    yield made
    for device in made:
        device.disconnect()


def phone(served: str, devices: list[Phone], person: Person, **connect: Any) -> Phone:
    device = Phone(served, person.access_token).connect(**connect)
    devices.append(device)
    return device


def metric(api: ApiClient, series: str) -> int | None:
    """The value of one series of the served process's GET /metrics, if it reports it."""
    found = re.search(rf"^{re.escape(series)} ([\d.]+)$", api.get("/metrics").text, re.M)
    return int(float(found.group(1))) if found else None


def open_sockets(api: ApiClient) -> int:
    """Member sockets the served process counts as connected."""
    return metric(api, 'reach_socket_connections{namespace="members"}') or 0


def send_bid(api: ApiClient, sender: Person) -> dict[str, Any]:
    response = api.post(
        "/api/v1/bids", as_=sender, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def raw_socket(served: str) -> websocket.WebSocket:
    """A bare WebSocket to the Engine.IO endpoint (reads time out after 0.5 s)."""
    ws = websocket.create_connection(
        served.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=5
    )
    ws.settimeout(0.5)
    return ws


def receive(ws: websocket.WebSocket, within: float = 5) -> str | None:
    """The next text message, or None if none came within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            return str(ws.recv())
        except websocket.WebSocketTimeoutException:
            continue
    return None


def raw_member_socket(served: str, person: Person) -> websocket.WebSocket:
    """A bare WebSocket that signs in over Engine.IO/Socket.IO by hand and answers nothing."""
    ws = raw_socket(served)
    opened = receive(ws)
    assert opened is not None and opened.startswith("0"), opened  # Engine.IO OPEN
    ws.send("40" + json.dumps({"token": person.access_token}))  # Socket.IO CONNECT with auth
    connected = receive(ws)
    while connected == "2":  # an Engine.IO PING may come first; it stays unanswered here
        connected = receive(ws)
    assert connected is not None and connected.startswith("40"), connected
    return ws


def until_closed(ws: websocket.WebSocket, within: float) -> int:
    """Read (PINGs and CLOSE only) until the server closes the WebSocket; its close code."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            continue
        except websocket.WebSocketConnectionClosedException:
            return 1006  # closed without a closing handshake
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
        assert data in (b"2", b"1"), data  # Engine.IO PING, CLOSE
    raise AssertionError(f"the server did not close the socket within {within} s")


def pings_seen(device: Phone) -> list[float]:
    """When the phone's Engine.IO client receives each server PING (it answers every one)."""
    seen: list[float] = []
    eio = device.client.eio
    receive = eio._receive_packet

    def counting(pkt: Any) -> Any:
        if pkt.packet_type == engineio_packet.PING:
            seen.append(time.monotonic())
        return receive(pkt)

    eio._receive_packet = counting
    return seen


def test_a_phone_stays_connected_across_heartbeats_and_receives_bids(
    served: str, api: ApiClient, devices: list[Phone]
) -> None:
    ana, ben = api.couple()
    bens_phone = phone(served, devices, ben)
    pings = pings_seen(bens_phone)
    wait_until(lambda: len(pings) >= 4, timeout=4 * (PING_INTERVAL + PING_TIMEOUT) + 5)

    assert bens_phone.client.connected
    assert bens_phone.named("disconnect") == []
    bid = send_bid(api, ana)
    received = bens_phone.wait_for("bid.created", lambda e: e["data"]["id"] == bid["id"])
    assert received["data"]["sender_id"] == ana.id


def test_a_phone_that_starts_on_long_polling_upgrades_to_websocket(
    served: str, api: ApiClient, devices: list[Phone]
) -> None:
    ana, ben = api.couple()
    bens_phone = phone(served, devices, ben, transports=("polling", "websocket"))
    wait_until(lambda: bens_phone.client.transport() == "websocket", timeout=5)

    bid = send_bid(api, ana)
    bens_phone.wait_for("bid.created", lambda e: e["data"]["id"] == bid["id"])
    pings = pings_seen(bens_phone)
    wait_until(lambda: len(pings) >= 2, timeout=2 * (PING_INTERVAL + PING_TIMEOUT) + 5)
    assert bens_phone.client.connected
    assert bens_phone.named("disconnect") == []


def test_many_events_arrive_in_order_on_one_socket(
    served: str, api: ApiClient, devices: list[Phone]
) -> None:
    ana, ben = api.couple()
    bens_phone = phone(served, devices, ben)
    sent = [send_bid(api, ana)["id"] for _ in range(30)]

    wait_until(lambda: len(bens_phone.named("bid.created")) == 30, timeout=10)
    assert [e["data"]["id"] for e in bens_phone.named("bid.created")] == sent
    cursors = [e["cursor"] for e in bens_phone.named("bid.created")]
    assert cursors == sorted(cursors)


def test_a_phone_that_stops_answering_pings_is_dropped(served: str, api: ApiClient) -> None:
    _, ben = api.couple()
    before = open_sockets(api)
    ws = raw_member_socket(served, ben)
    try:
        wait_until(lambda: open_sockets(api) == before + 1, timeout=5)
        started = time.monotonic()
        until_closed(ws, within=15)  # PINGs stay unanswered
        # Pinged after PING_INTERVAL, dropped once PING_TIMEOUT passed without a PONG.
        assert time.monotonic() - started < PING_INTERVAL + PING_TIMEOUT + 5
        wait_until(lambda: open_sockets(api) == before, timeout=5)
    finally:
        if ws.connected:
            ws.close()


def test_a_phone_that_answers_pings_by_hand_is_kept(served: str, api: ApiClient) -> None:
    _, ben = api.couple()
    ws = raw_member_socket(served, ben)
    try:
        pings, started = 0, time.monotonic()
        while time.monotonic() - started < 3 * (PING_INTERVAL + PING_TIMEOUT):
            message = receive(ws, within=1)
            if message == "2":
                pings += 1
                ws.send("3")  # PONG
        assert pings >= 2
        assert ws.connected
    finally:
        ws.close()


def test_a_phone_that_hangs_up_is_forgotten(
    served: str, api: ApiClient, devices: list[Phone]
) -> None:
    _, ben = api.couple()
    before = open_sockets(api)
    bens_phone = phone(served, devices, ben)
    wait_until(lambda: open_sockets(api) == before + 1, timeout=5)

    bens_phone.disconnect()
    wait_until(lambda: open_sockets(api) == before, timeout=5)


def test_signing_out_closes_the_sessions_socket(
    served: str, api: ApiClient, devices: list[Phone]
) -> None:
    _, ben = api.couple()
    bens_phone = phone(served, devices, ben)
    before = open_sockets(api)

    signed_out = api.post("/api/v1/auth/logout", as_=ben, json={"refresh_token": ben.refresh_token})
    assert signed_out.status_code == 204, signed_out.text
    bens_phone.wait_for("disconnect", timeout=5)
    wait_until(lambda: open_sockets(api) == before - 1, timeout=5)


OVER_THE_LIMIT = "x" * 70_000  # MAX_CONTENT_LENGTH: 64 KiB


def assert_too_large(problem: Any) -> None:
    assert isinstance(problem, dict), problem
    assert problem["status"] == 413 and problem["code"] == "bad_request", problem
    assert problem["title"] == "Request Entity Too Large", problem
    assert "65536 bytes" in problem["detail"], problem


def test_an_event_over_the_size_limit_is_acked_with_413_and_the_socket_stays(
    served: str, api: ApiClient, devices: list[Phone]
) -> None:
    """A phone that emits too much learns why (a problem in the ack, not a bare close it
    would answer by reconnecting and sending the same event again), and keeps its socket."""
    ana, ben = api.couple()
    anas_phone = phone(served, devices, ana)
    note = {"client_id": str(uuid.uuid4()), "kind": "share", "note": OVER_THE_LIMIT}
    assert_too_large(anas_phone.call("bid.send", note))
    attached = {"client_id": str(uuid.uuid4()), "kind": "share", "note": OVER_THE_LIMIT.encode()}
    assert_too_large(anas_phone.call("bid.send", attached))  # a binary attachment
    anas_phone.client.emit("typing", {"note": OVER_THE_LIMIT})  # no ack asked: dropped

    assert anas_phone.client.connected and anas_phone.named("disconnect") == []
    sent = anas_phone.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "share"})
    assert sent["status"] == "sent", sent
    assert [bid["id"] for bid in api.get("/api/v1/bids", as_=ben).json()["items"]] == [sent["id"]]


def test_an_event_over_the_size_limit_is_answered_without_being_read_whole(
    served: str, api: ApiClient
) -> None:
    """Sent by hand: the ack names the event's id, whatever follows the head; a connect whose
    auth is too large is refused with the same problem."""
    _, ben = api.couple()
    ws = raw_member_socket(served, ben)
    ws.send("4217" + json.dumps(["bid.send", {"note": OVER_THE_LIMIT}]))
    answer = receive(ws)
    while answer == "2":  # an Engine.IO PING may come first
        ws.send("3")
        answer = receive(ws)
    assert answer is not None and answer.startswith("4317["), answer  # the ack of event 17
    assert_too_large(json.loads(answer[4:])[0])
    ws.close()

    ws = raw_socket(served)
    opened = receive(ws)
    assert opened is not None and opened.startswith("0"), opened  # Engine.IO OPEN
    ws.send("40" + json.dumps({"token": ben.access_token, "extra": OVER_THE_LIMIT}))
    refused = receive(ws)
    assert refused is not None and refused.startswith("44"), refused  # CONNECT_ERROR
    assert_too_large(json.loads(refused[2:])["data"])
    ws.close()


ARABIC_INDIC = str.maketrans(
    "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
)


def test_an_ack_id_over_the_size_limit_is_read_in_ascii_digits_only(
    served: str, api: ApiClient, devices: list[Phone]
) -> None:
    """The head of an event over the limit was read with `\\d`, which takes any script's
    digits: `2\u0661[...]` had its 413 sent as the ack of the phone's call number 1, which may
    be another event waiting for its own answer. Socket.IO writes ack ids in ASCII digits; an
    event written otherwise asked for no ack, and is dropped."""
    ana, _ = api.couple()
    device = phone(served, devices, ana)
    misread: list[Any] = []
    ack_id = device.client._generate_ack_id("/", lambda *args: misread.append(args))
    head = "2" + str(ack_id).translate(ARABIC_INDIC)
    device.client.eio.send(head + json.dumps(["bid.send", {"note": OVER_THE_LIMIT}]))
    # Packets of one socket are read in order: this answer comes after the one above.
    sent = device.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "share"})
    assert sent["status"] == "sent", sent
    assert misread == []
    assert device.client.connected


def _handshake(served: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    port = int(served.rsplit(":", 1)[1])
    lines = ["GET /socket.io/?EIO=4&transport=websocket HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    return head[0], {name.lower(): value for name, value in fields.items()}


def _upgrade_request(key: str, **extra: str) -> dict[str, str]:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key}
    return {**headers, "Sec-WebSocket-Version": "13", **extra}


def test_compression_is_declined_and_the_handshake_follows_rfc_6455(served: str) -> None:
    deflate = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    status, headers = _handshake(served, _upgrade_request("dGhlIHNhbXBsZSBub25jZQ==", **deflate))
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3
    assert "sec-websocket-extensions" not in headers


def test_an_upgrade_without_a_valid_key_is_refused(served: str) -> None:
    status, _ = _handshake(served, _upgrade_request("not-a-key"))
    assert status.startswith("HTTP/1.1 400")


def test_bid_events_reach_every_socket_of_the_recipient(
    served: str, api: ApiClient, devices: list[Phone]
) -> None:
    ana, ben = api.couple()
    bens_phone, bens_tablet = phone(served, devices, ben), phone(served, devices, ben)
    bid = send_bid(api, ana)
    for device in (bens_phone, bens_tablet):
        device.wait_for("bid.created", lambda e: e["data"]["id"] == bid["id"])


def frame_starting(ws: websocket.WebSocket, prefix: bytes, within: float = 5) -> bytes:
    """The next text frame that starts with `prefix`, as its bytes (PINGs answered)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            _, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        if data == b"2":
            ws.send("3")
        elif data.startswith(prefix):
            return bytes(data)
    raise AssertionError(f"no frame starting {prefix!r} within {within} s")


def test_text_outside_ascii_crosses_the_socket_as_utf8_byte_for_byte(
    served: str, api: ApiClient
) -> None:
    """A message written over the socket in UTF-8 comes back in its ack and reaches the
    partner in the same bytes, not escaped (`\\ud83d\\ude14`: 12 bytes for an emoji of 4)."""
    ana, ben = api.couple()
    started = {"client_id": str(uuid.uuid4()), "topic": "\U0001f614"}
    repair = api.post("/api/v1/repairs", as_=ana, json=started).json()
    words = "I felt \U0001f614 and then \u2764\ufe0f \U0001f44b\U0001f3fd caf\u00e9"
    ana_ws, ben_ws = raw_member_socket(served, ana), raw_member_socket(served, ben)
    try:
        message = {"repair_id": repair["id"], "client_id": str(uuid.uuid4()), "body": words}
        ana_ws.send("421" + json.dumps(["repair.message", message], ensure_ascii=False))
        ack = frame_starting(ana_ws, b"431")
        event = frame_starting(ben_ws, b'42["repair.message"')
    finally:
        ana_ws.close()
        ben_ws.close()
    for frame in (ack, event):
        text = frame.decode("utf-8")  # strictly: valid UTF-8
        assert words.encode() in frame and "\\u" not in text, text
    assert json.loads(ack[3:])[0]["body"] == words
    assert json.loads(event[2:])[1]["data"]["body"] == words


def test_a_full_process_refuses_one_more_socket_with_1013(tmp_path_factory: Any) -> None:
    with reach_serve(
        tmp_path_factory.mktemp("full"),
        GUNICORN_WORKER_CONNECTIONS="3",
        RATELIMIT_AUTH="1000 per minute",
        RATELIMIT_JOIN="1000 per minute",
    ) as url:
        api = ApiClient(url)
        _, ben = api.couple()
        api.http.close()  # no keep-alive connection left to hold one of the three
        held = [raw_member_socket(url, ben) for _ in range(3)]
        assert until_closed(raw_socket(url), within=5) == 1013  # try again later
        assert all(ws.connected for ws in held)
        for ws in held:
            ws.close()


# -- open files: as many sockets as the settings ask for, or fewer and refused cleanly --------

# Room the test process itself keeps besides the sockets it opens.
OWN_FILES = 256


def socket_capacity(api: ApiClient) -> int:
    """WebSockets the served process may hold."""
    capacity = metric(api, "reach_socket_capacity")
    assert capacity is not None, "no reach_socket_capacity in /metrics"
    return capacity


def event_named(ws: websocket.WebSocket, name: str, within: float = 5) -> list[Any]:
    """The next Socket.IO event called `name` on a raw member socket: [name, data]."""
    deadline = time.monotonic() + within
    while (message := receive(ws, within=max(0.0, deadline - time.monotonic()))) is not None:
        if message.startswith("42"):
            event: list[Any] = json.loads(message[2:])
            if event[0] == name:
                return event
    raise AssertionError(f"no {name} within {within} s")


@contextlib.contextmanager
def opening_files_for(count: int) -> Iterator[None]:
    """Let this test process open `count` sockets and more (its soft limit raised, up to the
    hard one, and set back afterwards)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + OWN_FILES
    assert hard == resource.RLIM_INFINITY or hard >= wanted, f"open files hard limit {hard}"
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_process_started_under_a_low_soft_limit_raises_it_and_holds_its_sockets(
    tmp_path_factory: Any,
) -> None:
    """A container's soft limit (1,024 under containerd 2; 256 here) below what the settings
    need: the process raises it, holds more sockets than the limit it started with, and still
    answers REST."""
    sockets, started_with = 300, 256
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with (
        opening_files_for(sockets),
        reach_serve(
            tmp_path_factory.mktemp("raised"),
            open_files=(started_with, hard),
            GUNICORN_WORKER_CONNECTIONS=str(sockets),
            SOCKETS_PER_USER=str(sockets),
            RATELIMIT_AUTH="1000 per minute",
            RATELIMIT_JOIN="1000 per minute",
        ) as url,
    ):
        api = ApiClient(url)
        ana, ben = api.couple()
        assert socket_capacity(api) == sockets
        held = [raw_member_socket(url, ben) for _ in range(sockets - 10)]
        bid = send_bid(api, ana)
        for ws in (held[0], held[-1]):
            assert event_named(ws, "bid.created")[1]["data"]["id"] == bid["id"]
        assert all(ws.connected for ws in held)
        for ws in held:
            ws.close()
        api.http.close()


def test_a_process_whose_hard_limit_is_too_low_holds_fewer_sockets_and_still_answers(
    tmp_path_factory: Any,
) -> None:
    """A hard limit under what GUNICORN_WORKER_CONNECTIONS needs: the process holds as many
    sockets as fit, refuses one more with 1013 (try again later), and REST keeps answering."""
    limit = 600
    with (
        opening_files_for(limit),
        reach_serve(
            tmp_path_factory.mktemp("short"),
            open_files=(limit, limit),
            GUNICORN_WORKER_CONNECTIONS="1000",
            SOCKETS_PER_USER="1000",
            RATELIMIT_AUTH="1000 per minute",
            RATELIMIT_JOIN="1000 per minute",
        ) as url,
    ):
        api = ApiClient(url)
        ana, ben = api.couple()
        capacity = socket_capacity(api)
        assert 0 < capacity < limit // 2
        held = [raw_member_socket(url, ben) for _ in range(capacity)]
        assert until_closed(raw_socket(url), within=5) == 1013
        bid = send_bid(api, ana)
        assert event_named(held[-1], "bid.created")[1]["data"]["id"] == bid["id"]
        assert all(ws.connected for ws in held)
        for ws in held:
            ws.close()
        api.http.close()


def test_a_second_connect_to_a_joined_namespace_is_refused_with_a_problem(
    served: str, api: ApiClient
) -> None:
    """A client that sends CONNECT again on a socket already in '/' (a reconnect loop's bug)
    got python-socketio's bare "Unable to connect", where every refusal carries a problem; the
    socket stays in the namespace it joined, its events still answered."""
    _, ben = api.couple()
    ws = raw_member_socket(served, ben)
    try:
        ws.send("40" + json.dumps({"token": ben.access_token}))
        refused = receive(ws)
        while refused == "2":  # an Engine.IO PING may come first
            ws.send("3")
            refused = receive(ws)
        assert refused is not None and refused.startswith("44"), refused
        refusal = json.loads(refused[2:])
        assert refusal["data"]["status"] == 409 and refusal["data"]["code"] == "conflict"
        assert refusal["message"] == refusal["data"]["detail"]
        ws.send('421["no.such.event"]')  # an event with ack id 1: still answered in '/'
        answered = receive(ws)
        while answered == "2":
            ws.send("3")
            answered = receive(ws)
        assert answered is not None and answered.startswith("431"), answered
    finally:
        ws.close()
