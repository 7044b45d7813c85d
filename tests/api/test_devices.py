"""Registering push tokens, listing and deleting devices."""

from __future__ import annotations

import re
import secrets
import string
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Connection, event, text

from service.extensions import db
from service.worker.runner import Worker
from tests.support.client import ApiClient
from tests.support.plans import rows_examined, rows_fetched
from tests.support.server import LiveServer


def test_register_list_and_delete(client: ApiClient) -> None:
    ana = client.register("Ana")
    created = client.post(
        "/api/v1/devices",
        as_=ana,
        json={
            "platform": "ios",
            "push_token": "apns-token-aaaa",
            "app_version": "1.2.0",
            "locale": "de-DE",
        },
    )
    assert created.status_code == 201, created.text
    device = created.json()
    assert device["platform"] == "ios"
    assert device["active"] is True
    assert device["disabled_reason"] is None
    assert "push_token" not in device

    listed = client.get("/api/v1/devices", as_=ana).json()
    assert listed == {"items": [device], "next": None}

    assert client.delete(f"/api/v1/devices/{device['id']}", as_=ana).status_code == 204
    assert client.get("/api/v1/devices", as_=ana).json()["items"] == []
    assert client.delete(f"/api/v1/devices/{device['id']}", as_=ana).status_code == 404


def test_devices_are_listed_newest_first_a_page_at_a_time(client: ApiClient) -> None:
    ana = client.register("Ana")
    ids = [
        client.post(
            "/api/v1/devices", as_=ana, json={"platform": "ios", "push_token": f"ana-token-{n}"}
        ).json()["id"]
        for n in range(3)
    ]
    first = client.get("/api/v1/devices?limit=2", as_=ana).json()
    assert [d["id"] for d in first["items"]] == ids[:0:-1]
    rest = client.get(f"/api/v1/devices?limit=2&before={first['next']}", as_=ana).json()
    assert rest == {
        "items": [client.get("/api/v1/devices", as_=ana).json()["items"][2]],
        "next": None,
    }
    assert rest["items"][0]["id"] == ids[0]
    for query in ("limit=0", "limit=201", "before=not-ours"):
        bad = client.get(f"/api/v1/devices?{query}", as_=ana)
        assert bad.status_code == 422, (query, bad.text)


def test_registering_a_known_token_updates_it(client: ApiClient) -> None:
    ana = client.register("Ana")
    body = {"platform": "android", "push_token": "fcm-token-bbbb"}
    first = client.post("/api/v1/devices", as_=ana, json=body)
    again = client.post("/api/v1/devices", as_=ana, json={**body, "app_version": "2.0"})
    # An upsert: 201 either way, so the answer does not tell whether the token was known.
    assert first.status_code == 201
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["app_version"] == "2.0"
    assert len(client.get("/api/v1/devices", as_=ana).json()["items"]) == 1


def test_a_token_moves_to_whoever_signs_in_on_the_phone(client: ApiClient) -> None:
    ana, ben = client.register("Ana"), client.register("Ben")
    body = {"platform": "android", "push_token": "shared-phone-token"}
    client.post("/api/v1/devices", as_=ana, json=body)
    client.post("/api/v1/devices", as_=ben, json=body)
    assert client.get("/api/v1/devices", as_=ana).json()["items"] == []
    assert len(client.get("/api/v1/devices", as_=ben).json()["items"]) == 1


def test_nobody_deletes_someone_elses_device(client: ApiClient) -> None:
    ana, ben = client.couple()
    device = client.post(
        "/api/v1/devices", as_=ana, json={"platform": "web", "push_token": "web-token-cccc"}
    ).json()
    assert client.delete(f"/api/v1/devices/{device['id']}", as_=ben).status_code == 404
    assert len(client.get("/api/v1/devices", as_=ana).json()["items"]) == 1


def test_bad_device_bodies(client: ApiClient) -> None:
    ana = client.register("Ana")
    for body, field in (
        ({"platform": "symbian", "push_token": "tok-tok-tok"}, "platform"),
        ({"platform": "ios"}, "push_token"),
        ({"platform": "ios", "push_token": "short"}, "push_token"),
        ({"platform": "ios", "push_token": "x" * 2049}, "push_token"),
        ({"platform": "ios", "push_token": "tök-tök-tök"}, "push_token"),
        ({"platform": "ios", "push_token": "tok-tok-tok", "extra": 1}, "extra"),
    ):
        response = client.post("/api/v1/devices", as_=ana, json=body)
        assert response.status_code == 422, body
        assert field in response.json()["errors"]
    assert client.get("/api/v1/devices", as_=ana).json()["items"] == []
    assert client.delete("/api/v1/devices/not-a-uuid", as_=ana).status_code == 404


def test_a_token_is_taken_without_the_whitespace_around_it(client: ApiClient) -> None:
    """An app that reads its token with a line break or spaces around it (from a file, a
    bridge, a paste) means the same token: the same device, not a second one for the phone,
    whose every push FCM refuses as "not a valid FCM registration token"."""
    ana = client.register("Ana")
    token = "dGhpcy1pcy1h:APA91bE-ana_phone"
    plain = client.post(
        "/api/v1/devices", as_=ana, json={"platform": "android", "push_token": token}
    )
    assert plain.status_code == 201, plain.text
    for padded in (f" {token}", f"{token}\n", f"\t{token} \r\n"):
        again = client.post(
            "/api/v1/devices", as_=ana, json={"platform": "android", "push_token": padded}
        )
        assert again.status_code == 201, again.text
        assert again.json()["id"] == plain.json()["id"]
    assert [d["id"] for d in client.get("/api/v1/devices", as_=ana).json()["items"]] == [
        plain.json()["id"]
    ]


def test_a_token_with_spaces_or_control_characters_is_refused(client: ApiClient) -> None:
    """No FCM registration token holds a space or a control character: such a token (or one
    of spaces only) can never get a push, so it is refused at once rather than registered."""
    ana = client.register("Ana")
    for token in (
        " " * 12,
        "ana phone token",
        "ana-phone\ttoken",
        "ana-phone\ntoken",
        "ana-phone\x7ftoken",
        "ana-phone\x01token",
        "  short \n",
    ):
        body = {"platform": "android", "push_token": token}
        refused = client.post("/api/v1/devices", as_=ana, json=body)
        assert refused.status_code == 422, (token, refused.text)
        assert list(refused.json()["errors"]) == ["push_token"]
    assert client.get("/api/v1/devices", as_=ana).json()["items"] == []


def test_a_raw_apns_device_token_is_refused_when_registered(client: ApiClient) -> None:
    """An iPhone app that registers the APNs device token (64 hex digits) instead of the FCM
    registration token used to get a 201 and an active device, and the partner's first bid
    then never reached the phone: FCM refused the push and the token was buried for good.
    It is refused at once, with what to send instead."""
    ana = client.register("Ana")
    apns = "9f3c2b7e" * 8
    for token, platform in ((apns, "ios"), (apns.upper(), "ios"), (apns, "android")):
        body = {"platform": platform, "push_token": token}
        refused = client.post("/api/v1/devices", as_=ana, json=body)
        assert refused.status_code == 422, refused.text
        assert "APNs" in " ".join(refused.json()["errors"]["push_token"])
    assert client.get("/api/v1/devices", as_=ana).json()["items"] == []
    # Hex digits that are not 64 of them are no APNs token.
    for token in (apns[:63], apns + "0"):
        body = {"platform": "ios", "push_token": token}
        assert client.post("/api/v1/devices", as_=ana, json=body).status_code == 201


def test_the_longest_push_token_registers_and_a_longer_one_is_refused(
    client: ApiClient,
) -> None:
    """A token is unique, so its whole text is indexed: the longest one taken must fit
    PostgreSQL's index (about 2700 bytes a row), and one past it gets a 422, not a 503 that
    no retry gets past. Random letters, as a real token, which PostgreSQL cannot compress."""
    ana = client.register("Ana")

    def token(length: int) -> str:
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))

    longest = client.post(
        "/api/v1/devices", as_=ana, json={"platform": "web", "push_token": token(2048)}
    )
    assert longest.status_code == 201, longest.text
    for length in (2049, 4096):
        body = {"platform": "web", "push_token": token(length)}
        refused = client.post("/api/v1/devices", as_=ana, json=body)
        assert refused.status_code == 422, refused.text
        assert "push_token" in refused.json()["errors"]
    assert [d["id"] for d in client.get("/api/v1/devices", as_=ana).json()["items"]] == [
        longest.json()["id"]
    ]


def test_an_account_keeps_its_devices_registered_most_recently(
    server_with: Callable[..., LiveServer], app: Flask
) -> None:
    """Each push costs a send per active device: past DEVICES_PER_USER, registering another
    switches off the one registered least recently, and registering that one again brings it
    back (in place of the next oldest)."""
    client = ApiClient(server_with(DEVICES_PER_USER=3).url)
    ana, ben = client.couple()
    ids = []
    for n in range(4):
        body = {"platform": "android", "push_token": f"ben-phone-{n}-token"}
        response = client.post("/api/v1/devices", as_=ben, json=body)
        assert response.status_code == 201
        ids.append(response.json()["id"])
    listed = {d["id"]: d for d in client.get("/api/v1/devices", as_=ben).json()["items"]}
    assert (listed[ids[0]]["active"], listed[ids[0]]["disabled_reason"]) == (False, "replaced")
    assert all(listed[i]["active"] for i in ids[1:])
    client.post("/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "connect"})
    assert Worker(app, name="devices-test").run_once().pushes == 3

    again = {"platform": "android", "push_token": "ben-phone-0-token"}
    assert client.post("/api/v1/devices", as_=ben, json=again).status_code == 201
    listed = {d["id"]: d for d in client.get("/api/v1/devices", as_=ben).json()["items"]}
    assert [i for i in ids if listed[i]["active"]] == [ids[0], ids[2], ids[3]]
    assert listed[ids[1]]["disabled_reason"] == "replaced"


# `:n` reinstalls of an account, one a day up to yesterday, each switched off for good.
_REINSTALLS = (
    "INSERT INTO devices (id, user_id, platform, push_token, active, disabled_reason, "
    "created_at, updated_at) SELECT gen_random_uuid(), :user, 'android', "
    "'reinstall-' || gen_random_uuid(), false, 'unregistered', t, t "
    "FROM generate_series(1, :n) AS i, LATERAL (SELECT now() - i * interval '1 day') AS at(t)"
)
# `:n` other accounts (copies of `:user`), with a phone each.
_OTHERS = (
    "INSERT INTO users SELECT (jsonb_populate_record(u, jsonb_build_object('id', "
    "gen_random_uuid(), 'email', 'other-' || i || '-' || u.email))).* "
    "FROM users AS u, generate_series(1, :n) AS i WHERE u.id = :user"
)
_THEIR_PHONES = (
    "INSERT INTO devices (id, user_id, platform, push_token, active, created_at, updated_at) "
    "SELECT gen_random_uuid(), id, 'ios', 'phone-' || id, true, now(), now() FROM users "
    "WHERE email LIKE 'other-%'"
)


def reinstalled(connection: Connection, user: str, n: int) -> None:
    """`n` switched-off devices of the account `user`, among the live phones of 20,000 others:
    the table as PostgreSQL sees it in service, where no account holds much of it."""
    connection.execute(text(_REINSTALLS), {"user": user, "n": n})
    connection.execute(text(_OTHERS), {"user": user, "n": 20_000})
    connection.execute(text(_THEIR_PHONES))


@pytest.mark.postgres
def test_registering_reads_the_accounts_live_devices_not_every_reinstall(
    client: ApiClient, app: Flask
) -> None:
    """Years of reinstalls leave hundreds of switched-off devices: registering one more finds
    the active ones to keep without reading them all."""
    ana = client.register("Ana")
    history = 500
    with app.app_context(), db.scope() as session:
        reinstalled(session.connection(), ana.id, history)
    reads: list[tuple[str, Any]] = []

    def on(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if re.match(r"\s*SELECT\b.*\bFROM devices\b", statement, re.DOTALL):
            reads.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on)
    try:
        body = {"platform": "android", "push_token": "ana-phone-token"}
        assert client.post("/api/v1/devices", as_=ana, json=body).status_code == 201
    finally:
        event.remove(engine, "before_cursor_execute", on)
    assert reads
    with app.app_context(), db.scope() as session:
        for statement, parameters in reads:
            read = rows_examined(session.connection(), statement, parameters, "devices")
            assert read <= 10, f"read {read} devices of {history} switched off: {statement}"


# The others' phones registered over the years, and many of them since switched off (signed
# out, replaced, uninstalled), as in service.
_REGISTERED_OVER_YEARS = (
    "UPDATE devices SET created_at = now() - random() * interval '1000 days', "
    "active = random() < 0.5 WHERE user_id <> :user"
)


@pytest.mark.postgres
def test_listing_reads_the_page_it_shows_not_every_reinstall(client: ApiClient, app: Flask) -> None:
    """Years of reinstalls leave hundreds of switched-off devices: each page of the list reads
    the devices it shows (and the one that says there are more), not every one the account
    ever had, however far down the list it is."""
    ana = client.register("Ana")
    history = 500
    with app.app_context(), db.scope() as session:
        reinstalled(session.connection(), ana.id, history)
        session.execute(text(_REGISTERED_OVER_YEARS), {"user": ana.id})
        session.connection().exec_driver_sql("ANALYZE devices")
    body = {"platform": "android", "push_token": "ana-phone-token"}
    live = client.post("/api/v1/devices", as_=ana, json=body).json()
    reads: list[tuple[str, Any]] = []

    def on(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if re.match(r"\s*SELECT\b.*\bFROM devices\b", statement, re.DOTALL):
            reads.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    limit, shown, before = 20, [], None
    for _ in range(3):
        query = f"?limit={limit}" + (f"&before={before}" if before else "")
        event.listen(engine, "before_cursor_execute", on)
        try:
            page = client.get(f"/api/v1/devices{query}", as_=ana)
        finally:
            event.remove(engine, "before_cursor_execute", on)
        assert page.status_code == 200, page.text
        shown += page.json()["items"]
        before = page.json()["next"]
    assert shown[0] == live
    assert len(shown) == 3 * limit and len({d["id"] for d in shown}) == 3 * limit
    assert all(not d["active"] and d["disabled_reason"] == "unregistered" for d in shown[1:])
    assert len(reads) == 6  # the live devices, and the switched-off ones, of each page
    with app.app_context(), db.scope() as session:
        for statement, parameters in reads:
            fetched = rows_fetched(session.connection(), statement, parameters, "devices")
            assert fetched <= limit + 1, f"read {fetched} devices of {history}: {statement}"
