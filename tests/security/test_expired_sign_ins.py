"""Expired sign-ins are deleted by the worker: refresh tokens past their expiry (each refresh
stores one), and the sessions left with none, whose phones then get no more pushes."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select, text

from service.clock import clock
from service.extensions import db
from service.models import AuthSession, Device, RefreshToken
from service.worker.runner import Worker
from tests.support.client import ApiClient, Person
from tests.support.locks import rows_held

T0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)


def rows(app: Flask) -> tuple[int, int]:
    with app.app_context():
        tokens = db.session.scalar(select(func.count()).select_from(RefreshToken))
        sessions = db.session.scalar(select(func.count()).select_from(AuthSession))
        db.session.rollback()
    return int(tokens or 0), int(sessions or 0)


def register_phone(client: ApiClient, who: Person, token: str) -> None:
    body = {"platform": "ios", "push_token": token}
    assert client.post("/api/v1/devices", as_=who, json=body).status_code == 201


def test_expired_sign_ins_go_and_their_phones_stop_getting_pushes(
    app: Flask, client: ApiClient, worker: Worker
) -> None:
    clock.freeze(T0)
    ana = client.register("Ana")
    register_phone(client, ana, "ana-old-phone-token")
    for _ in range(3):  # three refreshes: three used tokens kept, each until it expires
        rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
        ana.refresh_token = rotated.json()["refresh_token"]
        ana.access_token = rotated.json()["access_token"]
    clock.freeze(T0 + timedelta(days=20))
    other = client.register("Cat")
    # A second session of Ana's, signed in 20 days later.
    login = client.post("/api/v1/auth/login", json={"email": ana.email, "password": ana.password})
    tokens = login.json()
    newer = Person(
        ana.email, ana.password, ana.user, tokens["access_token"], tokens["refresh_token"]
    )
    register_phone(client, newer, "ana-new-phone-token")
    assert rows(app) == (6, 3)

    clock.freeze(T0 + timedelta(days=29))
    assert worker.prune() == 0
    assert rows(app) == (6, 3)  # nothing has expired yet

    clock.freeze(T0 + timedelta(days=31))
    worker.prune()
    # The first session's four tokens went with it; the two later sign-ins stay.
    assert rows(app) == (2, 2)
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": newer.refresh_token})
    assert refreshed.status_code == 200
    newer.access_token = refreshed.json()["access_token"]
    listed = client.get("/api/v1/devices", as_=newer).json()["items"]
    states = {(d["active"], d["disabled_reason"]) for d in listed}
    assert states == {(False, "signed_out"), (True, None)}
    gone = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert gone.status_code == 401
    still = client.post("/api/v1/auth/refresh", json={"refresh_token": other.refresh_token})
    assert still.status_code == 200


def phones(app: Flask) -> set[tuple[bool, str | None]]:
    with app.app_context():
        states = db.session.execute(select(Device.active, Device.disabled_reason)).all()
        db.session.rollback()
    return {(active, reason) for active, reason in states}


@pytest.mark.postgres
@pytest.mark.committed
def test_an_expired_sign_in_held_by_a_transaction_left_open_is_passed_over_not_waited_for(
    app: Flask, client: ApiClient
) -> None:
    """Ben's expired sign-in is locked by a transaction left open (a `psql` session, a stuck
    request): the prune waited for it until the statement timeout and failed, every try. The
    others go at once, a token per transaction; his, with its token and his phone's pushes,
    once it is free."""
    clock.freeze(T0)
    ben = client.register("Ben")
    register_phone(client, ben, "ben-phone-token")
    for name in ("Ana", "Cat", "Dan"):
        client.register(name)
    clock.freeze(T0 + timedelta(days=31))
    assert rows(app) == (4, 4)
    small = Worker(app, name="small-shares", prune_batch=1, prune_batches=1)
    held = text("SELECT id FROM auth_sessions WHERE user_id = :user FOR UPDATE")
    with rows_held(app, held.bindparams(user=uuid.UUID(ben.id))):
        started = time.monotonic()
        small.prune()
        assert time.monotonic() - started < 1.0
        assert rows(app) == (1, 1)
        assert phones(app) == {(True, None)}
    small.prune()
    assert rows(app) == (0, 0)
    assert phones(app) == {(False, "signed_out")}


@pytest.mark.postgres
@pytest.mark.committed
def test_an_expired_sign_in_whose_phone_is_held_is_passed_over_not_waited_for(
    app: Flask, client: ApiClient
) -> None:
    """Ben's phone, of an expired sign-in, is locked by a transaction left open (a `psql`
    session, a stuck request): switching it off waited for it until the statement timeout, and
    the prune failed, every try, ending none. The other sign-ins end at once; his, with his
    phone's pushes, once it is free."""
    clock.freeze(T0)
    ben = client.register("Ben")
    register_phone(client, ben, "ben-phone-token")
    for name in ("Ana", "Cat", "Dan"):
        client.register(name)
    clock.freeze(T0 + timedelta(days=31))
    assert rows(app) == (4, 4)
    small = Worker(app, name="small-shares", prune_batch=1, prune_batches=1)
    held = text("SELECT id FROM devices WHERE push_token = 'ben-phone-token' FOR UPDATE")
    with rows_held(app, held):
        started = time.monotonic()
        small.prune()
        assert time.monotonic() - started < 1.0
        assert rows(app) == (1, 1)
        assert phones(app) == {(True, None)}
    small.prune()
    assert rows(app) == (0, 0)
    assert phones(app) == {(False, "signed_out")}
