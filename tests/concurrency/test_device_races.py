"""Real concurrency on PostgreSQL: an app registers its new push token twice at once, or as
its session signs out, or as another account takes it over."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import insert, select, update

from service.clock import clock
from service.extensions import db
from service.models import AuthSession, Device
from tests.support.client import ApiClient
from tests.support.locks import first_statement_held, lock_queue
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def test_a_token_registered_twice_at_once_is_one_device(client: ApiClient, app: Flask) -> None:
    """The app's start and its token callback both POST the token the phone just got. The
    first registration's insert is not committed when the second looks for the token, so the
    second inserts too and waits on the token's unique index: it updates the first's row."""
    ana = client.register("Ana")
    token = f"first-launch-{uuid.uuid4().hex}"
    body = {"platform": "android", "push_token": token, "app_version": "2.0.0"}
    with app.app_context():
        first = db.engine.connect()
    try:
        first.begin()
        first.execute(
            insert(Device).values(
                id=uuid.uuid4(), user_id=uuid.UUID(ana.id), platform="android", push_token=token
            )
        )
        with ThreadPoolExecutor(max_workers=1) as pool, lock_queue(app) as queued:
            second = pool.submit(
                ApiClient(client.base_url).post, "/api/v1/devices", as_=ana, json=body
            )
            queued(1)
            first.commit()
            answer = second.result(timeout=10)
    finally:
        first.close()
    assert answer.status_code == 201, answer.text
    assert answer.json()["app_version"] == "2.0.0"
    devices = client.get("/api/v1/devices", as_=ana).json()
    assert [(d["id"], d["app_version"]) for d in devices["items"]] == [
        (answer.json()["id"], "2.0.0")
    ]


def test_a_registration_racing_its_sessions_sign_out_leaves_no_phone_getting_pushes(
    client: ApiClient, app: Flask
) -> None:
    """The app registers its token at start just as the user signs out on it. The sign-out
    commits first (it holds the session while the registration waits): the registration is
    refused, and the device stays off, instead of being turned on again for a session that
    has ended."""
    ana = client.register("Ana")
    body = {"platform": "android", "push_token": f"signing-out-{uuid.uuid4().hex}"}
    assert client.post("/api/v1/devices", as_=ana, json=body).status_code == 201
    with app.app_context():
        signing_out = db.engine.connect()
    try:
        # What POST /auth/logout writes, not committed yet.
        session_id = signing_out.execute(
            update(AuthSession)
            .where(AuthSession.user_id == uuid.UUID(ana.id))
            .values(revoked_at=clock.now(), revoked_reason="logout")
            .returning(AuthSession.id)
        ).scalar_one()
        signing_out.execute(
            update(Device)
            .where(Device.session_id == session_id)
            .values(active=False, disabled_reason="signed_out")
        )
        with ThreadPoolExecutor(max_workers=1) as pool, lock_queue(app) as queued:
            registering = pool.submit(
                ApiClient(client.base_url).post, "/api/v1/devices", as_=ana, json=body
            )
            queued(1)
            signing_out.commit()
            answer = registering.result(timeout=10)
    finally:
        signing_out.close()
    assert answer.status_code == 401, answer.text
    with app.app_context():
        device = db.session.scalars(select(Device).where(Device.push_token == body["push_token"]))
        assert [(d.active, d.disabled_reason) for d in device] == [(False, "signed_out")]


def test_a_new_token_registered_as_the_account_is_deleted_is_no_deadlock(
    client: ApiClient, app: Flask
) -> None:
    """The app registers a new token at start just as the user deletes the account on it. The
    registration holds its session when the deletion begins, and is held there until the
    deletion waits for a lock: both finish (the deletion takes the device with the account),
    and neither is a deadlock answered 503 "briefly unavailable"."""
    ana = client.register("Ana")
    body = {"platform": "ios", "push_token": f"deleting-{uuid.uuid4().hex}"}

    def the_registration_holds_its_session(statement: str) -> bool:
        return "FROM auth_sessions" in statement and "FOR SHARE" in statement

    with (
        first_statement_held(app, the_registration_holds_its_session) as session_held,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        registering = pool.submit(
            ApiClient(client.base_url).post, "/api/v1/devices", as_=ana, json=body
        )
        wait_until(session_held.is_set, what="the registration to hold its session")
        deleting = pool.submit(ApiClient(client.base_url).delete, "/api/v1/me", as_=ana)
        deleted, registered = deleting.result(timeout=20), registering.result(timeout=20)
    assert deleted.status_code == 204, deleted.text
    assert registered.status_code in (201, 401), registered.text
    assert client.get("/api/v1/me", as_=ana).status_code == 401
    with app.app_context():
        assert (
            db.session.scalars(select(Device).where(Device.push_token == body["push_token"])).all()
            == []
        )


def test_a_device_removed_as_it_moves_to_another_account_stays_with_that_account(
    client: ApiClient, app: Flask
) -> None:
    """Ana removes the family tablet from her devices just as Ben, signed in on it, registers
    its token, which moves the device to him. His registration commits first (it holds the
    device while her DELETE waits): the device is his now, so her DELETE is a 404 and his
    tablet keeps its pushes, instead of her removing the device he has just registered."""
    ana, ben = client.register("Ana"), client.register("Ben")
    body = {"platform": "android", "push_token": f"family-tablet-{uuid.uuid4().hex}"}
    registered = client.post("/api/v1/devices", as_=ana, json=body)
    assert registered.status_code == 201, registered.text
    device_id = uuid.UUID(registered.json()["id"])
    with app.app_context():
        moving = db.engine.connect()
    try:
        # What Ben's POST /devices writes to the device, not committed yet.
        bens_session = moving.execute(
            select(AuthSession.id).where(AuthSession.user_id == uuid.UUID(ben.id))
        ).scalar_one()
        moving.execute(
            update(Device)
            .where(Device.id == device_id)
            .values(user_id=uuid.UUID(ben.id), session_id=bens_session, updated_at=clock.now())
        )
        with ThreadPoolExecutor(max_workers=1) as pool, lock_queue(app) as queued:
            removing = pool.submit(
                ApiClient(client.base_url).delete, f"/api/v1/devices/{device_id}", as_=ana
            )
            queued(1)
            moving.commit()
            answer = removing.result(timeout=10)
    finally:
        moving.close()
    assert answer.status_code == 404, answer.text
    listed = client.get("/api/v1/devices", as_=ben).json()["items"]
    assert [(d["id"], d["active"]) for d in listed] == [(str(device_id), True)]
