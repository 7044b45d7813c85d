"""Hostile but well-formed input is refused with a problem, never a 500, and changes nothing.

Lone surrogates, deep nesting, odd zone names, non-ASCII clock digits, numbers and booleans of
the wrong JSON type, chunked bodies over the size limit, and query parameters given twice.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import socketio
from flask import Flask
from sqlalchemy import update

from service.clock import clock
from service.extensions import db
from service.models import User
from tests.api.test_errors import assert_problem
from tests.support import repairs as repair_helpers
from tests.support.client import PASSWORD, ApiClient, Person
from tests.support.phones import Phone
from tests.support.redis_needed import require_redis
from tests.support.server import LiveServer

API = "/api/v1"
LONE = "a\ud800b"  # valid JSON ("a\\ud800b"), but no UTF-8 encoding exists for it
NEW = "<new uuid>"  # replaced by a fresh client_id in each request


@dataclass
class Scene:
    """A couple with a bid from Ben to Ana, a repair and a device; a stranger; what Ana sees."""

    client: ApiClient
    ana: Person
    ben: Person
    stranger: Person
    bid_id: str
    repair_id: str

    def path(self, template: str) -> str:
        return API + template.format(bid=self.bid_id, repair=self.repair_id)

    def who(self, name: str) -> Person:
        return {"ana": self.ana, "ben": self.ben, "stranger": self.stranger}[name]

    def seen_by_ana(self) -> list[Any]:
        """Everything Ana (and so any write of hers) can change, as she reads it."""
        reads = [
            "/me",
            "/bids?limit=200",
            "/repairs?limit=200",
            f"/repairs/{self.repair_id}/messages?limit=200",
            "/devices",
            "/sync?limit=1000",
            "/checkins/current",
        ]
        out = []
        for read in reads:
            response = self.client.get(API + read, as_=self.ana)
            assert response.status_code == 200, (read, response.text)
            out.append(response.json())
        return out


@pytest.fixture
def scene(client: ApiClient) -> Scene:
    ana, ben = client.couple()
    stranger = client.register("Cleo")
    bid = client.post(
        f"{API}/bids", as_=ben, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    )
    assert bid.status_code == 201, bid.text
    repair = repair_helpers.start(client, ana)
    repair_helpers.write(client, ana, repair["id"])
    device = client.post(
        f"{API}/devices", as_=ana, json={"platform": "ios", "push_token": "ana-token-0001"}
    )
    assert device.status_code == 201, device.text
    return Scene(client, ana, ben, stranger, bid.json()["id"], repair["id"])


def body_of(template: dict[str, Any], scene: Scene) -> dict[str, Any]:
    body = {k: (str(uuid.uuid4()) if v == NEW else v) for k, v in template.items()}
    if body.get("refresh_token") == "<ana's>":
        body["refresh_token"] = scene.ana.refresh_token
    if body.get("email") == "<ana's>":
        body["email"] = scene.ana.email
    return body


# (method, path, who, a valid body): every endpoint whose JSON body carries text.
REGISTER = {
    "email": "new@example.test",
    "password": PASSWORD,
    "display_name": "N",
    "timezone": "UTC",
}
MEMBER_WRITES = {
    "bid": ("POST", "/bids", "ana", {"client_id": NEW, "kind": "comfort", "note": "hi"}),
    "response": (
        "POST",
        "/bids/{bid}/responses",
        "ana",
        {"client_id": NEW, "kind": "toward", "note": "here"},
    ),
    "repair": ("POST", "/repairs", "ana", {"client_id": NEW, "topic": "Sunday"}),
    "message": ("POST", "/repairs/{repair}/messages", "ana", {"client_id": NEW, "body": "I hear"}),
    "profile": ("PATCH", "/me", "ana", {"display_name": "Ana B"}),
    "device": (
        "POST",
        "/devices",
        "ana",
        {"platform": "android", "push_token": "ana-token-0002", "app_version": "1.2.3"},
    ),
    "join": ("POST", "/couple/join", "stranger", {"code": "ABCD-EFGH"}),
}
ANONYMOUS_WRITES = {
    "register": ("POST", "/auth/register", None, REGISTER),
    "login": ("POST", "/auth/login", None, {"email": "<ana's>", "password": PASSWORD}),
    "refresh": ("POST", "/auth/refresh", None, {"refresh_token": "<ana's>"}),
    "logout": ("POST", "/auth/logout", None, {"refresh_token": "<ana's>"}),
}
WRITES = {**MEMBER_WRITES, **ANONYMOUS_WRITES}
TEXT_FIELDS = [
    (name, field)
    for name, (_, _, _, body) in WRITES.items()
    for field, value in body.items()
    if isinstance(value, str) and value != NEW
]


def send(scene: Scene, name: str, **changes: Any) -> Any:
    method, template, who, body = WRITES[name]
    sent = {**body_of(body, scene), **changes}
    return scene.client.request(
        method, scene.path(template), as_=scene.who(who) if who else None, json=sent
    )


# --- 1. lone surrogates ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "field"), TEXT_FIELDS)
def test_a_lone_surrogate_in_any_text_field_is_422_and_stores_nothing(
    scene: Scene, name: str, field: str
) -> None:
    before = scene.seen_by_ana()
    problem = assert_problem(send(scene, name, **{field: LONE}), 422, "validation_error")
    assert "surrogate" in " ".join(problem["errors"][field]), problem
    assert scene.seen_by_ana() == before
    if name == "register":  # no account was made
        login = {"email": REGISTER["email"], "password": PASSWORD}
        assert scene.client.post(f"{API}/auth/login", json=login).status_code == 401


def test_a_lone_surrogate_in_a_key_or_a_nested_value_is_422(scene: Scene) -> None:
    in_key = assert_problem(send(scene, "bid", **{"no\udc00te": "x"}), 422, "validation_error")
    assert list(in_key["errors"]) == ["no\udc00te"]
    nested = send(scene, "profile", quiet_hours={"start": "22:00", "end": "\udfff"})
    assert "quiet_hours" in assert_problem(nested, 422, "validation_error")["errors"]


def test_surrogate_pairs_are_ordinary_text(scene: Scene) -> None:
    """An emoji outside the BMP, escaped as a pair ("\\ud83e\\udec2"), is one code point."""
    response = send(scene, "bid", note="hug \U0001fac2")
    assert response.status_code == 201, response.text
    assert response.json()["note"] == "hug \U0001fac2"


@pytest.mark.parametrize(
    ("event", "payload", "field"),
    [
        ("bid.send", {"kind": "comfort", "note": LONE}, "note"),
        ("bid.respond", {"kind": "toward", "note": LONE}, "note"),
        ("repair.message", {"body": LONE}, "body"),
    ],
)
def test_socket_writes_ack_a_422_for_a_lone_surrogate(
    scene: Scene, phone: Any, event: str, payload: dict[str, Any], field: str
) -> None:
    ana_phone: Phone = phone(scene.ana.access_token)
    before = scene.seen_by_ana()
    payload = {**payload, "client_id": str(uuid.uuid4())}
    payload |= {"bid_id": scene.bid_id} if event == "bid.respond" else {}
    payload |= {"repair_id": scene.repair_id} if event == "repair.message" else {}
    ack = ana_phone.call(event, payload)
    assert ack["status"] == 422 and ack["code"] == "validation_error", ack
    assert field in ack["errors"], ack
    assert scene.seen_by_ana() == before


@pytest.mark.parametrize(
    ("event", "payload", "field"),
    [
        ("bid.send", {"kind": "comfort", "note": b"a\x00b"}, "note"),
        ("bid.send", {"kind": b"comfort"}, "kind"),
        ("bid.respond", {"kind": "toward", "note": b"here\x00"}, "note"),
        ("repair.message", {"body": b"I hear\x00you"}, "body"),
    ],
)
def test_socket_writes_ack_a_422_for_binary_data(
    scene: Scene, phone: Any, event: str, payload: dict[str, Any], field: str
) -> None:
    """A Socket.IO payload may carry bytes (a binary attachment), which no JSON body holds:
    marshmallow took them as text, and a NUL in them reached PostgreSQL (500)."""
    ana_phone: Phone = phone(scene.ana.access_token)
    before = scene.seen_by_ana()
    payload = {**payload, "client_id": str(uuid.uuid4())}
    payload |= {"bid_id": scene.bid_id} if event == "bid.respond" else {}
    payload |= {"repair_id": scene.repair_id} if event == "repair.message" else {}
    ack = ana_phone.call(event, payload)
    assert ack["status"] == 422 and ack["code"] == "validation_error", ack
    assert ack["errors"] == {field: ["Send JSON values, not binary data."]}, ack
    assert scene.seen_by_ana() == before


def test_a_socket_token_with_a_lone_surrogate_is_refused_401(live_server: LiveServer) -> None:
    device = Phone(live_server.url, "eyJ\ud800")
    with pytest.raises(socketio.exceptions.ConnectionError):
        device.connect()
    assert device.refusal["data"]["status"] == 401, device.refusal


def test_a_sign_in_email_with_a_lone_surrogate_keeps_the_redis_limits(
    server_with: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The per-email limit key is a Redis key: a lone surrogate has no UTF-8, so the key
    failed to encode, flask-limiter took Redis for unreachable and the process fell back to
    counting in memory (limits per process, not shared), with an error logged per request."""
    server = server_with(REDIS_URL=require_redis("the shared sign-in limits"))
    caplog.set_level(logging.WARNING)
    client = ApiClient(server.url)
    for _ in range(2):
        answer = client.post(f"{API}/auth/login", json={"email": "a\ud800@b.c", "password": "x"})
        assert "email" in assert_problem(answer, 422, "validation_error")["errors"]
    limiter_records = [r for r in caplog.records if r.name == "flask-limiter"]
    assert [r.getMessage() for r in limiter_records if r.levelno >= logging.WARNING] == []


# --- 2. deep nesting ----------------------------------------------------------------------


def nested(depth: int) -> str:
    """A body whose field `x` holds `depth` arrays inside one another (levels 2..depth+1)."""
    return '{"x":' + "[" * depth + "]" * depth + "}"


# Every endpoint that reads a JSON body: (method, path, who).
BODY_ENDPOINTS = {
    **{name: (method, path, who) for name, (method, path, who, _) in WRITES.items()},
    "checkin": ("POST", "/checkins", "ana"),
    "pause": ("POST", "/repairs/{repair}/pause", "ana"),
    "read": ("POST", "/repairs/{repair}/read", "ana"),
}


@pytest.mark.parametrize("name", sorted(BODY_ENDPOINTS))
def test_a_deeply_nested_body_is_400_on_every_endpoint(scene: Scene, name: str) -> None:
    """Just past the limit (the schemas refuse it), 400 levels (the recursive NUL check used
    to overflow the stack) and 5000 (json.loads itself raises RecursionError)."""
    method, template, who = BODY_ENDPOINTS[name]
    for depth in (32, 400, 5000):
        response = scene.client.request(
            method,
            scene.path(template),
            as_=scene.who(who) if who else None,
            data=nested(depth),
            headers={"Content-Type": "application/json"},
        )
        problem = assert_problem(response, 400, "bad_request")
        assert "nested too deeply" in problem["detail"], (depth, problem)


@pytest.mark.parametrize("name", sorted(BODY_ENDPOINTS))
def test_a_number_too_long_to_read_is_400_on_every_endpoint(scene: Scene, name: str) -> None:
    """Python reads integers of at most 4300 digits (sys.get_int_max_str_digits): a longer
    one, well-formed JSON of 5 KB, made `json.loads` raise a ValueError that was no JSON
    error, and every endpoint answered 500. One digit fewer is read, and no field takes it."""
    method, template, who = BODY_ENDPOINTS[name]
    before = scene.seen_by_ana()
    for number in ("1" * 4301, "-" + "9" * 4301, "1" * 60_000):
        response = scene.client.request(
            method,
            scene.path(template),
            as_=scene.who(who) if who else None,
            data=f'{{"x": {number}}}',
            headers={"Content-Type": "application/json"},
        )
        problem = assert_problem(response, 400, "bad_request")
        assert "4300 digits" in problem["detail"], problem
    longest = scene.client.request(
        method,
        scene.path(template),
        as_=scene.who(who) if who else None,
        data=f'{{"x": {"1" * 4300}}}',
        headers={"Content-Type": "application/json"},
    )
    assert "x" in assert_problem(longest, 422, "validation_error")["errors"]
    assert scene.seen_by_ana() == before


@pytest.mark.parametrize("name", sorted(BODY_ENDPOINTS))
def test_a_body_sent_as_text_is_415_on_every_endpoint_and_changes_nothing(
    scene: Scene, name: str
) -> None:
    """A JSON body whose Content-Type is not JSON (text/plain, as some HTTP clients send a
    string by default) was read as no body: a write that needs none answered 2xx unchanged."""
    method, template, who = BODY_ENDPOINTS[name]
    body = body_of(WRITES[name][3], scene) if name in WRITES else {}
    before = scene.seen_by_ana()
    response = scene.client.request(
        method,
        scene.path(template),
        as_=scene.who(who) if who else None,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    problem = assert_problem(response, 415, "bad_request")
    assert "Content-Type: application/json" in problem["detail"]
    assert scene.seen_by_ana() == before


def test_nesting_up_to_the_limit_is_read_as_usual(scene: Scene) -> None:
    """32 levels (the body and 31 arrays) are read: the unknown field is named (422)."""
    response = scene.client.post(
        f"{API}/auth/login", data=nested(31), headers={"Content-Type": "application/json"}
    )
    assert "x" in assert_problem(response, 422, "validation_error")["errors"]


@pytest.mark.parametrize("event", ["bid.send", "bid.seen", "bid.respond", "repair.message"])
def test_socket_writes_ack_a_400_for_a_deeply_nested_payload(
    scene: Scene, phone: Any, event: str
) -> None:
    deep: Any = []
    for _ in range(400):
        deep = [deep]
    ack = phone(scene.ana.access_token).call(event, {"client_id": str(uuid.uuid4()), "x": deep})
    assert ack["status"] == 400 and ack["code"] == "bad_request", ack
    assert "nested too deeply" in ack["detail"]


# --- 3. time zones --------------------------------------------------------------------------

NOT_ZONES = ["Europe", "America", "Etc", "US", "A" * 256, "Europe/" + "x" * 300]
HOST_FILES = ["localtime", "posixrules", "Factory"]

# Names of the IANA database that are no place: abbreviations and POSIX rules (`EST` is a fixed
# UTC-5 all year, not New York), offsets (`Etc/GMT+5` is UTC-5), aliases of UTC, and the legacy
# links that name a country or a state instead of a place (`US/Eastern`, `Japan`).
NOT_PLACES = [
    "EST",
    "MST",
    "HST",
    "PST8PDT",
    "EST5EDT",
    "CET",
    "GMT",
    "UCT",
    "Zulu",
    "Etc/UTC",
    "Etc/GMT+5",
    "US/Eastern",
    "Japan",
]


@pytest.mark.parametrize("zone", NOT_ZONES + HOST_FILES + NOT_PLACES)
def test_a_zone_that_is_no_place_a_person_lives_in_is_422(scene: Scene, zone: str) -> None:
    """A directory, an overlong or host-only name, an abbreviation, an offset or a legacy name:
    refused on a profile change and at sign-up, the profile unchanged."""
    before = scene.seen_by_ana()
    patched = scene.client.patch(f"{API}/me", as_=scene.ana, json={"timezone": zone})
    assert "timezone" in assert_problem(patched, 422, "validation_error")["errors"]
    assert scene.seen_by_ana() == before
    registered = send(scene, "register", timezone=zone)
    assert "timezone" in assert_problem(registered, 422, "validation_error")["errors"]


@pytest.mark.parametrize(
    "zone",
    [
        "Europe/Berlin",
        "UTC",
        "Pacific/Kiritimati",
        "America/Argentina/Buenos_Aires",
        "Asia/Kolkata",
    ],
)
def test_iana_zones_are_still_accepted(scene: Scene, zone: str) -> None:
    patched = scene.client.patch(f"{API}/me", as_=scene.ana, json={"timezone": zone})
    assert patched.status_code == 200, patched.text
    assert patched.json()["timezone"] == zone


def test_a_zone_stored_before_the_rule_still_works(scene: Scene, app: Flask) -> None:
    """Accounts made when `PST8PDT` was accepted keep it: readable, quiet hours kept in it,
    and a change of anything else does not ask for a new zone."""
    with app.app_context(), db.scope() as session:
        ana_id = uuid.UUID(scene.ana.id)
        session.execute(update(User).where(User.id == ana_id).values(timezone="PST8PDT"))
        session.commit()
    client, ana = scene.client, scene.ana
    quiet = {"quiet_hours": {"start": "22:00", "end": "07:00"}, "display_name": "Ana B"}
    patched = client.patch(f"{API}/me", as_=ana, json=quiet)
    assert patched.status_code == 200, patched.text
    assert patched.json()["timezone"] == "PST8PDT"
    # A settings screen that sends the whole profile back, zone included, is not refused.
    again = client.patch(f"{API}/me", as_=ana, json={**quiet, "timezone": "PST8PDT"})
    assert again.status_code == 200, again.text
    assert again.json() == patched.json()
    other = client.patch(f"{API}/me", as_=ana, json={"timezone": "EST"})
    assert "timezone" in assert_problem(other, 422, "validation_error")["errors"]
    clock.freeze(datetime(2031, 1, 15, 8, 0, tzinfo=UTC))  # 00:00 in Los Angeles
    bid = client.post(
        f"{API}/bids",
        as_=client.fresh(scene.ben),
        json={"client_id": str(uuid.uuid4()), "kind": "connect"},
    )
    assert bid.status_code == 201, bid.text
    assert bid.json()["reachable_at"] == "2031-01-15T15:00:00.000000Z"  # 07:00 PST
    assert (
        client.get(f"{API}/couple", as_=client.fresh(scene.ben)).json()["partner"]["timezone"]
        == "PST8PDT"
    )


# --- 4. quiet hours -------------------------------------------------------------------------


FULLWIDTH_22 = "\uff12\uff12:\uff10\uff10"  # "22:00" in fullwidth digits


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        pytest.param(FULLWIDTH_22, "07:00", "start", id="fullwidth"),
        pytest.param("22:00", "\u0660\u0667:\u0660\u0660", "end", id="arabic-indic"),
        pytest.param("\u00b2\u00b2:00", "07:00", "start", id="superscript"),
        pytest.param("22:00", "0\uff17:00", "end", id="one-fullwidth-digit"),
        pytest.param(FULLWIDTH_22, "22:00", "start", id="same-time-other-digits"),
        ("22:00", "22:00", "end"),
        ("24:00", "07:00", "start"),
        ("7:00", "07:00", "start"),
    ],
)
def test_quiet_hours_take_only_ascii_hh_mm(scene: Scene, start: str, end: str, field: str) -> None:
    before = scene.seen_by_ana()
    body = {"quiet_hours": {"start": start, "end": end}}
    problem = assert_problem(
        scene.client.patch(f"{API}/me", as_=scene.ana, json=body), 422, "validation_error"
    )
    assert f"quiet_hours.{field}" in problem["errors"], problem
    assert all("HH:MM" in m or "differ" in m for m in problem["errors"][f"quiet_hours.{field}"])
    assert scene.seen_by_ana() == before


# --- 5. integers and booleans in bodies -----------------------------------------------------

CHECK_IN = {"accessible": 4, "responsive": 5, "engaged": 3}


@pytest.mark.parametrize(
    ("template", "base", "field"),
    [
        ("/checkins", {**CHECK_IN, "client_id": str(uuid.uuid4())}, "accessible"),
        ("/checkins", {**CHECK_IN, "client_id": str(uuid.uuid4())}, "engaged"),
        ("/repairs/{repair}/pause", {"minutes": 30}, "minutes"),
        ("/repairs/{repair}/read", {"seq": 1}, "seq"),
    ],
)
def test_integer_fields_take_only_json_integers(
    scene: Scene, template: str, base: dict[str, Any], field: str
) -> None:
    """No fraction is truncated (1440.9 was a 1440-minute pause), no string or boolean read."""
    before = scene.seen_by_ana()
    for value in (4.9, 1.999, 1440.9, 30.5, "30", "4", "", True, None, [4], {"n": 4}, math.inf):
        response = scene.client.post(
            scene.path(template),
            as_=scene.ana,
            data=json.dumps({**base, field: value}),  # inf is sent as Infinity
            headers={"Content-Type": "application/json"},
        )
        problem = assert_problem(response, 422, "validation_error")
        assert field in problem["errors"], (value, problem)
    assert scene.seen_by_ana() == before


def test_a_whole_number_written_with_a_point_is_that_integer(scene: Scene) -> None:
    """JSON Schema's `integer` (the OpenAPI document's) includes 30.0: taken as 30."""
    paused = scene.client.post(
        scene.path("/repairs/{repair}/pause"), as_=scene.ana, json={"minutes": 30.0}
    )
    assert paused.status_code == 200, paused.text
    scores = {**CHECK_IN, "accessible": 4.0, "client_id": str(uuid.uuid4())}
    answered = scene.client.post(f"{API}/checkins", as_=scene.ana, json=scores)
    assert answered.status_code == 201, answered.text
    assert answered.json()["you"]["accessible"] == 4


def test_boolean_fields_take_only_json_booleans(scene: Scene) -> None:
    before = scene.seen_by_ana()
    for value in ("yes", "true", 1, 0, "1", None, [True]):
        response = scene.client.patch(
            f"{API}/me", as_=scene.ana, json={"notes_on_lock_screen": value}
        )
        problem = assert_problem(response, 422, "validation_error")
        assert "notes_on_lock_screen" in problem["errors"], (value, problem)
    assert scene.seen_by_ana() == before
    on = scene.client.patch(f"{API}/me", as_=scene.ana, json={"notes_on_lock_screen": True})
    assert on.status_code == 200 and on.json()["notes_on_lock_screen"] is True


@pytest.mark.parametrize(
    "query",
    [
        "/bids?limit=5",
        "/repairs?limit=5",
        "/devices?limit=5",
        "/checkins?limit=5",
        "/sync?since=0&limit=10",
        "/repairs/{repair}/messages?after_seq=0&limit=5",
        "/insights?days=7",
    ],
)
def test_query_strings_still_read_numbers_from_text(scene: Scene, query: str) -> None:
    response = scene.client.get(scene.path(query), as_=scene.ana)
    assert response.status_code == 200, response.text


# Python's int() and uuid.UUID() read more than a client means: other scripts' digits
# ("\u0661" is 1, "\uff15" is 5), spaces around, a plus sign, underscores between digits.
def in_other_digits(number: str, zero: int = 0x0660) -> str:
    return number.translate({ord(digit): zero + int(digit) for digit in "0123456789"})


def odd_forms(number: str) -> list[str]:
    return [
        in_other_digits(number),
        in_other_digits(number, 0xFF10),
        f" {number}",
        f"{number} ",
        f"+{number}",
        f"{number[:-1] or 0}_{number[-1]}",
    ]


@pytest.mark.parametrize(
    ("query", "number"),
    [
        ("/bids?limit=", "10"),
        ("/repairs?limit=", "10"),
        ("/devices?limit=", "10"),
        ("/checkins?limit=", "10"),
        ("/checkins?before=", "10"),
        ("/sync?since=", "1"),
        ("/sync?limit=", "10"),
        ("/repairs/{repair}/messages?after_seq=", "0"),
        ("/repairs/{repair}/messages?limit=", "10"),
        ("/insights?days=", "30"),
    ],
)
def test_a_query_number_is_ascii_digits_only(scene: Scene, query: str, number: str) -> None:
    """`?since=\u0661` read 1 and `?limit=+5` read 5: a number in a query is written in ASCII
    digits (0-9) or refused, 422 naming the parameter, as an unreadable one is."""
    field = query.rsplit("?", 1)[1].rstrip("=")
    assert scene.client.get(scene.path(query + number), as_=scene.ana).ok
    for odd in odd_forms(number):
        answer = scene.client.get(scene.path(query + odd), as_=scene.ana)
        assert_problem(answer, 422, "validation_error")
        assert list(answer.json()["errors"]) == [field], (odd, answer.text)


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/bids", ["limit", "before", "status"]),
        ("/repairs", ["limit", "before", "status"]),
        ("/devices", ["limit", "before"]),
        ("/checkins", ["limit", "before"]),
        ("/sync", ["since", "limit", "couple_id"]),
        ("/repairs/{repair}/messages", ["after_seq", "limit"]),
        ("/insights", ["days"]),
    ],
)
def test_an_empty_query_value_is_the_parameter_left_out(
    scene: Scene, path: str, names: list[str]
) -> None:
    """`?before=` was the first page but `?status=` a 422, `?limit=` and `?since=` too: an app
    that builds its query from optional values (an empty string for none) got either. Every
    empty value is the parameter left out."""
    clock.freeze(datetime.now(UTC))  # the insights' window is the same in every answer
    left_out = scene.client.get(scene.path(path), as_=scene.ana)
    assert left_out.status_code == 200, left_out.text
    for name in names:
        empty = scene.client.get(scene.path(f"{path}?{name}="), as_=scene.ana)
        assert empty.status_code == 200, (name, empty.text)
        assert empty.json() == left_out.json(), name
    every = "&".join(f"{name}=" for name in names)
    assert scene.client.get(scene.path(f"{path}?{every}"), as_=scene.ana).json() == left_out.json()


def test_a_page_cursor_is_read_as_the_api_wrote_it(scene: Scene) -> None:
    """A `before` the API did not write is a 422: one whose id is in other digits than ASCII
    (uuid.UUID reads them) or with characters base64 skips read as the cursor it was made from."""
    for _ in range(2):
        sent = {"client_id": str(uuid.uuid4()), "kind": "share"}
        assert scene.client.post(f"{API}/bids", as_=scene.ben, json=sent).status_code == 201
    cursor = scene.client.get(f"{API}/bids?limit=1", as_=scene.ana).json()["next"]
    assert scene.client.get(f"{API}/bids?limit=1&before={cursor}", as_=scene.ana).ok
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    moment, last_id = raw.split("|")
    made_up = base64.urlsafe_b64encode(f"{moment}|{in_other_digits(last_id)}".encode())
    made_up = made_up.decode().rstrip("=")
    for before in (made_up, f"{cursor[:4]}.{cursor[4:]}", f"{cursor}!"):
        answer = scene.client.get(f"{API}/bids", params={"before": before}, as_=scene.ana)
        assert_problem(answer, 422, "validation_error")
        assert list(answer.json()["errors"]) == ["before"], (before, answer.text)


def test_a_couple_id_in_a_query_is_in_ascii(scene: Scene) -> None:
    """`?couple_id=` with the couple's id written in Arabic-Indic digits synced the couple."""
    couple_id = scene.client.get(f"{API}/couple", as_=scene.ana).json()["id"]
    arabic = in_other_digits(couple_id)
    assert scene.client.get(f"{API}/sync", params={"couple_id": couple_id}, as_=scene.ana).ok
    answer = scene.client.get(f"{API}/sync", params={"couple_id": arabic}, as_=scene.ana)
    assert_problem(answer, 422, "validation_error")
    assert list(answer.json()["errors"]) == ["couple_id"], answer.text


def test_an_id_in_a_body_is_in_ascii(scene: Scene) -> None:
    """A `client_id` or `couple_id` written in Arabic-Indic digits was read as the id in 0-9
    (uuid.UUID reads any script's digits): a 422 naming the field, as in a query."""
    before = scene.seen_by_ana()
    couple_id = scene.client.get(f"{API}/couple", as_=scene.ana).json()["id"]
    writes = [
        ("/bids", {"client_id": in_other_digits(str(uuid.uuid4())), "kind": "help"}, "client_id"),
        (
            "/bids",
            {
                "client_id": str(uuid.uuid4()),
                "kind": "help",
                "couple_id": in_other_digits(couple_id),
            },
            "couple_id",
        ),
        (
            "/repairs",
            {"client_id": str(uuid.uuid4()), "bid_id": in_other_digits(scene.bid_id)},
            "bid_id",
        ),
    ]
    for path, body, field in writes:
        answer = scene.client.post(f"{API}{path}", as_=scene.ana, json=body)
        problem = assert_problem(answer, 422, "validation_error")
        assert list(problem["errors"]) == [field], (body, problem)
    assert scene.seen_by_ana() == before


# --- a field given twice in a body -----------------------------------------------------------


def test_a_field_given_twice_in_a_body_is_refused_not_read_as_its_last(scene: Scene) -> None:
    """`{"display_name": "Ana", "display_name": "Bo"}` renamed Ana "Bo": JSON parsers differ on
    which of the two they keep (a proxy or a log may read the first), so the app's and the
    server's reading of one request could differ. A name given twice in any object is a 422
    naming it, as a query parameter given twice is, and changes nothing."""
    before = scene.seen_by_ana()
    json_type = {"Content-Type": "application/json"}
    bid_id = str(uuid.uuid4())
    twice = [
        ("PATCH", "/me", '{"display_name": "Ana", "display_name": "Bo"}', "display_name"),
        (
            "PATCH",
            "/me",
            '{"quiet_hours": {"start": "22:00", "end": "07:00", "end": "08:00"}}',
            "quiet_hours.end",
        ),
        (
            "POST",
            "/bids",
            f'{{"client_id": "{bid_id}", "kind": "share", "kind": "help"}}',
            "kind",
        ),
    ]
    for method, path, body, field in twice:
        answer = scene.client.request(
            method, f"{API}{path}", as_=scene.ana, data=body, headers=json_type
        )
        problem = assert_problem(answer, 422, "validation_error")
        assert problem["errors"] == {field: ["Give this field once."]}, (body, problem)
    assert scene.seen_by_ana() == before


# --- 6. chunked bodies over the limit -------------------------------------------------------


def raw_post(server: LiveServer, path: str, body: bytes, headers: dict[str, str]) -> Any:
    """POST `body` in 8 KiB chunks (Transfer-Encoding: chunked, no Content-Length); return
    the status, the response head and the JSON body, read as soon as they have arrived (the
    development server drains the rest of a refused body until the client hangs up)."""
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 8192]), body[i : i + 8192])
        for i in range(0, len(body), 8192)
    )
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    head += "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(head.encode() + chunks + b"0\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            received += conn.recv(65536)
        response_head, _, payload = received.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", response_head)
        assert length is not None, response_head
        while len(payload) < int(length.group(1)):
            payload += conn.recv(65536)
    status = int(response_head.split()[1])
    return status, response_head.decode().lower(), json.loads(payload)


@pytest.mark.parametrize("size", [70_000, 1_000_000])
def test_a_chunked_body_over_the_limit_is_413_like_one_with_a_length(
    scene: Scene, live_server: LiveServer, size: int
) -> None:
    before = scene.seen_by_ana()
    cases = [
        ("/auth/login", {}, {"email": scene.ana.email, "password": PASSWORD}),
        ("/bids", scene.ana.headers, {"client_id": str(uuid.uuid4()), "kind": "comfort"}),
    ]
    for path, headers, body in cases:
        big = json.dumps({**body, "note": "a" * size}).encode()
        status, head, problem = raw_post(live_server, API + path, big, headers)
        assert status == 413, (path, problem)
        assert "application/problem+json" in head
        assert problem["status"] == 413 and problem["code"] == "bad_request", problem
    assert scene.seen_by_ana() == before


def test_a_chunked_body_within_the_limit_is_read_whole(
    scene: Scene, live_server: LiveServer
) -> None:
    body = {"client_id": str(uuid.uuid4()), "kind": "comfort", "note": "n" * 280}
    status, _, bid = raw_post(
        live_server, f"{API}/bids", json.dumps(body).encode(), scene.ana.headers
    )
    assert status == 201 and bid["note"] == "n" * 280, bid
    # Exactly MAX_CONTENT_LENGTH: read whole, so the note is named as too long (not 413).
    limit = live_server.app.config["MAX_CONTENT_LENGTH"]
    empty = len(json.dumps({**body, "note": ""}))
    exact = json.dumps({**body, "client_id": str(uuid.uuid4()), "note": "n" * (limit - empty)})
    assert len(exact) == limit
    status, _, problem = raw_post(live_server, f"{API}/bids", exact.encode(), scene.ana.headers)
    assert status == 422 and "note" in problem["errors"], problem


# --- unreadable sign-in bodies are not errors of the rate limiter ---------------------------


def test_unreadable_sign_ins_log_no_error(
    scene: Scene, live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The sign-in limit reads the email before the view: a body it cannot read (too deep to
    parse, too large) is the view's to refuse, not an error the rate limiter swallows."""
    caplog.set_level(logging.WARNING)
    deep = scene.client.post(
        f"{API}/auth/login", data=nested(5000), headers={"Content-Type": "application/json"}
    )
    assert_problem(deep, 400, "bad_request")
    big = json.dumps({"email": scene.ana.email, "password": "p" * 70_000}).encode()
    assert raw_post(live_server, f"{API}/auth/login", big, {})[0] == 413
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/bids", "status=sent&status=seen", "status"),
        ("/bids", "limit=1&limit=50", "limit"),
        ("/sync", "since=0&since=1", "since"),
    ],
)
def test_a_query_parameter_given_twice_is_refused_not_cut_to_its_first(
    client: ApiClient, path: str, query: str, field: str
) -> None:
    """`?status=sent&status=seen` answered the `sent` bids alone, as if the app had asked for
    those only, and `?since=0&since=1` read 0: a parameter given twice is a 422 naming it."""
    ana, _ben = client.couple()
    answer = client.get(f"{API}{path}?{query}", as_=ana)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == {field: ["Give this parameter once."]}
    # Once is fine; an unknown parameter is still ignored, however often it is given.
    assert client.get(f"{API}{path}?{query.split('&')[0]}&x=1&x=2", as_=ana).status_code == 200
