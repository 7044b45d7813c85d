"""Real concurrency on PostgreSQL: an operator's support action as the member's phone moves.

Ending sign-in sessions takes each session, then its devices (a sign-out, a refresh token's
reuse, the worker pruning expired sign-ins): disabling an account must take them in that order
too, or each waits for the other until PostgreSQL aborts one (503 "deadlock detected").
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import select

from service.extensions import db
from service.models import AuthSession, Device
from tests.dashboard.conftest import OpsClient
from tests.dashboard.helpers import add_device
from tests.support.client import ApiClient
from tests.support.locks import first_statement_held
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def test_disabling_an_account_as_its_phone_signs_out_does_not_deadlock(
    client: ApiClient, app: Flask, signed_in: OpsClient
) -> None:
    """Ana's phone signs out as an operator disables her account. The sign-out has ended its
    session and is about to switch its device off when the operator's action begins."""
    ana = client.register("Ana")
    add_device(client, ana, "ana-phone-token")
    page = f"/ops/support/users/{ana.id}"
    form = {"csrf_token": signed_in.csrf(page)}
    api = ApiClient(client.base_url)
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        first_statement_held(app, lambda sql: sql.startswith("UPDATE auth_sessions")) as held,
    ):
        body = {"refresh_token": ana.refresh_token}
        signing_out = pool.submit(api.post, "/api/v1/auth/logout", json=body)
        wait_until(held.is_set, what="the sign-out to end its session")
        disabling = pool.submit(signed_in.post, f"{page}/disable", data=form)
        signed_out, disabled = signing_out.result(timeout=20), disabling.result(timeout=20)
    assert signed_out.status_code == 204, signed_out.text
    assert disabled.status_code == 302, disabled.text
    assert "The account is disabled" in signed_in.get(page).text
    with app.app_context():
        ended = db.session.execute(select(AuthSession.revoked_reason)).scalars().all()
        devices = db.session.execute(select(Device.active, Device.disabled_reason)).all()
    assert ended == ["logout"]
    assert [tuple(device) for device in devices] == [(False, "signed_out")]


def test_a_sign_in_as_the_account_is_disabled_is_refused(
    client: ApiClient, app: Flask, signed_in: OpsClient
) -> None:
    """Ana signs in on a new phone as an operator disables her account: the sign-in has read her
    account (not disabled yet) and checked her password when the disable, which holds her
    account, commits. The sign-in must be refused, not leave a session the disable missed (which
    would work again the moment the account is enabled: its old sessions are to stay ended)."""
    ana = client.register("Ana")
    page = f"/ops/support/users/{ana.id}"
    form = {"csrf_token": signed_in.csrf(page)}
    api = ApiClient(client.base_url)
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        first_statement_held(
            app, lambda sql: "FROM users" in sql and sql.rstrip().endswith("FOR UPDATE")
        ) as account_held,
    ):
        disabling = pool.submit(signed_in.post, f"{page}/disable", data=form)
        wait_until(account_held.is_set, what="the disable to hold the account")
        body = {"email": ana.email, "password": ana.password}
        signing_in = pool.submit(api.post, "/api/v1/auth/login", json=body)
        disabled, signed_in_again = disabling.result(timeout=20), signing_in.result(timeout=20)
    assert disabled.status_code == 302, disabled.text
    assert signed_in_again.status_code == 401, signed_in_again.text
    assert signed_in_again.json()["code"] == "unauthorized"
    enabled = signed_in.post(f"{page}/enable", data={"csrf_token": signed_in.csrf(page)})
    assert enabled.status_code == 302
    with app.app_context():
        live = select(AuthSession.id).where(AuthSession.revoked_at.is_(None))
        assert db.session.execute(live).all() == []
