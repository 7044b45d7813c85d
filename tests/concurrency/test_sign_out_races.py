"""Real concurrency on PostgreSQL: two sign-outs of one account's phones at once (signing out
of every phone, a password change) each end the sessions; neither fails."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select, text

from service.clock import clock
from service.extensions import db
from service.models import AuthSession
from tests.support.client import PASSWORD, ApiClient, Person
from tests.support.locks import lock_queue, rows_held

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

NEW = "a brand new passphrase"


def sign_in(base_url: str, email: str, password: str) -> requests.Response:
    body = {"email": email, "password": password}
    return ApiClient(base_url).post("/api/v1/auth/login", json=body)


def another_phone(base_url: str, who: Person) -> Person:
    signed_in = sign_in(base_url, who.email, who.password)
    assert signed_in.status_code == 200, signed_in.text
    body = signed_in.json()
    return Person(
        who.email, who.password, body["user"], body["access_token"], body["refresh_token"]
    )


def change(base_url: str, who: Person, current: str, new: str) -> requests.Response:
    body = {"current_password": current, "new_password": new}
    return ApiClient(base_url).post("/api/v1/me/password", as_=who, json=body)


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
        changing = pool.submit(change, client.base_url, ana, PASSWORD, NEW)
        queued(2)
    signed_out = signing_out.result(timeout=20)
    changed = changing.result(timeout=20)
    assert signed_out.status_code == 204, signed_out.text
    assert changed.status_code == 401, changed.text
    assert live_sessions(app, ana.id) == 0
    assert sign_in(client.base_url, ana.email, PASSWORD).status_code == 200
    assert sign_in(client.base_url, ana.email, NEW).status_code == 401
