"""Hostile but well-formed input is refused with a problem, never a 500, and changes nothing.

Lone surrogates, deep nesting, odd zone names, non-ASCII clock digits, numbers and booleans of
the wrong JSON type, and chunked bodies over the size limit (/tmp/audit/fuzz/REPORT.md #1-5 and #9).
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.test_errors import assert_problem
from tests.support import repairs as repair_helpers
from tests.support.client import PASSWORD, ApiClient, Person

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


# --- 3. time zones --------------------------------------------------------------------------

NOT_ZONES = ["Europe", "America", "Etc", "US", "A" * 256, "Europe/" + "x" * 300]
HOST_FILES = ["localtime", "posixrules", "Factory"]


@pytest.mark.parametrize("zone", NOT_ZONES + HOST_FILES)
def test_a_zone_directory_overlong_or_host_only_name_is_422(scene: Scene, zone: str) -> None:
    before = scene.seen_by_ana()
    patched = scene.client.patch(f"{API}/me", as_=scene.ana, json={"timezone": zone})
    assert "timezone" in assert_problem(patched, 422, "validation_error")["errors"]
    assert scene.seen_by_ana() == before
    registered = send(scene, "register", timezone=zone)
    assert "timezone" in assert_problem(registered, 422, "validation_error")["errors"]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "UTC", "Etc/GMT+5", "Pacific/Kiritimati"])
def test_iana_zones_are_still_accepted(scene: Scene, zone: str) -> None:
    patched = scene.client.patch(f"{API}/me", as_=scene.ana, json={"timezone": zone})
    assert patched.status_code == 200, patched.text
    assert patched.json()["timezone"] == zone


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


@pytest.mark.parametrize(
    ("template", "base", "field"),
    [
        ("/checkins", {"accessible": 4, "responsive": 5, "engaged": 3}, "accessible"),
        ("/checkins", {"accessible": 4, "responsive": 5, "engaged": 3}, "engaged"),
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
    scores = {"accessible": 4.0, "responsive": 5, "engaged": 3}
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
