"""Real concurrency on PostgreSQL: a phone's retry of a refresh races the refresh it retries,
or the use of the token that refresh issued."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from service.extensions import db
from service.models import AuthSession, RefreshToken
from service.security.tokens import hash_refresh_token
from tests.support.client import ApiClient
from tests.support.locks import lock_queue, rows_held

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def refresh(base_url: str, token: str) -> requests.Response:
    return ApiClient(base_url).post("/api/v1/auth/refresh", json={"refresh_token": token})


def unused_tokens(app: Flask, user_id: str) -> set[str]:
    """The hashes of the account's refresh tokens that still work."""
    with app.app_context():
        return set(
            db.session.scalars(
                select(RefreshToken.token_hash)
                .join(AuthSession, AuthSession.id == RefreshToken.session_id)
                .where(
                    AuthSession.user_id == uuid.UUID(user_id),
                    AuthSession.revoked_at.is_(None),
                    RefreshToken.used_at.is_(None),
                )
            )
        )


def revoked_reasons(app: Flask, user_id: str) -> list[str | None]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(AuthSession.revoked_reason).where(AuthSession.user_id == uuid.UUID(user_id))
            )
        )


def test_a_retry_racing_the_refresh_it_retries_leaves_one_live_token(
    client: ApiClient, app: Flask
) -> None:
    """The phone gave up waiting and sent the same token again while the first refresh was
    still running. Both wait for the token's row; the second, finding it rotated a moment ago
    and its successor unused, answers with a pair of its own and sets that successor aside."""
    ana = client.register("Ana")
    token_row = (
        select(RefreshToken)
        .where(RefreshToken.token_hash == hash_refresh_token(ana.refresh_token))
        .with_for_update()
    )
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, token_row),
    ):
        original = pool.submit(refresh, client.base_url, ana.refresh_token)
        queued(1)
        retry = pool.submit(refresh, client.base_url, ana.refresh_token)
        queued(2)
    first, second = original.result(timeout=10), retry.result(timeout=10)
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    kept = second.json()["refresh_token"]
    assert unused_tokens(app, ana.id) == {hash_refresh_token(kept)}
    assert refresh(client.base_url, kept).status_code == 200
    stale = refresh(client.base_url, first.json()["refresh_token"])
    assert stale.status_code == 401, stale.text
    assert revoked_reasons(app, ana.id) == ["refresh_token_reuse"]


def test_a_retry_racing_the_use_of_the_token_it_would_replace_ends_the_session(
    client: ApiClient, app: Flask
) -> None:
    """The old token and its successor are shown at once: two holders, a copy. The retry holds
    the session when it looks at the successor, which the successor's own refresh has locked
    and waits behind the session with: the retry takes it as used (revoking the session)
    rather than wait for it, which would wait for the retry in turn."""
    ana = client.register("Ana")
    rotated = refresh(client.base_url, ana.refresh_token)
    assert rotated.status_code == 200
    session_row = (
        select(AuthSession).where(AuthSession.user_id == uuid.UUID(ana.id)).with_for_update()
    )
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, session_row),
    ):
        retry = pool.submit(refresh, client.base_url, ana.refresh_token)
        queued(1)
        successor = pool.submit(refresh, client.base_url, rotated.json()["refresh_token"])
        queued(2)
    retried, used = retry.result(timeout=10), successor.result(timeout=10)
    assert retried.status_code == 401, retried.text
    assert "already used" in retried.json()["detail"]
    assert used.status_code == 401, used.text
    assert revoked_reasons(app, ana.id) == ["refresh_token_reuse"]
    assert unused_tokens(app, ana.id) == set()
