"""Expired sign-ins are deleted by the worker: refresh tokens past their expiry (each refresh
stores one), and the sessions left with none, whose phones then get no more pushes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import func, select

from service.clock import clock
from service.extensions import db
from service.models import AuthSession, RefreshToken
from service.worker.runner import Worker
from tests.support.client import ApiClient, Person

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
