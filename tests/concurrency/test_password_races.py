"""Real concurrency on PostgreSQL: a password change races another change of the same
password."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select

from service.extensions import db
from service.models import AuthSession, User
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
