"""What a client sends that the server must not take at its word: connection events emitted
as ordinary events, events with more than one argument, events the server does not know."""

from __future__ import annotations

import inspect
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import socketio
from flask import Flask

from service.dashboard.live import NAMESPACE as OPS
from service.extensions import db
from service.realtime import members
from service.services import ops_accounts
from service.services.ops_audit import CommandLine
from tests.dashboard.conftest import OperatorAccount, OpsClient
from tests.support import repairs as repair_helpers
from tests.support.client import ApiClient, Person
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.waiting import wait_until

Connect = Callable[[str | None], Phone]
Problem = dict[str, Any]


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """Exceptions that escape a thread of the test process (the live server's handlers run in
    threads: a handler that raises leaves a traceback on stderr and no ack)."""
    caught: list[BaseException] = []

    def record(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            caught.append(args.exc_value)

    monkeypatch.setattr(threading, "excepthook", record)
    return caught


def is_problem(answer: Any, status: int, code: str) -> bool:
    return isinstance(answer, dict) and answer.get("status") == status and answer["code"] == code


def rooms_of(app: Flask, sid: str, namespace: str = "/") -> set[str]:
    return set(app.extensions["socketio"].server.manager.get_rooms(sid, namespace))


# --- connection events are the server's own ------------------------------------------------


def test_the_gate_sits_where_python_socketio_dispatches_client_events(app: Flask) -> None:
    """service/realtime/inbound.py wraps Server._handle_event; if python-socketio renames it or
    changes its arguments, the gate would silently stop screening: fail here instead."""
    server = app.extensions["socketio"].server
    parameters = list(inspect.signature(socketio.Server._handle_event).parameters)
    assert parameters == ["self", "eio_sid", "namespace", "id", "data"]
    assert server._handle_event.__qualname__.startswith("install.")
    # The cap on a socket's events in flight: each is handed to `_handle_event_internal`, with
    # the Engine.IO sid third, in a background task once it is let through.
    internal = list(inspect.signature(socketio.Server._handle_event_internal).parameters)
    assert internal == ["self", "server", "sid", "eio_sid", "data", "namespace", "id"]
    assert "self._handle_event_internal, self, sid," in inspect.getsource(
        socketio.Server._handle_event
    )
    assert server._handle_event_internal.__qualname__.startswith("install.")
    assert {"connect", "disconnect"} <= set(server.reserved_events)
    # Unreadable packets: decoded by `packet_class` inside the Engine.IO message handler.
    assert "self.packet_class(encoded_packet=data)" in inspect.getsource(
        socketio.Server._handle_eio_message
    )
    assert server.eio.handlers["message"].__qualname__.startswith("drop_unreadable.")


def test_fake_disconnects_do_not_lift_the_cap_on_an_accounts_sockets(
    server_with: Callable[..., LiveServer],
) -> None:
    """A phone that emits `disconnect` must stay counted against SOCKETS_PER_USER and stay
    in sight of the session sweep (which reads the open sockets' sessions)."""
    server = server_with(SOCKETS_PER_USER=3)
    ana = ApiClient(server.url).register("Ana")
    held: list[Phone] = []
    try:
        answers = []
        for _ in range(3):
            device = Phone(server.url, ana.access_token).connect()
            held.append(device)
            device.client.emit("disconnect", "transport close")  # no ack asked: dropped
            answers.append(device.call("disconnect", {}))
        extra = Phone(server.url, ana.access_token)
        held.append(extra)  # disconnected afterwards, should it get in
        with pytest.raises(socketio.exceptions.ConnectionError):
            extra.connect()
        assert extra.refusal["data"]["code"] == "rate_limited"
        held.remove(extra)
        with server.app.app_context():
            sockets = members.open_sockets()
            assert sockets.count(ana.id) == 3
            assert {d.client.get_sid("/") for d in held} <= set(sockets.sessions())
        assert all(d.client.connected for d in held)
        assert all(is_problem(a, 400, "bad_request") for a in answers), answers
        assert "connection event" in answers[0]["detail"]

        # A real disconnect still runs the handler: the slot is free again.
        held.pop().disconnect()
        with server.app.app_context():
            wait_until(lambda: members.open_sockets().count(ana.id) == 2, 5, "the slot")
        held.append(Phone(server.url, ana.access_token).connect())
    finally:
        for device in held:
            device.disconnect()


def test_a_fake_connect_changes_nothing_and_raises_nothing(
    app: Flask, client: ApiClient, phone: Connect, thread_errors: list[BaseException]
) -> None:
    ana = client.register("Ana")
    device = phone(ana.access_token)
    sid = device.client.get_sid("/")
    rooms = rooms_of(app, sid)
    for auth in ({}, {"token": ana.access_token}, None):
        answer = device.call("connect", auth)
        assert is_problem(answer, 400, "bad_request"), answer
    assert device.client.connected
    assert rooms_of(app, sid) == rooms
    with app.app_context():
        assert members.open_sockets().count(ana.id) == 1
    assert thread_errors == []


@pytest.mark.parametrize(
    "name", ["connect_error", "disconnecting", "newListener", "removeListener", "*"]
)
def test_other_reserved_names_are_refused(client: ApiClient, phone: Connect, name: str) -> None:
    """Socket.IO clients keep these names for themselves; "*" is python-socketio's catch-all."""
    device = phone(client.register("Ana").access_token)
    assert is_problem(device.call(name, "x"), 400, "bad_request")


@pytest.mark.parametrize("name", [["bid.send"], {"a": 1}, None, 7])
def test_events_not_named_with_a_string_are_refused(
    client: ApiClient, phone: Connect, thread_errors: list[BaseException], name: Any
) -> None:
    device = phone(client.register("Ana").access_token)
    answer = device.call(name, {})
    assert is_problem(answer, 400, "bad_request"), answer
    assert thread_errors == []


def test_packets_without_an_event_name_leave_no_traceback(
    client: ApiClient, phone: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """An EVENT packet whose data is an empty list or an object: python-socketio raised while
    logging its name (engineio logs "message handler error" with the traceback)."""
    device = phone(client.register("Ana").access_token)
    with caplog.at_level(logging.ERROR):
        for raw in ("2[]", "2{}", '2{"0":"bid.send"}', "2[]"):
            device.client.eio.send(raw)  # a Socket.IO EVENT packet, no ack asked
        # Packets of one socket are read in order; the refusal of this one is sent at once.
        assert is_problem(device.call("disconnect", {}), 400, "bad_request")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert device.client.connected


@pytest.mark.parametrize(
    "raw",
    [
        "2" + "[" * 5000,  # deeper than Python's JSON parser goes
        '2["bid.send", {',  # JSON that does not parse
        "x[]",  # not a packet type
        "9[]",  # a type that does not exist
        '4{"message": "x"}',  # CONNECT_ERROR: only the server sends it
    ],
    ids=["deep", "broken-json", "not-a-type", "unknown-type", "connect-error"],
)
def test_unreadable_packets_are_dropped_without_a_traceback(
    client: ApiClient, phone: Connect, caplog: pytest.LogCaptureFixture, raw: str
) -> None:
    device = phone(client.register("Ana").access_token)
    with caplog.at_level(logging.INFO):
        device.client.eio.send(raw)
        # Packets of one socket are read in order: this answer comes after the one above.
        assert is_problem(device.call("no.such.event", {}), 404, "not_found")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [r.exc_info for r in caplog.records if r.exc_info] == []
    assert "unreadable socket packet dropped" in [r.getMessage() for r in caplog.records]
    assert device.client.connected


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        ('{"client_id": "x", "kind": "share", "note": ' + "9" * 101 + "}", "at most 100 digits"),
        ('{"client_id": "x", "kind": ', "not valid JSON"),
        ("[" * 5000, "nested too deeply"),
    ],
    ids=["long-integer", "broken-json", "too-deep-to-parse"],
)
def test_an_event_whose_payload_cannot_be_read_is_answered_when_it_asks(
    client: ApiClient, phone: Connect, caplog: pytest.LogCaptureFixture, payload: str, said: str
) -> None:
    """An event asking for an ack whose JSON could not be read (an integer longer than the
    socket's JSON reads, JSON cut short, nesting deeper than the parser goes) was dropped
    without an answer: the phone waited out its timeout and sent the same again. Its head
    names the ack: the answer is the 400 REST gives such a body, and nothing is written."""
    ana, _ = client.couple()
    device = phone(ana.access_token)
    answers: list[Any] = []
    ack_id = device.client._generate_ack_id("/", lambda *args: answers.append(args))
    with caplog.at_level(logging.INFO):
        device.client.eio.send(f'2{ack_id}["bid.send", {payload}]')
        wait_until(lambda: bool(answers), what="the ack")
    assert len(answers) == 1 and is_problem(answers[0][0], 400, "bad_request"), answers
    assert said in answers[0][0]["detail"], answers
    assert [r.exc_info for r in caplog.records if r.exc_info] == []
    assert client.get("/api/v1/bids", as_=ana).json()["items"] == []
    bid = device.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "help"})
    assert bid["sender_id"] == ana.id, bid


def test_events_outside_a_joined_namespace_and_stray_acks_log_no_warnings(
    client: ApiClient, phone: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """An event to a namespace the socket has not joined (another one, or before its connect
    is answered) and an ACK the server never asked for were each logged as a warning by
    python-socketio: a client could write the process's log full at its packets' pace. They
    are dropped with a debug line; nothing is answered outside a joined namespace."""
    device = phone(client.register("Ana").access_token)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            device.client.eio.send('2/nope,["bid.send", {}]')
            device.client.eio.send('2/ops,7["ops.overview", {}]')
            device.client.eio.send('37["x"]')  # an ACK of nothing the server asked
            device.client.eio.send('61-8[{"_placeholder": true, "num": 0}]')
            device.client.eio.send(b"\x00")
        # Packets of one socket are read in order: this answer comes after the ones above.
        assert is_problem(device.call("no.such.event", {}), 404, "not_found")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert device.client.connected


@pytest.mark.parametrize("frame", ["zz", ""], ids=["no-packet-type", "empty"])
def test_a_frame_that_is_not_engine_io_closes_the_socket_without_a_traceback(
    client: ApiClient, phone: Connect, caplog: pytest.LogCaptureFixture, frame: str
) -> None:
    device = phone(client.register("Ana").access_token)
    with caplog.at_level(logging.INFO):
        device.client.eio.ws.send(frame)  # below Engine.IO: a WebSocket frame of its own
        wait_until(lambda: not device.client.connected, what="the server to close the socket")
    assert [r.exc_info for r in caplog.records if r.exc_info] == []
    assert any("not an Engine.IO packet" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "placeholder",
    ['{"_placeholder": true, "num": 1}', '{"_placeholder": true, "num": "0"}'],
    ids=["no-such-attachment", "not-by-number"],
)
def test_a_binary_event_whose_attachments_do_not_fit_leaves_the_socket_working(
    client: ApiClient, phone: Connect, caplog: pytest.LogCaptureFixture, placeholder: str
) -> None:
    """python-socketio raised while putting such an event together and kept it waiting for
    its attachments: every later packet of the socket was taken for one (a traceback each),
    so the phone's writes got no ack and did nothing while its socket stayed open."""
    ana, _ = client.couple()
    device = phone(ana.access_token)
    answers: list[Any] = []
    ack_id = device.client._generate_ack_id("/", lambda *args: answers.append(args))
    with caplog.at_level(logging.INFO):
        # A BINARY_EVENT with one attachment, asking for an ack, then the attachment.
        device.client.eio.send(f'51-{ack_id}["bid.send", {placeholder}]')
        device.client.eio.send(b"\x00")
        bid = device.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "help"})
    assert bid["sender_id"] == ana.id, bid
    assert len(answers) == 1 and is_problem(answers[0][0], 400, "bad_request"), answers
    assert "placeholders" in answers[0][0]["detail"]
    assert [r.exc_info for r in caplog.records if r.exc_info] == []
    assert "unreadable socket packet dropped" in [r.getMessage() for r in caplog.records]
    assert len(client.get("/api/v1/bids", as_=ana).json()["items"]) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ('{{"client_id": "{id}", "kind": "comfort", "note": "a", "note": "b"}}', "note"),
        ('{{"client_id": "{id}", "kind": "share", "kind": "help"}}', "kind"),
    ],
    ids=["note", "kind"],
)
def test_an_event_giving_a_field_twice_is_refused_as_a_rest_body_is(
    client: ApiClient, phone: Connect, payload: str, field: str
) -> None:
    """`{"note": "a", "note": "b"}` over the socket kept the last value (a bid with note "b"),
    where the same body over REST is a 422 naming the field: the ack is that 422, and no bid
    is written. The phone's next event is handled as usual."""
    ana, _ = client.couple()
    device = phone(ana.access_token)
    answers: list[Any] = []
    ack_id = device.client._generate_ack_id("/", lambda *args: answers.append(args))
    body = payload.format(id=uuid.uuid4())
    device.client.eio.send(f'2{ack_id}["bid.send", {body}]')  # an EVENT asking for an ack
    wait_until(lambda: bool(answers), what="the ack")
    rest = client.post(
        "/api/v1/bids", as_=ana, data=body, headers={"Content-Type": "application/json"}
    )
    assert rest.status_code == 422, rest.text
    assert answers == [(rest.json(),)], answers
    assert rest.json()["errors"] == {field: ["Give this field once."]}
    assert client.get("/api/v1/bids", as_=ana).json()["items"] == []
    bid = device.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "help"})
    assert bid["sender_id"] == ana.id, bid


@pytest.mark.parametrize("acked", [True, False], ids=["bid-acked", "typing-unacked"])
def test_a_binary_event_giving_a_field_twice_is_refused_as_a_json_one_is(
    client: ApiClient, phone: Connect, acked: bool
) -> None:
    """A BINARY_EVENT (one with a bytes attachment) kept the last of a field given twice, as
    python-socketio put its payload together again: a `typing` with `repair_id` twice reached
    the partner with the second. It is refused as the same event without an attachment is."""
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    first, last = (repair_helpers.start(client, ana)["id"] for _ in range(2))
    answers: list[Any] = []
    attachment = '"photo": {"_placeholder": true, "num": 0}'
    if acked:
        ack_id = ana_phone.client._generate_ack_id("/", lambda *args: answers.append(args))
        body = f'{{"client_id": "{uuid.uuid4()}", "kind": "share", "kind": "help", {attachment}}}'
        ana_phone.client.eio.send(f'51-{ack_id}["bid.send", {body}]')
    else:
        body = f'{{"repair_id": "{first}", "repair_id": "{last}", {attachment}}}'
        ana_phone.client.eio.send(f'51-["typing", {body}]')
    ana_phone.client.eio.send(b"\x00")
    if acked:
        wait_until(lambda: bool(answers), what="the ack")
        assert len(answers) == 1 and is_problem(answers[0][0], 422, "validation_error"), answers
        assert answers[0][0]["errors"] == {"kind": ["Give this field once."]}
        assert client.get("/api/v1/bids", as_=ana).json()["items"] == []
    # The socket works on: the next typing is the first the partner hears.
    ana_phone.client.emit("typing", {})
    assert ben_phone.wait_for("typing") == {"user_id": ana.id}
    assert ben_phone.named("typing") == [{"user_id": ana.id}]


ARABIC_INDIC = str.maketrans(
    "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
)


@pytest.mark.parametrize(
    "head",
    ["2{id}", "51-{id}", "5{one}-{ascii_id}"],
    ids=["event-id", "binary-event-id", "attachment-count"],
)
def test_ack_ids_and_attachment_counts_are_read_in_ascii_digits_only(
    client: ApiClient, phone: Connect, caplog: pytest.LogCaptureFixture, head: str
) -> None:
    """python-socketio read a packet's ack id and attachment count with `str.isdigit`, which
    takes any script's digits: `2\u0661[...]` was handled and its answer sent as the ack of
    the phone's call number 1, which may be another event waiting for its own answer. Socket.IO
    writes them in ASCII digits; a packet written otherwise is not one, and is dropped (its
    attachment with it)."""
    ana, _ = client.couple()
    device = phone(ana.access_token)
    misread: list[Any] = []
    ack_id = device.client._generate_ack_id("/", lambda *args: misread.append(args))
    written = head.format(
        id=str(ack_id).translate(ARABIC_INDIC), one="1".translate(ARABIC_INDIC), ascii_id=ack_id
    )
    payload = {"client_id": str(uuid.uuid4()), "kind": "share"}
    with caplog.at_level(logging.INFO):
        device.client.eio.send(written + json.dumps(["bid.send", payload]))
        if written.startswith("5"):
            device.client.eio.send(b"\x00")
        # Packets of one socket are read in order: this answer comes after the ones above.
        assert is_problem(device.call("no.such.event", {}), 404, "not_found")
    assert misread == []
    assert "unreadable socket packet dropped" in [r.getMessage() for r in caplog.records]
    assert client.get("/api/v1/bids", as_=ana).json()["items"] == []
    assert device.client.connected


class _RawAuth:
    """An `auth` written as it is given (JSON with a name twice, which `json.dumps` of a dict
    never writes)."""

    def __init__(self, text: str) -> None:
        self.text = text


class _RawAuthJSON:
    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        return obj.text if isinstance(obj, _RawAuth) else json.dumps(obj, **kwargs)

    loads = staticmethod(json.loads)


class _RawAuthPacket(socketio.packet.Packet):
    json = _RawAuthJSON


@pytest.mark.parametrize(
    "auth",
    [
        '{{"token": "{token}", "token": "{token}"}}',
        '{{"token": "not-a-token", "token": "{token}"}}',
        '{{"token": "{token}", "device": {{"os": "ios", "os": "android"}}}}',
    ],
    ids=["same-token", "last-token-valid", "nested"],
)
def test_a_connect_giving_a_field_twice_in_auth_is_refused(
    client: ApiClient, live_server: LiveServer, auth: str
) -> None:
    """The connect's `auth` kept the last value of a name given twice: a connect whose first
    `token` was not valid was let in on its second. It is refused with a 422 problem naming
    the field, in the shape of the other connect refusals."""
    ana = client.register("Ana")
    refusals: list[Any] = []
    device = socketio.Client(reconnection=False, serializer=_RawAuthPacket)
    device.on("connect_error", lambda data=None: refusals.append(data))
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            device.connect(
                live_server.url,
                auth=_RawAuth(auth.format(token=ana.access_token)),
                transports=["websocket"],
                wait_timeout=5,
            )
    finally:
        device.disconnect()
    assert len(refusals) == 1, refusals
    problem = refusals[0]["data"]
    field = "device.os" if "device" in auth else "token"
    assert is_problem(problem, 422, "validation_error"), refusals
    assert problem["errors"] == {field: ["Give this field once."]}
    assert refusals[0]["message"] == problem["detail"]
    with live_server.app.app_context():
        assert members.open_sockets().count(ana.id) == 0


@pytest.mark.parametrize(
    ("auth", "said"),
    [('{"token": ' + "1" * 101 + "}", "at most 100 digits"), ('{"token": "x', "not valid JSON")],
    ids=["long-integer", "broken-json"],
)
def test_a_connect_whose_auth_cannot_be_read_is_refused(
    live_server: LiveServer, auth: str, said: str
) -> None:
    """A connect whose `auth` was not JSON the server reads got no answer at all: the phone
    waited out its connect timeout, and tried again the same way. It is refused with the 400
    problem, in the shape of the other connect refusals."""
    refusals: list[Any] = []
    device = socketio.Client(reconnection=False, serializer=_RawAuthPacket)
    device.on("connect_error", lambda data=None: refusals.append(data))
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            device.connect(
                live_server.url, auth=_RawAuth(auth), transports=["websocket"], wait_timeout=5
            )
    finally:
        device.disconnect()
    assert len(refusals) == 1, refusals
    assert is_problem(refusals[0]["data"], 400, "bad_request"), refusals
    assert said in refusals[0]["data"]["detail"]
    assert refusals[0]["message"] == refusals[0]["data"]["detail"]


@pytest.mark.parametrize("namespace", ["/nope", "/Ops", "/ops/"])
def test_a_connect_to_a_namespace_that_does_not_exist_is_refused_with_a_problem(
    client: ApiClient, live_server: LiveServer, namespace: str
) -> None:
    """A connect to a namespace the server does not have (a typo in the app's URL) was refused
    with the bare string "Unable to connect", where every other refusal carries `message`
    and a problem object in `data`: an app reading `data.code` read nothing."""
    ana = client.register("Ana")
    refusals: list[Any] = []
    device = socketio.Client(reconnection=False)
    device.on("connect_error", lambda data=None: refusals.append(data), namespace=namespace)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            device.connect(
                live_server.url,
                namespaces=[namespace],
                auth={"token": ana.access_token},
                transports=["websocket"],
                wait_timeout=5,
            )
    finally:
        device.disconnect()
    assert len(refusals) == 1, refusals
    assert isinstance(refusals[0], dict), refusals
    assert is_problem(refusals[0]["data"], 404, "not_found"), refusals
    assert refusals[0]["message"] == refusals[0]["data"]["detail"]
    assert "connect to the namespace '/'" in refusals[0]["message"]


# --- the /ops namespace ----------------------------------------------------------------------


@pytest.fixture
def ops_cookie(app: Flask, live_server: LiveServer) -> Iterator[str]:
    account = OperatorAccount(f"ops-{uuid.uuid4().hex[:8]}@reach.test")
    with app.app_context():
        ops_accounts.create_operator(
            db.session, account.email, account.password, by=CommandLine.here()
        )
    browser = OpsClient(live_server.url)
    assert browser.sign_in(account).status_code == 302
    assert browser.cookie is not None
    yield browser.cookie
    browser.http.close()
    # Nobody watches the overview any more before the test's transaction is rolled back.
    assert app.extensions["reach.ops_live"].wait_idle(15)


def test_the_ops_namespace_ignores_fake_connection_events(
    app: Flask, live_server: LiveServer, ops_cookie: str, thread_errors: list[BaseException]
) -> None:
    figures = app.extensions["reach.ops_live"]
    listener = socketio.Client(reconnection=False)
    listener.connect(
        live_server.url,
        namespaces=[OPS],
        transports=["websocket"],
        headers={"Cookie": f"reach_ops={ops_cookie}"},
        wait_timeout=5,
    )
    try:
        assert figures.watchers == 1
        answers = [
            listener.call(name, {}, namespace=OPS, timeout=5) for name in ("disconnect", "connect")
        ]
        assert figures.watchers == 1  # a fake disconnect used to stop its figures
        assert listener.connected
        assert all(is_problem(a, 400, "bad_request") for a in answers), answers
    finally:
        listener.disconnect()
    assert thread_errors == []


# --- one argument per event ------------------------------------------------------------------


def write_payloads(client: ApiClient, ana: Person, ben: Person) -> dict[str, tuple[str, Any]]:
    """A valid payload of every socket write, and who may send it."""
    bid = client.post(
        "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "comfort"}
    ).json()
    repair = repair_helpers.start(client, ana)
    return {
        "bid.send": ("ana", {"client_id": str(uuid.uuid4()), "kind": "share"}),
        "bid.seen": ("ben", {"bid_id": bid["id"]}),
        "bid.respond": (
            "ben",
            {"bid_id": bid["id"], "client_id": str(uuid.uuid4()), "kind": "toward"},
        ),
        "repair.message": (
            "ana",
            {"repair_id": repair["id"], "client_id": str(uuid.uuid4()), "body": "I hear you."},
        ),
    }


def test_writes_with_more_than_one_argument_are_answered_with_a_400(
    client: ApiClient, phone: Connect, thread_errors: list[BaseException]
) -> None:
    """The handler took one argument: a second one raised TypeError and no ack was sent (the
    phone waited for its timeout, then retried the same way)."""
    ana, ben = client.couple()
    phones = {"ana": phone(ana.access_token), "ben": phone(ben.access_token)}
    cursor = len(client.get("/api/v1/sync", as_=ana).json()["events"])
    for event, (who, payload) in write_payloads(client, ana, ben).items():
        for extra in ((payload, {"x": 1}), (payload, None, 3)):
            answer = phones[who].client.call(event, extra, timeout=5)
            assert is_problem(answer, 400, "bad_request"), (event, answer)
            assert "one JSON object" in answer["detail"]
        # Nothing was written: the same payload alone is the first write.
        written = phones[who].call(event, payload)
        assert "code" not in written and written["id"], (event, written)
    # The four writes and the two REST ones (the bid, the repair), each once.
    events = client.get("/api/v1/sync", as_=ana).json()["events"]
    assert len(events) == cursor + 6, [e["type"] for e in events]
    assert thread_errors == []


def test_typing_with_more_than_one_argument_is_dropped_quietly(
    client: ApiClient, phone: Connect, thread_errors: list[BaseException]
) -> None:
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    one, two, three = (repair_helpers.start(client, ana)["id"] for _ in range(3))
    ana_phone.client.emit("typing", ({"repair_id": two}, 2))
    assert ana_phone.client.call("typing", ({"repair_id": three}, 2, 3), timeout=5) is None
    ana_phone.client.emit("typing", {"repair_id": one})
    ben_phone.wait_for("typing", lambda data: data.get("repair_id") == one)
    assert ben_phone.named("typing") == [{"user_id": ana.id, "repair_id": one}]
    assert thread_errors == []


# --- events the server does not know ---------------------------------------------------------


@pytest.mark.parametrize("name", ["bid.delivered", "bid.sned", "message", "ops.overview"])
def test_an_unknown_event_with_an_ack_is_answered_with_a_404(
    client: ApiClient, phone: Connect, name: str
) -> None:
    """`bid.delivered` does not exist over the socket (the guide says POST /bids/{id}/delivered);
    without an answer the phone waited for its timeout."""
    device = phone(client.register("Ana").access_token)
    answer = device.call(name, {"bid_id": str(uuid.uuid4())})
    assert is_problem(answer, 404, "not_found"), answer
    assert answer["detail"] == (
        f"Unknown event {name!r}; see the socket events in the mobile guide."
    )


def test_unknown_events_leave_known_ones_and_ops_as_they_were(
    app: Flask,
    client: ApiClient,
    phone: Connect,
    thread_errors: list[BaseException],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    with caplog.at_level(logging.WARNING):
        ana_phone.client.emit("bid.delivered", {"bid_id": str(uuid.uuid4())})  # no ack: dropped
        ana_phone.client.emit("whatever")
        bid = ana_phone.call("bid.send", {"client_id": str(uuid.uuid4()), "kind": "connect"})
        assert bid["sender_id"] == ana.id
        assert ben_phone.wait_for("bid.created")["data"] == bid
        assert ben_phone.call("bid.seen", {"bid_id": bid["id"]})["status"] == "seen"
        ana_phone.client.emit("typing", {})
        assert ben_phone.wait_for("typing") == {"user_id": ana.id}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [name for name, _ in ana_phone.events if not name.startswith("bid.")] == []
    assert thread_errors == []
    # The catch-all is the member namespace's only: /ops keeps its two life-cycle handlers.
    handlers = app.extensions["socketio"].server.handlers
    assert set(handlers[OPS]) == {"connect", "disconnect"}
    assert "*" in handlers["/"]
