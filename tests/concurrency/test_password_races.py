"""Real concurrency on PostgreSQL: a password change races a sign-in with the old password,
another change of the same password, or a sign-out of every phone (each ends the sessions;
neither fails)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy import func, select, text, update

from service.api.auth import token_issuer
from service.clock import clock
from service.extensions import db
from service.models import AuthSession, User
from service.security import passwords
from service.services.accounts import password_change, password_reset
from service.services.accounts import sign_in as sign_in_module
from tests.support.client import PASSWORD, ApiClient, Person
from tests.support.locks import lock_queue, rows_held

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def change(base_url: str, who: Person, current: str, new: str) -> requests.Response:
    body = {"current_password": current, "new_password": new}
    return ApiClient(base_url).post("/api/v1/me/password", as_=who, json=body)


def sign_in(base_url: str, email: str, password: str) -> requests.Response:
    body = {"email": email, "password": password}
    return ApiClient(base_url).post("/api/v1/auth/login", json=body)


def live_sessions(app: Flask, user_id: str) -> int:
    with app.app_context():
        return int(
            db.session.scalar(
                select(func.count())
                .select_from(AuthSession)
                .where(AuthSession.user_id == uuid.UUID(user_id), AuthSession.revoked_at.is_(None))
            )
            or 0
        )


@pytest.fixture
def sign_in_held_after_its_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A sign-in's password check runs as always, then holds until told to go on: the
    moment between the check and the session it starts. Yields (checked, go) events."""
    checked, go = threading.Event(), threading.Event()

    def check_then_hold(password_hash: str | None, password: str) -> passwords.Checked:
        result = passwords.check_password(password_hash, password)
        checked.set()
        assert go.wait(10), "the test never let the sign-in go on"
        return result

    monkeypatch.setattr(sign_in_module, "check_password", check_then_hold)
    try:
        yield checked, go
    finally:
        go.set()


def test_a_sign_in_that_checked_the_old_password_as_it_changed_starts_no_session(
    client: ApiClient, app: Flask, sign_in_held_after_its_check: Any
) -> None:
    """Someone who knows the old password signs in at the moment its owner changes it: the
    check passed against the old hash, and the session it then started outlived the change
    that was to sign out every other phone."""
    checked, go = sign_in_held_after_its_check
    ana = client.register("Ana")
    with ThreadPoolExecutor(max_workers=1) as pool:
        intruder = pool.submit(sign_in, client.base_url, ana.email, PASSWORD)
        assert checked.wait(10), "the sign-in never checked the password"
        changed = change(client.base_url, ana, PASSWORD, "a new passphrase")
        go.set()
        late = intruder.result(timeout=10)
    assert changed.status_code == 204, changed.text
    assert late.status_code == 401, late.text
    assert live_sessions(app, ana.id) == 1  # the owner's own


def test_two_changes_at_once_one_wins_and_the_other_is_told(client: ApiClient, app: Flask) -> None:
    """The same phone sends its change twice with two new passwords (a double tap): both
    checked the current password before either committed. The second must not overwrite the
    first while the first was answered 204."""
    ana = client.register("Ana")
    user_row = select(User).where(User.id == uuid.UUID(ana.id)).with_for_update()
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, user_row),
    ):
        first = pool.submit(change, client.base_url, ana, PASSWORD, "first new password")
        queued(1)
        second = pool.submit(change, client.base_url, ana, PASSWORD, "second new password")
        queued(2)
    answers = {
        new: future.result(timeout=10)
        for new, future in (("first new password", first), ("second new password", second))
    }
    statuses = sorted(answer.status_code for answer in answers.values())
    assert statuses == [204, 409], {new: a.text for new, a in answers.items()}
    (won,) = [new for new, answer in answers.items() if answer.status_code == 204]
    (lost,) = [new for new, answer in answers.items() if answer.status_code == 409]
    assert answers[lost].json()["code"] == "conflict"
    assert sign_in(client.base_url, ana.email, won).status_code == 200
    assert sign_in(client.base_url, ana.email, lost).status_code == 401


def test_the_same_change_sent_twice_at_once_is_answered_204_twice(
    client: ApiClient, app: Flask
) -> None:
    """The same phone sends the same change twice (a retry while the first was still under
    way): the second finds the change made, and is answered as its retry."""
    ana = client.register("Ana")
    other = ApiClient(client.base_url).post(
        "/api/v1/auth/login", json={"email": ana.email, "password": PASSWORD}
    )
    assert other.status_code == 200, other.text
    user_row = select(User).where(User.id == uuid.UUID(ana.id)).with_for_update()
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, user_row),
    ):
        first = pool.submit(change, client.base_url, ana, PASSWORD, "a new passphrase")
        queued(1)
        second = pool.submit(change, client.base_url, ana, PASSWORD, "a new passphrase")
        queued(2)
    answers = [first.result(timeout=10), second.result(timeout=10)]
    assert [answer.status_code for answer in answers] == [204, 204], [a.text for a in answers]
    assert sign_in(client.base_url, ana.email, "a new passphrase").status_code == 200
    assert sign_in(client.base_url, ana.email, PASSWORD).status_code == 401
    assert live_sessions(app, ana.id) == 2  # the owner's, and the sign-in just now


def test_the_same_reset_sent_twice_at_once_signs_in_twice(client: ApiClient, app: Flask) -> None:
    """A double tap of "set new password": both sends took an attempt of the code and made
    their hash before either used the code. The second finds it used by the first, with the
    same password, and is answered as its retry: signed in, nothing else changed."""
    ana = client.register("Ana")
    with app.app_context():
        mailed = password_reset.request_password_reset(db.session, token_issuer(), ana.email)
    assert mailed is not None
    body = {"email": ana.email, "code": mailed.code, "password": "a new passphrase"}

    def confirm() -> requests.Response:
        return ApiClient(client.base_url).post("/api/v1/auth/password-reset/confirm", json=body)

    user_row = select(User).where(User.id == uuid.UUID(ana.id)).with_for_update()
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, user_row),
    ):
        first = pool.submit(confirm)
        queued(1)
        second = pool.submit(confirm)
        queued(2)
    answers = [first.result(timeout=10), second.result(timeout=10)]
    assert [answer.status_code for answer in answers] == [200, 200], [a.text for a in answers]
    for answer in answers:
        token = answer.json()["access_token"]
        me = ApiClient(client.base_url).get(
            "/api/v1/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.status_code == 200, me.text
    assert sign_in(client.base_url, ana.email, "a new passphrase").status_code == 200
    assert sign_in(client.base_url, ana.email, PASSWORD).status_code == 401
    # The two resets' sign-ins and the one just now; the sign-up's ended with the reset.
    assert live_sessions(app, ana.id) == 3


def _stale_hash(app: Flask, user_id: str) -> str:
    """Give the account a hash of its own password made before today's parameters (as after
    an upgrade of argon2's costs): the next sign-in makes it again."""
    stale = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with app.app_context():
        db.session.execute(
            update(User).where(User.id == uuid.UUID(user_id)).values(password_hash=stale)
        )
        db.session.commit()
    return stale


@contextmanager
def first_call_held(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str
) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The first call of `module.name` runs, then holds until told to go on; later calls run
    as always. Yields (reached, go) events."""
    reached, go = threading.Event(), threading.Event()
    original = getattr(module, name)

    def then_hold(*args: Any) -> Any:
        result = original(*args)
        if not reached.is_set():
            reached.set()
            assert go.wait(10), "the test never let the first call go on"
        return result

    monkeypatch.setattr(module, name, then_hold)
    try:
        yield reached, go
    finally:
        go.set()


def test_a_sign_in_is_not_refused_because_another_one_renewed_a_stale_hash(
    client: ApiClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sign-ins with the right password at once (a double tap, two phones) on an account
    whose hash is made again at sign-in: the one that committed first gave the account a new
    hash of the same password, and the other took that for a change of the password (401)."""
    ana = client.register("Ana")
    stale = _stale_hash(app, ana.id)
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        first_call_held(monkeypatch, sign_in_module, "check_password") as (checked, go),
    ):
        first = pool.submit(sign_in, client.base_url, ana.email, PASSWORD)
        assert checked.wait(10), "the first sign-in never checked the password"
        second = sign_in(client.base_url, ana.email, PASSWORD)
        go.set()
        late = first.result(timeout=10)
    assert second.status_code == 200, second.text
    assert late.status_code == 200, late.text
    with app.app_context():
        renewed = db.session.scalar(select(User.password_hash).where(User.id == uuid.UUID(ana.id)))
    assert renewed != stale
    assert live_sessions(app, ana.id) == 3  # sign-up, and both sign-ins


def test_a_change_is_not_refused_because_a_sign_in_renewed_a_stale_hash(
    client: ApiClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sign-in on another phone that makes a stale hash again while the owner changes the
    password did not change the password: the change goes through (it answered 409, 'the
    password was changed by another request', and told the app to ask for a new password)."""
    ana = client.register("Ana")
    _stale_hash(app, ana.id)
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        first_call_held(monkeypatch, password_change, "hash_password") as (hashed, go),
    ):
        changing = pool.submit(change, client.base_url, ana, PASSWORD, "a new passphrase")
        assert hashed.wait(10), "the change never hashed the new password"
        other_phone = sign_in(client.base_url, ana.email, PASSWORD)
        go.set()
        changed = changing.result(timeout=10)
    assert other_phone.status_code == 200, other_phone.text
    assert changed.status_code == 204, changed.text
    assert sign_in(client.base_url, ana.email, "a new passphrase").status_code == 200
    assert sign_in(client.base_url, ana.email, PASSWORD).status_code == 401
    assert live_sessions(app, ana.id) == 2  # the owner's, and the sign-in after the change


def another_phone(base_url: str, who: Person) -> Person:
    signed_in = sign_in(base_url, who.email, who.password)
    assert signed_in.status_code == 200, signed_in.text
    body = signed_in.json()
    return Person(
        who.email, who.password, body["user"], body["access_token"], body["refresh_token"]
    )


def sign_out_everywhere(base_url: str, who: Person) -> requests.Response:
    return ApiClient(base_url).delete("/api/v1/me/sessions", as_=who)


def other_sessions(app: Flask, user_id: str, keep: str) -> list[uuid.UUID]:
    """The account's sessions but `keep`, in the order a scan of the table meets them."""
    with app.app_context():
        found = db.session.execute(
            text(
                "SELECT id FROM auth_sessions WHERE user_id = :user AND id != :keep ORDER BY ctid"
            ),
            {"user": uuid.UUID(user_id), "keep": uuid.UUID(keep)},
        ).scalars()
        ids = [uuid.UUID(str(found_id)) for found_id in found]
        db.session.rollback()
    return ids


def session_of(app: Flask, access_token: str) -> str:
    issuer = app.extensions["reach.tokens"]
    return str(issuer.read_access_token(access_token, clock.now()).session_id)


def test_a_sign_out_of_every_phone_and_a_password_change_at_once_both_end(
    client: ApiClient, app: Flask
) -> None:
    """Another phone signs out of every phone while the owner changes the password. The
    sign-out took the sessions in the order the table holds them, the change in the order of
    their ids: each held one the other waited for, and one of them failed with 503 (a
    deadlock). Now the first to start ends them all, and the other waits for it: the change
    then finds its own session ended (401), as at any later call."""
    ana = client.register("Ana")
    ana_session = session_of(app, ana.access_token)
    phones = [another_phone(client.base_url, ana) for _ in range(2)]
    # Until the first session the table holds (after Ana's) is not the one of the lowest id.
    while True:
        others = other_sessions(app, ana.id, ana_session)
        if others[0] != min(others):
            break
        phones.append(another_phone(client.base_url, ana))
    # The sign-out waits at that first session; the change then takes the lowest one first.
    held = select(AuthSession.id).where(AuthSession.id == others[0]).with_for_update()
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, held),
    ):
        signing_out = pool.submit(sign_out_everywhere, client.base_url, phones[0])
        queued(1)
        changing = pool.submit(change, client.base_url, ana, PASSWORD, "a brand new passphrase")
        queued(2)
    signed_out = signing_out.result(timeout=20)
    changed = changing.result(timeout=20)
    assert signed_out.status_code == 204, signed_out.text
    assert changed.status_code == 401, changed.text
    assert live_sessions(app, ana.id) == 0
    assert sign_in(client.base_url, ana.email, PASSWORD).status_code == 200
    assert sign_in(client.base_url, ana.email, "a brand new passphrase").status_code == 401
