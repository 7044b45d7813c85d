"""Who may do what: every route and socket event of the app, tried by every kind of caller.

The tables below map each (method, rule) of `app.url_map` and each (namespace, event) of the
Socket.IO server to what every actor gets. The lists are read from the app itself: a new
route or event without an entry here fails the suite.

Actors (see `world` in conftest.py): the owner who created the resource, the partner, a
stranger from another couple, the owner's former partner (unpaired), someone without
credentials, and an operator signed in to /ops. Outcomes are HTTP statuses, LOGIN (a redirect
to /ops/login: the view never ran) or, for sockets, what the ack or the connection said.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import socketio
from flask import Flask

from service.realtime.members import open_sockets
from tests.security.conftest import ACTORS, MEMBERS, World, marker
from tests.support.client import PASSWORD, Person
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.waiting import wait_until

Outcome = int | str
LOGIN = "login"  # 302 to /ops/login
REFUSED = "refused"  # the socket connection was refused
ACCEPTED = "accepted"
OK = "ok"  # a socket ack carrying the resource
CLOSED = "closed"  # the server forgot the socket after the client left
OUTSIDERS = ("unauthenticated", "operator", "stranger", "former")


@dataclass
class Caller:
    """One actor's HTTP identity: a bearer token, the operator's cookie, or nothing."""

    actor: str
    base_url: str
    http: requests.Session
    person: Person | None = None
    csrf: str | None = None

    def request(
        self, method: str, path: str, *, json: Any = None, form: dict[str, str] | None = None
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.person.access_token}"} if self.person else {}
        data = None
        if form is not None:
            data = dict(form)
            if self.csrf:
                data["csrf_token"] = self.csrf
        return self.http.request(
            method,
            self.base_url + path,
            json=json,
            data=data,
            headers=headers,
            allow_redirects=False,
            timeout=10,
        )


Call = Callable[[World, Caller], requests.Response]


@dataclass(frozen=True)
class Route:
    call: Call
    expect: dict[str, Outcome]
    why: str = ""


def members_only(
    owner: Outcome,
    partner: Outcome | None = None,
    stranger: Outcome = 404,
    former: Outcome = 404,
) -> dict[str, Outcome]:
    """Member endpoints: bearer token required; operators' cookies count for nothing."""
    return {
        "unauthenticated": 401,
        "operator": 401,
        "stranger": stranger,
        "former": former,
        "partner": owner if partner is None else partner,
        "owner": owner,
    }


def own(status: Outcome, *, unpaired: Outcome | None = None) -> dict[str, Outcome]:
    """The caller's own things: every member gets `status` (an unpaired one `unpaired`)."""
    former = status if unpaired is None else unpaired
    return members_only(status, stranger=status, former=former)


def everyone(status: Outcome) -> dict[str, Outcome]:
    return dict.fromkeys(ACTORS, status)


def operators(status: Outcome, others: Outcome = LOGIN) -> dict[str, Outcome]:
    return {**everyone(others), "operator": status}


def cid() -> str:
    return str(uuid.uuid4())


def sign_in(w: World) -> dict[str, Any]:
    body = {"email": w.spare.email, "password": PASSWORD}
    response = w.client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def bid_path(w: World, tail: str = "") -> str:
    return f"/api/v1/bids/{w.bid['id']}{tail}"


def repair_path(w: World, tail: str = "") -> str:
    return f"/api/v1/repairs/{w.repair['id']}{tail}"


def signed_out_everywhere(w: World, c: Caller) -> requests.Response:
    """DELETE /me/sessions as the caller; a member then signs in again, for the routes after."""
    response = c.request("DELETE", "/api/v1/me/sessions")
    if c.person is not None and response.status_code == 204:
        body = {"email": c.person.email, "password": PASSWORD}
        again = w.client.post("/api/v1/auth/login", json=body)
        assert again.status_code == 200, again.text
        c.person.access_token = again.json()["access_token"]
        c.person.refresh_token = again.json()["refresh_token"]
    return response


def owners_other_session(w: World) -> str:
    """The id of a new session of the owner's: signed in on another phone."""
    body = {"email": w.owner.email, "password": PASSWORD}
    signed_in = w.client.post("/api/v1/auth/login", json=body)
    assert signed_in.status_code == 200, signed_in.text
    headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    listed = w.client.get("/api/v1/me/sessions", headers=headers)
    assert listed.status_code == 200, listed.text
    (current,) = [item["id"] for item in listed.json()["items"] if item["current"]]
    return str(current)


def target_path(w: World, tail: str = "") -> str:
    return f"/ops/support/users/{w.target.id}{tail}"


def new_email() -> str:
    return f"matrix-{uuid.uuid4().hex[:10]}@example.test"


# Run in this order: routes that change shared state come after the ones that read it, and
# the ones that end a session, a couple or an account come last.
ROUTES: dict[tuple[str, str], Route] = {
    # --- public: the same for everyone, whoever else the caller is ---------------------------
    ("POST", "/api/v1/auth/register"): Route(
        lambda w, c: c.request(
            "POST",
            "/api/v1/auth/register",
            json={
                "email": new_email(),
                "password": PASSWORD,
                "display_name": "New",
                "timezone": "UTC",
            },
        ),
        everyone(201),
    ),
    ("POST", "/api/v1/auth/login"): Route(
        lambda w, c: c.request(
            "POST", "/api/v1/auth/login", json={"email": w.spare.email, "password": PASSWORD}
        ),
        everyone(200),
    ),
    ("POST", "/api/v1/auth/refresh"): Route(
        lambda w, c: c.request(
            "POST", "/api/v1/auth/refresh", json={"refresh_token": sign_in(w)["refresh_token"]}
        ),
        everyone(200),
    ),
    ("POST", "/api/v1/auth/logout"): Route(
        lambda w, c: c.request(
            "POST", "/api/v1/auth/logout", json={"refresh_token": sign_in(w)["refresh_token"]}
        ),
        everyone(204),
        "logout needs only the refresh token it revokes",
    ),
    ("POST", "/api/v1/auth/password-reset"): Route(
        lambda w, c: c.request(
            "POST", "/api/v1/auth/password-reset", json={"email": w.spare.email}
        ),
        everyone(202),
        "mails the code to the account's own address, whoever asks; the same answer for any",
    ),
    ("POST", "/api/v1/auth/password-reset/confirm"): Route(
        lambda w, c: c.request(
            "POST",
            "/api/v1/auth/password-reset/confirm",
            json={"email": w.spare.email, "code": "AAAA-AAAA", "password": "a new passphrase"},
        ),
        everyone(422),
        "the mailed code is the proof: a wrong one is refused whoever sends it",
    ),
    ("GET", "/api/v1/openapi.json"): Route(
        lambda w, c: c.request("GET", "/api/v1/openapi.json"), everyone(200)
    ),
    ("GET", "/healthz"): Route(lambda w, c: c.request("GET", "/healthz"), everyone(200)),
    ("GET", "/readyz"): Route(lambda w, c: c.request("GET", "/readyz"), everyone(200)),
    ("GET", "/metrics"): Route(
        lambda w, c: c.request("GET", "/metrics"),
        everyone(200),
        "aggregates only, for the scraper; keep it off the public internet (docs/operations)",
    ),
    ("GET", "/static/<path:filename>"): Route(
        lambda w, c: c.request("GET", "/static/ops.css"), everyone(404), "the app has no /static"
    ),
    ("GET", "/ops/static/<path:filename>"): Route(
        lambda w, c: c.request("GET", "/ops/static/ops.css"), everyone(200)
    ),
    # --- the caller's own account ----------------------------------------------------------
    ("GET", "/api/v1/me"): Route(lambda w, c: c.request("GET", "/api/v1/me"), own(200)),
    ("PATCH", "/api/v1/me"): Route(
        lambda w, c: c.request("PATCH", "/api/v1/me", json={"notes_on_lock_screen": False}),
        own(200),
    ),
    ("GET", "/api/v1/me/export"): Route(
        lambda w, c: c.request("GET", "/api/v1/me/export"), own(200)
    ),
    ("GET", "/api/v1/me/sessions"): Route(
        lambda w, c: c.request("GET", "/api/v1/me/sessions"), own(200)
    ),
    ("POST", "/api/v1/me/email"): Route(
        lambda w, c: c.request(
            "POST", "/api/v1/me/email", json={"email": new_email(), "password": PASSWORD}
        ),
        own(202),
        "a code for the caller's own account, mailed to the new address; nothing changes yet",
    ),
    ("POST", "/api/v1/me/email/confirm"): Route(
        lambda w, c: c.request("POST", "/api/v1/me/email/confirm", json={"code": "AAAA-AAAA"}),
        own(422),
        "only the code mailed for the caller's own change works: a wrong one is refused",
    ),
    ("DELETE", "/api/v1/me/sessions/<uuid:session_id>"): Route(
        lambda w, c: c.request("DELETE", f"/api/v1/me/sessions/{owners_other_session(w)}"),
        members_only(204, partner=404),
        "a session of the owner's other phone: not even the partner may end it",
    ),
    ("POST", "/api/v1/couple/invites"): Route(
        lambda w, c: c.request("POST", "/api/v1/couple/invites"),
        own(409, unpaired=201),
        "the paired may not invite",
    ),
    ("GET", "/api/v1/couple/invites"): Route(
        lambda w, c: c.request("GET", "/api/v1/couple/invites"),
        own(409, unpaired=200),
        "the caller's own code alone (the unpaired one made it just above)",
    ),
    ("DELETE", "/api/v1/couple/invites"): Route(
        lambda w, c: c.request("DELETE", "/api/v1/couple/invites"),
        own(409, unpaired=204),
        "the caller's own code alone",
    ),
    ("POST", "/api/v1/couple/join"): Route(
        lambda w, c: c.request("POST", "/api/v1/couple/join", json={"code": "ZZZZ-ZZZZ"}),
        own(409, unpaired=422),
    ),
    ("GET", "/api/v1/couple"): Route(
        lambda w, c: c.request("GET", "/api/v1/couple"), own(200, unpaired=404)
    ),
    ("GET", "/api/v1/devices"): Route(lambda w, c: c.request("GET", "/api/v1/devices"), own(200)),
    ("POST", "/api/v1/devices"): Route(
        lambda w, c: c.request(
            "POST", "/api/v1/devices", json={"platform": "web", "push_token": marker("token")}
        ),
        own(201),
    ),
    ("DELETE", "/api/v1/devices/<uuid:device_id>"): Route(
        lambda w, c: c.request("DELETE", f"/api/v1/devices/{w.owner_device}"),
        members_only(204, partner=404),
        "the owner's device: not even the partner may remove it",
    ),
    # --- the couple's shared things: collections act on the caller's own couple ------------
    ("GET", "/api/v1/bids"): Route(
        lambda w, c: c.request("GET", "/api/v1/bids"), own(200, unpaired=404)
    ),
    ("POST", "/api/v1/bids"): Route(
        lambda w, c: c.request(
            "POST", "/api/v1/bids", json={"client_id": cid(), "kind": "connect"}
        ),
        own(201, unpaired=404),
    ),
    ("GET", "/api/v1/bids/<uuid:bid_id>"): Route(
        lambda w, c: c.request("GET", bid_path(w)), members_only(200)
    ),
    ("POST", "/api/v1/bids/<uuid:bid_id>/delivered"): Route(
        lambda w, c: c.request("POST", bid_path(w, "/delivered")),
        members_only(403, partner=200),
        "403 only to who can see the bid: its sender",
    ),
    ("POST", "/api/v1/bids/<uuid:bid_id>/seen"): Route(
        lambda w, c: c.request("POST", bid_path(w, "/seen")), members_only(403, partner=200)
    ),
    ("POST", "/api/v1/bids/<uuid:bid_id>/responses"): Route(
        lambda w, c: c.request(
            "POST", bid_path(w, "/responses"), json={"client_id": cid(), "kind": "toward"}
        ),
        members_only(403, partner=201),
    ),
    ("GET", "/api/v1/repairs"): Route(
        lambda w, c: c.request("GET", "/api/v1/repairs"), own(200, unpaired=404)
    ),
    ("POST", "/api/v1/repairs"): Route(
        lambda w, c: c.request(
            "POST", "/api/v1/repairs", json={"client_id": cid(), "bid_id": w.bid["id"]}
        ),
        members_only(201, stranger=422),
        "naming another couple's bid reads as 'no such bid' (422), like a made-up id",
    ),
    ("GET", "/api/v1/repairs/<uuid:repair_id>"): Route(
        lambda w, c: c.request("GET", repair_path(w)), members_only(200)
    ),
    ("GET", "/api/v1/repairs/<uuid:repair_id>/messages"): Route(
        lambda w, c: c.request("GET", repair_path(w, "/messages")), members_only(200)
    ),
    ("POST", "/api/v1/repairs/<uuid:repair_id>/messages"): Route(
        lambda w, c: c.request(
            "POST", repair_path(w, "/messages"), json={"client_id": cid(), "body": "I hear you."}
        ),
        members_only(201),
    ),
    ("POST", "/api/v1/repairs/<uuid:repair_id>/read"): Route(
        lambda w, c: c.request("POST", repair_path(w, "/read"), json={"seq": 1}),
        members_only(200),
    ),
    ("POST", "/api/v1/repairs/<uuid:repair_id>/pause"): Route(
        lambda w, c: c.request("POST", repair_path(w, "/pause"), json={"minutes": 20}),
        members_only(200),
    ),
    ("POST", "/api/v1/repairs/<uuid:repair_id>/resume"): Route(
        lambda w, c: c.request("POST", repair_path(w, "/resume")), members_only(200)
    ),
    ("POST", "/api/v1/repairs/<uuid:repair_id>/resolve"): Route(
        lambda w, c: c.request("POST", repair_path(w, "/resolve")), members_only(200)
    ),
    ("GET", "/api/v1/insights"): Route(
        lambda w, c: c.request("GET", "/api/v1/insights"), own(200, unpaired=404)
    ),
    ("GET", "/api/v1/checkins"): Route(
        lambda w, c: c.request("GET", "/api/v1/checkins"), own(200, unpaired=404)
    ),
    ("POST", "/api/v1/checkins"): Route(
        lambda w, c: c.request(
            "POST",
            "/api/v1/checkins",
            json={"client_id": str(uuid.uuid4()), "accessible": 4, "responsive": 3, "engaged": 5},
        ),
        own(201, unpaired=404),
    ),
    ("GET", "/api/v1/checkins/current"): Route(
        lambda w, c: c.request("GET", "/api/v1/checkins/current"), own(200, unpaired=404)
    ),
    ("GET", "/api/v1/sync"): Route(
        lambda w, c: c.request("GET", "/api/v1/sync"), own(200, unpaired=404)
    ),
    # --- /ops: an operator's session cookie, never a member's token ------------------------
    ("GET", "/ops/"): Route(lambda w, c: c.request("GET", "/ops/"), operators(200)),
    ("GET", "/ops/push"): Route(lambda w, c: c.request("GET", "/ops/push"), operators(200)),
    ("GET", "/ops/audit"): Route(lambda w, c: c.request("GET", "/ops/audit"), operators(200)),
    ("GET", "/ops/support"): Route(lambda w, c: c.request("GET", "/ops/support"), operators(200)),
    ("GET", "/ops/api/overview"): Route(
        lambda w, c: c.request("GET", "/ops/api/overview"), operators(200, 401)
    ),
    ("GET", "/ops/api/push"): Route(
        lambda w, c: c.request("GET", "/ops/api/push"), operators(200, 401)
    ),
    ("GET", "/ops/api/audit"): Route(
        lambda w, c: c.request("GET", "/ops/api/audit"), operators(200, 401)
    ),
    ("GET", "/ops/login"): Route(
        lambda w, c: c.request("GET", "/ops/login"),
        operators(302, 200),
        "signed in already: on to the overview",
    ),
    ("POST", "/ops/login"): Route(
        lambda w, c: c.request(
            "POST",
            "/ops/login",
            form={"email": w.operator_account.email, "password": "not the password"},
        ),
        operators(302, 400),
        "without the page's CSRF token a sign-in is refused (400)",
    ),
    ("POST", "/ops/support/search"): Route(
        lambda w, c: c.request("POST", "/ops/support/search", form={"email": w.target.email}),
        operators(302),
    ),
    ("GET", "/ops/support/users/<uuid:user_id>"): Route(
        lambda w, c: c.request("GET", target_path(w)), operators(200)
    ),
    ("POST", "/ops/support/users/<uuid:user_id>/devices/<uuid:device_id>/disable"): Route(
        lambda w, c: c.request(
            "POST", target_path(w, f"/devices/{w.target_device}/disable"), form={}
        ),
        operators(302),
    ),
    ("POST", "/ops/support/users/<uuid:user_id>/revoke-sessions"): Route(
        lambda w, c: c.request("POST", target_path(w, "/revoke-sessions"), form={}),
        operators(302),
    ),
    ("POST", "/ops/support/users/<uuid:user_id>/disable"): Route(
        lambda w, c: c.request("POST", target_path(w, "/disable"), form={}), operators(302)
    ),
    ("POST", "/ops/support/users/<uuid:user_id>/enable"): Route(
        lambda w, c: c.request("POST", target_path(w, "/enable"), form={}), operators(302)
    ),
    ("POST", "/ops/push/jobs/<int:job_id>/retry"): Route(
        lambda w, c: c.request("POST", "/ops/push/jobs/2147483647/retry", form={}),
        operators(302),
    ),
    ("GET", "/ops/<path:anything>"): Route(
        lambda w, c: c.request("GET", "/ops/no-such-page"),
        operators(404),
        "any other address under /ops: the dashboard's 404 page, past the sign-in check",
    ),
    ("POST", "/ops/<path:anything>"): Route(
        lambda w, c: c.request("POST", "/ops/no-such-page", form={}), operators(404)
    ),
    # A method no dashboard address takes: the dashboard's 405 page, past the sign-in check.
    **{
        (method, path): Route(
            lambda w, c, method=method, page=page: c.request(method, page), operators(405)
        )
        for method in ("PUT", "PATCH", "DELETE")
        for path, page in (("/ops/", "/ops/"), ("/ops/<path:anything>", "/ops/push"))
    },
    ("POST", "/ops/logout"): Route(
        lambda w, c: c.request("POST", "/ops/logout", form={}),
        everyone(LOGIN),
        "the operator is signed out; everyone else never got past the sign-in check",
    ),
    # --- last: ending a couple, then the accounts -----------------------------------------
    ("DELETE", "/api/v1/couple"): Route(
        lambda w, c: c.request("DELETE", "/api/v1/couple"),
        members_only(404, partner=204, stranger=204, former=404),
        "the partner (acting before the owner) ends C1; the owner is then single (404)",
    ),
    ("POST", "/api/v1/me/password"): Route(
        lambda w, c: c.request(
            "POST",
            "/api/v1/me/password",
            json={"current_password": PASSWORD, "new_password": PASSWORD},
        ),
        own(204),
        "the caller's own password (kept as it was, so the accounts still sign in)",
    ),
    ("DELETE", "/api/v1/me/sessions"): Route(
        signed_out_everywhere,
        own(204),
        "every session of the caller's own account ends; the caller then signs in again",
    ),
    ("DELETE", "/api/v1/me"): Route(lambda w, c: c.request("DELETE", "/api/v1/me"), own(204)),
}


def app_routes(app: Flask) -> list[tuple[str, str]]:
    return sorted(
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    )


def app_events(app: Flask) -> list[tuple[str, str]]:
    handlers: dict[str, dict[str, Any]] = app.extensions["socketio"].server.handlers
    return sorted((namespace, event) for namespace, events in handlers.items() for event in events)


def outcome_of(response: requests.Response) -> Outcome:
    location = urlsplit(response.headers.get("Location", "")).path
    if response.status_code == 302 and location == "/ops/login":
        return LOGIN
    return response.status_code


def callers(world: World, live_server: LiveServer, http: Callable[[], requests.Session]) -> dict:
    made = {"unauthenticated": Caller("unauthenticated", live_server.url, http())}
    made["operator"] = Caller("operator", live_server.url, world.ops.http, csrf=world.ops.csrf())
    for actor in MEMBERS:
        made[actor] = Caller(actor, live_server.url, http(), world.person(actor))
    return made


def leaks(world: World, actor: str, path: str, response: requests.Response) -> list[str]:
    """What an outsider read that belongs to the couple (ids, notes, words, device ids)."""
    if actor in ("owner", "partner"):
        return []
    secrets = world.secrets if path.startswith("/ops") else world.couple_secrets()
    return [secret for secret in secrets if secret in response.text]


def test_every_route_and_event_has_an_entry(app: Flask) -> None:
    routes, events = set(app_routes(app)), set(app_events(app))
    assert sorted(routes - ROUTES.keys()) == [], "routes without an entry in ROUTES"
    assert sorted(ROUTES.keys() - routes) == [], "entries in ROUTES for routes that are gone"
    assert sorted(events - EVENTS.keys()) == [], "socket events without an entry in EVENTS"
    assert sorted(EVENTS.keys() - events) == [], "entries in EVENTS for events that are gone"
    for key, route in ROUTES.items():
        assert set(route.expect) == set(ACTORS), key
    for event_key, entry in EVENTS.items():
        assert set(entry.expect) == set(ACTORS), event_key


def test_every_route_as_every_actor(
    app: Flask, world: World, live_server: LiveServer, http: Callable[[], requests.Session]
) -> None:
    present = set(app_routes(app))
    missing = sorted(present - ROUTES.keys())
    assert missing == [], f"no expectations for {missing}: add them to ROUTES"
    by_actor = callers(world, live_server, http)
    wrong: list[str] = []
    for (method, rule), route in ROUTES.items():
        for actor in ACTORS:
            response = route.call(world, by_actor[actor])
            got = outcome_of(response)
            if got != route.expect[actor]:
                wrong.append(
                    f"{method} {rule} as {actor}: {got}, expected {route.expect[actor]}"
                    f" ({response.text[:160]!r})"
                )
            if response.status_code >= 500:
                wrong.append(f"{method} {rule} as {actor}: server error {response.text[:160]!r}")
            found = leaks(world, actor, urlsplit(response.url).path, response)
            if found:
                wrong.append(f"{method} {rule} as {actor} read the couple's {found}")
        if (method, rule) == ("POST", "/ops/logout"):
            assert world.ops.get("/ops/api/overview").status_code == 401, "still signed in"
    assert wrong == [], "\n".join(wrong)


def test_an_ended_couple_is_closed_to_both_ex_partners(world: World) -> None:
    """After DELETE /couple neither ex-partner opens the old couple's bids or repairs (404)."""
    client = world.client
    paths = [
        f"/api/v1/bids/{world.former_bid['id']}",
        f"/api/v1/repairs/{world.former_repair['id']}",
        f"/api/v1/repairs/{world.former_repair['id']}/messages",
    ]
    for who in (world.former, world.owner):
        for path in paths:
            response = client.get(path, as_=who)
            assert response.status_code == 404, (who.user["display_name"], path)
            assert response.json()["code"] == "not_found"
        seen = client.post(f"/api/v1/bids/{world.former_bid['id']}/seen", as_=who)
        assert seen.status_code == 404
    # Ana's current couple lists only its own bids; nothing of C0 comes back with them.
    listed = client.get("/api/v1/bids", as_=world.owner).json()["items"]
    assert world.former_bid["id"] not in {bid["id"] for bid in listed}


# --- sockets ----------------------------------------------------------------------------


@dataclass
class Sockets:
    """Each actor's connections, opened by the `connect` entries."""

    app: Flask
    url: str
    world: World
    cookie: str
    members: dict[str, Phone] = field(default_factory=dict)
    ops: dict[str, socketio.Client] = field(default_factory=dict)
    listeners: dict[str, Phone] = field(default_factory=dict)

    def close(self) -> None:
        for phone in [*self.members.values(), *self.listeners.values()]:
            phone.disconnect()
        for client in self.ops.values():
            if client.connected:
                client.disconnect()
        # The /ops figures loop reads the database until nobody watches: let it stop first.
        assert self.app.extensions["reach.ops_live"].wait_idle(15)


def connect_member(s: Sockets, actor: str) -> Outcome:
    person = s.world.person(actor)
    token = person.access_token if person else None
    phone = Phone(s.url, token)
    headers = {"Cookie": f"reach_ops={s.cookie}"} if actor == "operator" else {}
    try:
        phone.connect(headers=headers)
    except socketio.exceptions.ConnectionError:
        return REFUSED
    s.members[actor] = phone
    return ACCEPTED


def connect_ops(s: Sockets, actor: str) -> Outcome:
    client = socketio.Client(reconnection=False)
    person = s.world.person(actor)
    kwargs: dict[str, Any] = {}
    if actor == "operator":
        kwargs["headers"] = {"Cookie": f"reach_ops={s.cookie}"}
    elif person is not None:
        kwargs["auth"] = {"token": person.access_token}
        kwargs["headers"] = {"Authorization": f"Bearer {person.access_token}"}
    try:
        client.connect(
            s.url, namespaces=["/ops"], transports=["websocket"], wait_timeout=5, **kwargs
        )
    except socketio.exceptions.ConnectionError:
        client.disconnect()
        return REFUSED
    s.ops[actor] = client
    return ACCEPTED


def ack(s: Sockets, actor: str, event: str, payload: dict[str, Any]) -> Outcome:
    phone = s.members.get(actor)
    if phone is None:
        return REFUSED
    answer = phone.call(event, payload)
    assert isinstance(answer, dict), answer
    return int(answer["status"]) if "code" in answer else OK


def typing(s: Sockets, actor: str) -> Outcome:
    """Who in the couple hears this actor type in C1's conversation: the partner only, or
    nobody (the stranger's partner neither: C1's conversation id is not theirs to hear)."""
    phone = s.members.get(actor)
    if phone is None:
        return REFUSED
    said = s.world.repair["id"]
    couple = ("owner", "partner")
    heard_before = {who: len(about_it(s.members[who], said)) for who in couple}
    phone.client.emit("typing", {"repair_id": said})
    listener = {"owner": "partner", "partner": "owner"}.get(actor)
    if listener is not None:
        wait_until(
            lambda: len(about_it(s.members[listener], said)) > heard_before[listener],
            what="the partner to hear the typing",
        )
    else:
        # A barrier: each partner, and the stranger's partner, hears a later bare `typing`.
        pairs = [("owner", s.members["partner"]), ("partner", s.members["owner"])]
        if actor == "stranger":
            pairs.append((actor, s.listeners["stranger_partner"]))
        for speaker, hearer in pairs:
            bare = len(about_it(hearer, None))
            s.members[speaker].client.emit("typing", {})
            wait_until(
                lambda hearer=hearer, bare=bare: len(about_it(hearer, None)) > bare,
                what="a bare typing",
            )
    heard = [
        who
        for who in couple
        if who != actor and len(about_it(s.members[who], said)) > heard_before[who]
    ]
    return "heard by " + (", ".join(heard) or "nobody")


def about_it(phone: Phone, repair_id: str | None) -> list[Any]:
    """The `typing` this phone heard about the conversation (None: about none)."""
    return [data for data in phone.named("typing") if data.get("repair_id") == repair_id]


def disconnect_member(s: Sockets, actor: str) -> Outcome:
    """The client leaves; the server's disconnect handler forgets the socket."""
    phone = s.members.pop(actor, None)
    person = s.world.person(actor)
    if phone is None or person is None:
        return REFUSED
    phone.disconnect()

    def open_here() -> int:
        with s.app.app_context():
            return open_sockets().count(person.id)

    try:
        wait_until(lambda: open_here() == 0, timeout=5, what="the server to forget the socket")
    except AssertionError:
        return "still open"
    return CLOSED


def disconnect_ops(s: Sockets, actor: str) -> Outcome:
    client = s.ops.pop(actor, None)
    if client is None:
        return REFUSED
    client.disconnect()
    live = s.app.extensions["reach.ops_live"]
    return CLOSED if live.wait_idle(15) and live.watchers == 0 else "still watching"


@dataclass(frozen=True)
class Event:
    run: Callable[[Sockets, str], Outcome]
    expect: dict[str, Outcome]
    why: str = ""


def socket_members(
    owner: Outcome, partner: Outcome | None = None, stranger: Outcome = 404, former: Outcome = 404
) -> dict[str, Outcome]:
    return {
        "unauthenticated": REFUSED,
        "operator": REFUSED,
        "stranger": stranger,
        "former": former,
        "partner": owner if partner is None else partner,
        "owner": owner,
    }


def message_payload(s: Sockets) -> dict[str, Any]:
    return {"repair_id": s.world.repair["id"], "client_id": cid(), "body": "I'm listening."}


EVENTS: dict[tuple[str, str], Event] = {
    ("/", "connect"): Event(
        connect_member,
        socket_members(ACCEPTED, stranger=ACCEPTED, former=ACCEPTED),
        "an access token in `auth`; the operator's cookie alone is refused",
    ),
    ("/", "typing"): Event(
        typing,
        socket_members(
            "heard by partner",
            partner="heard by owner",
            stranger="heard by nobody",
            former="heard by nobody",
        ),
    ),
    ("/", "bid.send"): Event(
        lambda s, a: ack(s, a, "bid.send", {"client_id": cid(), "kind": "share"}),
        socket_members(OK, stranger=OK, former=404),
    ),
    ("/", "bid.seen"): Event(
        lambda s, a: ack(s, a, "bid.seen", {"bid_id": s.world.socket_bid["id"]}),
        socket_members(403, partner=OK),
    ),
    ("/", "bid.respond"): Event(
        lambda s, a: ack(
            s,
            a,
            "bid.respond",
            {"bid_id": s.world.socket_bid["id"], "client_id": cid(), "kind": "toward"},
        ),
        socket_members(403, partner=OK),
    ),
    ("/", "repair.message"): Event(
        lambda s, a: ack(s, a, "repair.message", message_payload(s)), socket_members(OK)
    ),
    ("/", "*"): Event(
        lambda s, a: ack(s, a, "bid.delivered", {"bid_id": s.world.socket_bid["id"]}),
        socket_members(404, stranger=404, former=404),
        "any event without a handler of its own: a 404 problem, the same for everyone",
    ),
    ("/", "disconnect"): Event(
        disconnect_member, socket_members(CLOSED, stranger=CLOSED, former=CLOSED)
    ),
    ("/ops", "connect"): Event(
        connect_ops,
        {**dict.fromkeys(ACTORS, REFUSED), "operator": ACCEPTED},
        "the operator's session cookie; members' tokens (auth or header) are refused",
    ),
    ("/ops", "disconnect"): Event(
        disconnect_ops, {**dict.fromkeys(ACTORS, REFUSED), "operator": CLOSED}
    ),
}


def test_every_socket_event_as_every_actor(
    app: Flask, world: World, live_server: LiveServer
) -> None:
    present = set(app_events(app))
    missing = sorted(present - EVENTS.keys())
    assert missing == [], f"no expectations for {missing}: add them to EVENTS"
    cookie = world.ops.cookie
    assert cookie is not None
    sockets = Sockets(app, live_server.url, world, cookie)
    sockets.listeners["stranger_partner"] = Phone(
        live_server.url, world.stranger_partner.access_token
    ).connect()
    wrong: list[str] = []
    try:
        for (namespace, event), entry in EVENTS.items():
            for actor in ACTORS:
                got = entry.run(sockets, actor)
                if got != entry.expect[actor]:
                    expected = entry.expect[actor]
                    wrong.append(f"{namespace} {event} as {actor}: {got}, expected {expected}")
        # Nothing of the couple reached an outsider's phone, whatever they tried.
        for actor in ("stranger", "former"):
            phone = sockets.members.get(actor)
            heard = json.dumps(phone.events if phone else [])
            found = [secret for secret in world.couple_secrets() if secret in heard]
            assert found == [], f"{actor}'s phone heard {found}"
        stranger_couple = json.dumps(sockets.listeners["stranger_partner"].events)
        assert [s for s in world.couple_secrets() if s in stranger_couple] == []
    finally:
        sockets.close()
    assert wrong == [], "\n".join(wrong)
