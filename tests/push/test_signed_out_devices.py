"""A phone's pushes belong to the sign-in session that registered its token: once that session
ends (signed out, a reused refresh token, signed out everywhere) the phone shows no more of the
couple's bids, until it signs in and registers again. A token FCM reported unregistered is
never taken back."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from service.clock import clock
from service.worker.runner import Worker
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn


def register(client: ApiClient, who: Person, token: str) -> Any:
    return client.post(
        "/api/v1/devices", as_=who, json={"platform": "android", "push_token": token}
    )


def second_phone(client: ApiClient, who: Person) -> Person:
    """The same account signed in on another phone: a sign-in session of its own."""
    signed_in = client.post(
        "/api/v1/auth/login", json={"email": who.email, "password": who.password}
    )
    assert signed_in.status_code == 200, signed_in.text
    tokens = signed_in.json()
    return Person(
        who.email, who.password, who.user, tokens["access_token"], tokens["refresh_token"]
    )


def reach(client: ApiClient, sender: Person) -> None:
    body = {"client_id": str(uuid.uuid4()), "kind": "connect"}
    assert client.post("/api/v1/bids", as_=sender, json=body).status_code == 201


def pushed_to(standin: FcmStandIn, worker: Worker, sent_before: int) -> list[str]:
    worker.run_once()
    return sorted(m["token"] for m in standin.messages()[sent_before:])


def states(client: ApiClient, who: Person) -> set[tuple[bool, str | None]]:
    listed = client.get("/api/v1/devices", as_=who).json()["items"]
    return {(d["active"], d["disabled_reason"]) for d in listed}


def test_a_phone_that_signs_out_gets_no_more_pushes_until_it_signs_in_again(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    tablet = second_phone(client, ben)
    assert register(client, ben, "ben-phone-token").status_code == 201
    assert register(client, tablet, "ben-tablet-token").status_code == 201
    reach(client, ana)
    assert pushed_to(standin, fcm_worker, 0) == ["ben-phone-token", "ben-tablet-token"]

    out = client.post("/api/v1/auth/logout", json={"refresh_token": ben.refresh_token})
    assert out.status_code == 204
    assert states(client, tablet) == {(False, "signed_out"), (True, None)}
    reach(client, ana)
    assert pushed_to(standin, fcm_worker, 2) == ["ben-tablet-token"]

    # Signed in again, the app registers its token at start: pushes resume.
    again = register(client, client.fresh(ben), "ben-phone-token")
    assert again.status_code == 201 and again.json()["active"] is True
    reach(client, ana)
    assert pushed_to(standin, fcm_worker, 3) == ["ben-phone-token", "ben-tablet-token"]


def test_a_session_revoked_for_a_reused_refresh_token_stops_its_phones_pushes(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """Someone who took Ben's refresh token registered their own phone with it: when the
    theft shows (the token used twice), that phone's pushes stop with the session."""
    ana, ben = client.couple()
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": ben.refresh_token})
    assert rotated.status_code == 200
    thief = Person(ben.email, "", ben.user, rotated.json()["access_token"], "")
    assert register(client, thief, "thief-phone-token").status_code == 201
    clock.freeze(clock.now() + timedelta(seconds=30))  # too late for a retry of a lost answer
    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": ben.refresh_token})
    assert replay.status_code == 401
    assert states(client, client.fresh(ben)) == {(False, "signed_out")}
    reach(client, ana)
    assert pushed_to(standin, fcm_worker, 0) == []


def test_a_token_fcm_reported_unregistered_is_refused_when_registered_again(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    assert register(client, ben, "ben-uninstalled-token").status_code == 201
    standin.script("ben-uninstalled-token", fcm.UNREGISTERED)
    reach(client, ana)
    fcm_worker.run_once()
    again = register(client, ben, "ben-uninstalled-token")
    assert again.status_code == 422, again.text
    assert again.json()["code"] == "validation_error"
    assert "push_token" in again.json()["errors"]
    assert states(client, ben) == {(False, "unregistered")}
    reach(client, ana)
    assert pushed_to(standin, fcm_worker, 1) == []
    # The new token the platform gives works.
    assert register(client, ben, "ben-reinstalled-token").status_code == 201
    reach(client, ana)
    assert pushed_to(standin, fcm_worker, 1) == ["ben-reinstalled-token"]


def test_a_dead_token_stays_refused_after_its_device_is_deleted(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """A phone that reinstalls the app gets a new token; a dead one that comes back is a stale
    copy (a backup restored, an app that cached it). Deleting its device must not make the
    server take it, or every push to it fails again while the phone believes it is reachable."""
    ana, ben = client.couple()
    assert register(client, ben, "ben-dead-token").status_code == 201
    assert register(client, ben, "ben-mangled-token").status_code == 201
    standin.script("ben-dead-token", fcm.UNREGISTERED)
    standin.script("ben-mangled-token", fcm.INVALID_TOKEN)
    reach(client, ana)
    fcm_worker.run_once()
    listed = client.get("/api/v1/devices", as_=ben).json()["items"]
    for gone in listed:
        assert client.delete(f"/api/v1/devices/{gone['id']}", as_=ben).status_code == 204

    for token in ("ben-dead-token", "ben-mangled-token"):
        again = register(client, ben, token)
        assert again.status_code == 422, again.text
        assert "push_token" in again.json()["errors"]
    reach(client, ana)
    assert pushed_to(standin, fcm_worker, 2) == []
    # Nor on another account, nor once the account that had it is gone.
    cat, _ = client.couple("Cat", "Dan")
    assert register(client, cat, "ben-dead-token").status_code == 422
    assert client.delete("/api/v1/me", as_=ben).status_code == 204
    assert register(client, cat, "ben-mangled-token").status_code == 422
