"""Real concurrency on PostgreSQL: a change of email confirmed twice at once (a double tap), or
at the moment another account signs up with the same address: exactly one gets the address."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy import select

from service.api.auth import token_issuer
from service.extensions import db
from service.models import User
from service.services import members
from service.services.accounts import email_change
from service.services.accounts import sign_in as sign_in_module
from tests.support.client import PASSWORD, ApiClient, Person
from tests.support.locks import first_statement_held, lock_queue, rows_held

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

OTHER_PASSWORD = "another person's passphrase"


def ask_for_change(app: Flask, who: Person, email: str) -> str:
    """A change of `who`'s email to `email` waiting for its code; the code (as mailed)."""
    with app.app_context():
        member = members.authenticate(db.session, token_issuer(), who.access_token)
        mailed = email_change.request_email_change(
            db.session, token_issuer(), member, email=email, password=PASSWORD
        )
    return mailed.code


def confirm(base_url: str, who: Person, code: str) -> requests.Response:
    return ApiClient(base_url).post("/api/v1/me/email/confirm", as_=who, json={"code": code})


def sign_up(base_url: str, email: str) -> requests.Response:
    body = {"email": email, "password": OTHER_PASSWORD, "display_name": "Eve", "timezone": "UTC"}
    return ApiClient(base_url).post("/api/v1/auth/register", json=body)


def email_of(app: Flask, user_id: str) -> str | None:
    with app.app_context():
        email = db.session.scalar(select(User.email).where(User.id == uuid.UUID(user_id)))
        db.session.rollback()
    return email


def holder_of(app: Flask, email: str) -> str | None:
    with app.app_context():
        holder = db.session.scalar(select(User.id).where(User.email == email))
        db.session.rollback()
    return None if holder is None else str(holder)


def notices() -> float:
    labels = {"kind": "email_changed", "outcome": "logged"}
    return REGISTRY.get_sample_value("reach_mails_total", labels) or 0.0


def an_address() -> str:
    return f"race-{uuid.uuid4().hex[:10]}@example.test"


def test_the_same_confirmation_sent_twice_at_once_changes_the_email_once(
    client: ApiClient, app: Flask
) -> None:
    """A double tap of "confirm": both sends took an attempt of the code before either made
    the change. The second finds the change made by the first and is answered as its retry:
    the same account, and the old address told once."""
    ana = client.register("Ana")
    new = an_address()
    code = ask_for_change(app, ana, new)
    told = notices()
    user_row = select(User).where(User.id == uuid.UUID(ana.id)).with_for_update()
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, user_row),
    ):
        first = pool.submit(confirm, client.base_url, ana, code)
        queued(1)
        second = pool.submit(confirm, client.base_url, ana, code)
        queued(2)
    answers = [first.result(timeout=10), second.result(timeout=10)]
    assert [answer.status_code for answer in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["email"] == new
    assert email_of(app, ana.id) == new
    assert notices() == told + 1


@contextmanager
def first_sign_up_held(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The first sign-up's account is written (not committed) and held there until told to
    go on: its address is in the unique index, unseen by other transactions. Yields (written,
    go) events."""
    written, go = threading.Event(), threading.Event()
    original = sign_in_module.start_session

    def start_then_hold(*args: Any) -> Any:
        started = original(*args)
        if not written.is_set():
            written.set()
            assert go.wait(10), "the test never let the sign-up go on"
        return started

    monkeypatch.setattr(sign_in_module, "start_session", start_then_hold)
    try:
        yield written, go
    finally:
        go.set()


def test_a_sign_up_under_way_with_the_address_wins_over_a_confirmation(
    client: ApiClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sign-up wrote its account before the confirmation looked for one with the address
    (and found none: not committed yet). The confirmation's write waits for the sign-up on the
    unique index, and fails once it commits: 409, the account keeps its address."""
    ana = client.register("Ana")
    new = an_address()
    code = ask_for_change(app, ana, new)
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        first_sign_up_held(monkeypatch) as (written, go),
    ):
        signing_up = pool.submit(sign_up, client.base_url, new)
        assert written.wait(10), "the sign-up never wrote its account"
        confirming = pool.submit(confirm, client.base_url, ana, code)
        queued(1)
        go.set()
        signed_up = signing_up.result(timeout=10)
        confirmed = confirming.result(timeout=10)
    assert signed_up.status_code == 201, signed_up.text
    assert confirmed.status_code == 409, confirmed.text
    assert confirmed.json()["code"] == "conflict"
    assert email_of(app, ana.id) == ana.email
    assert holder_of(app, new) == signed_up.json()["user"]["id"]


def test_a_confirmation_under_way_wins_over_a_sign_up_with_the_address(
    client: ApiClient, app: Flask
) -> None:
    """The confirmation wrote the new address before the sign-up looked for an account with
    it: the sign-up's account waits on the unique index, and fails once the change commits
    (409, as any sign-up of a taken address)."""
    ana = client.register("Ana")
    new = an_address()
    code = ask_for_change(app, ana, new)

    def writes_the_address(sql: str) -> bool:
        return sql.startswith("UPDATE users SET email")

    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        first_statement_held(app, writes_the_address) as held,
    ):
        confirming = pool.submit(confirm, client.base_url, ana, code)
        assert held.wait(10), "the confirmation never wrote the address"
        signing_up = pool.submit(sign_up, client.base_url, new)
        confirmed = confirming.result(timeout=10)
        signed_up = signing_up.result(timeout=10)
    assert confirmed.status_code == 200, confirmed.text
    assert signed_up.status_code == 409, signed_up.text
    assert email_of(app, ana.id) == new
    assert holder_of(app, new) == ana.id
