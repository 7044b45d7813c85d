"""A member changes the email of their account: a code mailed (to a local SMTP stand-in) to the
new address proves it is theirs, then the account signs in with it, and the old address is
told. Every phone stays signed in."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy import select

from service.clock import clock
from service.extensions import db
from service.models import EmailChange
from service.services.accounts import email_change, password_reset
from service.worker.runner import Worker
from tests.support.client import PASSWORD, ApiClient, Person
from tests.support.mailing import FROM, code_in
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.smtp_standin import SmtpStandIn
from tests.support.waiting import wait_until


def an_address(name: str = "new") -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.test"


def ask(
    mailing_api: ApiClient, who: Person, email: str, password: str = PASSWORD
) -> requests.Response:
    return mailing_api.post(
        "/api/v1/me/email", as_=who, json={"email": email, "password": password}
    )


def confirm(mailing_api: ApiClient, who: Person, code: str) -> requests.Response:
    return mailing_api.post("/api/v1/me/email/confirm", as_=who, json={"code": code})


def sign_in(mailing_api: ApiClient, email: str, password: str = PASSWORD) -> requests.Response:
    return mailing_api.post("/api/v1/auth/login", json={"email": email, "password": password})


def mailed_code(standin: SmtpStandIn, mailing_api: ApiClient, who: Person, email: str) -> str:
    """Ask to change `who`'s email to `email` and read the code from the mail that arrives."""
    before = len(standin.received())
    asked = ask(mailing_api, who, email)
    assert asked.status_code == 202, asked.text

    def arrived() -> list[EmailMessage]:
        return [m.message for m in standin.received()[before:] if m.rcpt_tos == (email,)]

    wait_until(lambda: arrived() != [], 5, f"the code's mail to {email}")
    [message] = arrived()
    assert message["To"] == email
    return code_in(message)


def changed(mailing_api: ApiClient, standin: SmtpStandIn, who: Person, code: str) -> dict[str, Any]:
    """Confirm `who`'s change with `code`; the account, once the old address's notice came."""
    before = len(standin.received())
    done = confirm(mailing_api, who, code)
    assert done.status_code == 200, done.text
    wait_until(
        lambda: any(m.rcpt_tos == (who.email,) for m in standin.received()[before:]),
        5,
        f"the notice to {who.email}",
    )
    return dict(done.json())


def refused(response: requests.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert list(response.json()["errors"]) == [field]


def wrong(response: requests.Response) -> None:
    refused(response, "code")


def email_of(mailing_api: ApiClient, who: Person) -> str:
    me = mailing_api.get("/api/v1/me", as_=who)
    assert me.status_code == 200, me.text
    return str(me.json()["email"])


def mails(kind: str) -> float:
    return REGISTRY.get_sample_value("reach_mails_total", {"kind": kind, "outcome": "sent"}) or 0.0


def test_a_code_mailed_to_the_new_address_changes_the_email_and_the_old_one_is_told(
    mailing_api: ApiClient, mailing: LiveServer, smtp_standin: SmtpStandIn, phones: list[Phone]
) -> None:
    ana = mailing_api.register("Ana")
    other = sign_in(mailing_api, ana.email).json()  # another phone of Ana's, signed in before
    tablet = Phone(mailing.url, other["access_token"]).connect()
    phones.append(tablet)
    new = an_address("ana")
    codes_before, notices_before = mails("email_change"), mails("email_changed")

    asked = ask(mailing_api, ana, f"  {new.upper()} ")
    assert asked.status_code == 202, asked.text
    assert asked.json() == {"email": new, "expires_in": 30 * 60}
    [mailed] = smtp_standin.wait_for(1)
    assert mailed.rcpt_tos == (new,)
    message = mailed.message
    assert message["To"] == new
    assert message["From"] == FROM
    assert message["Subject"] == "Confirm your new Reach email"
    code = code_in(message)
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}", code), code
    wait_until(lambda: mails("email_change") == codes_before + 1, 5, "the code's mail counted")
    # Until the code comes back, nothing changes.
    assert email_of(mailing_api, ana) == ana.email
    assert sign_in(mailing_api, new).status_code == 401

    # As a person types it: lower case, without its dash.
    done = confirm(mailing_api, ana, code.replace("-", "").lower())
    assert done.status_code == 200, done.text
    assert done.json()["id"] == ana.id
    assert done.json()["email"] == new
    assert done.json() == mailing_api.get("/api/v1/me", as_=ana).json()

    # The account signs in with the new address only; no phone was signed out.
    assert sign_in(mailing_api, new).status_code == 200
    assert sign_in(mailing_api, ana.email).status_code == 401
    assert (
        mailing_api.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {other['access_token']}"}
        ).json()["email"]
        == new
    )
    assert tablet.client.connected
    assert tablet.wait_for("me.updated", lambda me: me["email"] == new) == done.json()

    # The old address is told, with the new one masked, and given no code.
    [_, notice] = smtp_standin.wait_for(2)
    assert notice.rcpt_tos == (ana.email,)
    assert notice.message["Subject"] == "The email of your Reach account was changed"
    text = notice.message.get_content()
    assert f"{new[0]}***@example.test" in text
    assert new not in text
    assert "Your code" not in text and code not in text
    assert "change your password" in text and "contact Reach support" in text
    wait_until(lambda: mails("email_changed") == notices_before + 1, 5, "the notice counted")

    # The change is used: its code changes nothing more, and the export shows only the address.
    export = mailing_api.get("/api/v1/me/export", as_=ana)
    assert export.status_code == 200
    assert export.json()["profile"]["email"] == new


def test_a_wrong_password_is_refused_and_mails_nothing(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana = mailing_api.register("Ana")
    refused(ask(mailing_api, ana, an_address(), "not the password"), "password")
    new = an_address()
    mailed_code(smtp_standin, mailing_api, ana, new)
    assert [m.rcpt_tos for m in smtp_standin.received()] == [(new,)]


def test_the_accounts_own_address_is_refused(mailing_api: ApiClient) -> None:
    ana = mailing_api.register("Ana")
    refused(ask(mailing_api, ana, f" {ana.email.upper()}"), "email")
    # Checked before the password: nothing to guess with it.
    refused(ask(mailing_api, ana, ana.email, "not the password"), "email")


def test_an_address_too_long_once_lower_cased_is_refused(mailing_api: ApiClient) -> None:
    """ "İ" lower-cased is "i" and a combining dot: 213 characters as typed, 413 as stored."""
    ana = mailing_api.register("Ana")
    refused(ask(mailing_api, ana, "İ" * 200 + "@example.test"), "email")
    refused(ask(mailing_api, ana, "not an address"), "email")


def test_an_address_another_account_has_is_refused(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana, ben = mailing_api.register("Ana"), mailing_api.register("Ben")
    taken = ask(mailing_api, ana, ben.email.upper())
    assert taken.status_code == 409, taken.text
    assert taken.json()["code"] == "conflict"
    # Only with the right password: a stolen access token does not learn who has an account.
    refused(ask(mailing_api, ana, ben.email, "not the password"), "password")
    assert smtp_standin.received() == []


def test_an_address_another_account_took_meanwhile_is_refused_and_nothing_changes(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana = mailing_api.register("Ana")
    new = an_address()
    code = mailed_code(smtp_standin, mailing_api, ana, new)
    ben = mailing_api.register("Ben", email=new)
    taken = confirm(mailing_api, ana, code)
    assert taken.status_code == 409, taken.text
    assert taken.json()["code"] == "conflict"
    assert email_of(mailing_api, ana) == ana.email
    assert sign_in(mailing_api, ana.email).status_code == 200
    assert sign_in(mailing_api, new).json()["user"]["id"] == ben.id
    # Nobody was told of a change.
    assert [m.rcpt_tos for m in smtp_standin.received()] == [(new,)]


def test_a_wrong_code_is_refused(mailing_api: ApiClient, smtp_standin: SmtpStandIn) -> None:
    ana = mailing_api.register("Ana")
    wrong(confirm(mailing_api, ana, "AAAA-AAAA"))  # no change asked for
    code = mailed_code(smtp_standin, mailing_api, ana, an_address())
    wrong(confirm(mailing_api, ana, "ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "YYYY-YYYY"))
    assert email_of(mailing_api, ana) == ana.email
    changed(mailing_api, smtp_standin, ana, code)


def test_an_expired_code_is_refused(mailing_api: ApiClient, smtp_standin: SmtpStandIn) -> None:
    ana = mailing_api.register("Ana")
    clock.freeze(clock.now())
    code = mailed_code(smtp_standin, mailing_api, ana, an_address())
    clock.advance(email_change.CODE_TTL)
    ana = mailing_api.fresh(ana)
    wrong(confirm(mailing_api, ana, code))
    assert email_of(mailing_api, ana) == ana.email


def test_five_tries_then_the_code_is_spent_even_for_the_right_one(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana = mailing_api.register("Ana")
    code = mailed_code(smtp_standin, mailing_api, ana, an_address())
    guess = "ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "YYYY-YYYY"
    for _ in range(email_change.MOST_ATTEMPTS):
        wrong(confirm(mailing_api, ana, guess))
    wrong(confirm(mailing_api, ana, code))
    assert email_of(mailing_api, ana) == ana.email


def test_a_new_request_replaces_the_code_and_the_address(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana = mailing_api.register("Ana")
    first_address, second_address = an_address("first"), an_address("second")
    first = mailed_code(smtp_standin, mailing_api, ana, first_address)
    second = mailed_code(smtp_standin, mailing_api, ana, second_address)
    assert first != second
    wrong(confirm(mailing_api, ana, first))
    assert changed(mailing_api, smtp_standin, ana, second)["email"] == second_address
    assert sign_in(mailing_api, first_address).status_code == 401


def test_a_confirmation_sent_again_after_its_answer_was_lost_is_answered_again(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana = mailing_api.register("Ana")
    clock.freeze(clock.now())
    new = an_address()
    code = mailed_code(smtp_standin, mailing_api, ana, new)
    first = confirm(mailing_api, ana, code)
    assert first.status_code == 200, first.text
    again = confirm(mailing_api, ana, code)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()  # nothing changed: not even the profile's version
    # The old address was told once.
    smtp_standin.wait_for(2)
    with pytest.raises(AssertionError):
        smtp_standin.wait_for(3, timeout=1)
    # Not once the retry window has passed.
    clock.advance(email_change.RETRY_WINDOW + timedelta(seconds=1))
    ana = mailing_api.fresh(Person(new, PASSWORD, ana.user, ana.access_token, ana.refresh_token))
    wrong(confirm(mailing_api, ana, code))
    assert email_of(mailing_api, ana) == new


def test_change_requests_are_limited_per_account_right_or_wrong(
    server_with: Callable[..., LiveServer], smtp_standin: SmtpStandIn
) -> None:
    server = server_with(
        MAIL_BACKEND="smtp",
        SMTP_URL=smtp_standin.url,
        MAIL_FROM=FROM,
        RATELIMIT_EMAIL_CHANGE="2 per hour",
    )
    mailing_api = ApiClient(server.url)
    ana, ben = mailing_api.register("Ana"), mailing_api.register("Ben")
    refused(ask(mailing_api, ana, an_address(), "not the password"), "password")
    assert ask(mailing_api, ana, an_address()).status_code == 202
    limited = ask(mailing_api, ana, an_address())
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    assert ask(mailing_api, ben, an_address()).status_code == 202
    smtp_standin.wait_for(2)
    assert len(smtp_standin.received()) == 2


def test_another_accounts_code_never_works_for_this_one(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana, ben = mailing_api.register("Ana"), mailing_api.register("Ben")
    anas = mailed_code(smtp_standin, mailing_api, ana, an_address("ana"))
    bens_address = an_address("ben")
    bens = mailed_code(smtp_standin, mailing_api, ben, bens_address)
    if anas != bens:  # one chance in 32**8 that they are the same code
        wrong(confirm(mailing_api, ana, bens))
    assert email_of(mailing_api, ana) == ana.email
    # Ben's change is his alone, and his code still works for him.
    assert changed(mailing_api, smtp_standin, ben, bens)["email"] == bens_address
    assert email_of(mailing_api, ana) == ana.email


def test_nobody_else_confirms_a_members_change(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana, cara = mailing_api.register("Ana"), mailing_api.register("Cara")
    new = an_address()
    code = mailed_code(smtp_standin, mailing_api, ana, new)
    wrong(confirm(mailing_api, cara, code))
    assert email_of(mailing_api, cara) == cara.email
    assert email_of(mailing_api, ana) == ana.email
    unauthenticated = mailing_api.post("/api/v1/me/email/confirm", json={"code": code})
    assert unauthenticated.status_code == 401
    assert changed(mailing_api, smtp_standin, ana, code)["email"] == new


def test_a_password_reset_after_the_change_mails_the_new_address(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana = mailing_api.register("Ana")
    # A reset code mailed to the old address before the change stops working with it.
    asked = mailing_api.post("/api/v1/auth/password-reset", json={"email": ana.email})
    assert asked.status_code == 202
    old_reset = code_in(smtp_standin.wait_for(1)[0].message)
    new = an_address()
    code = mailed_code(smtp_standin, mailing_api, ana, new)
    assert confirm(mailing_api, ana, code).status_code == 200
    smtp_standin.wait_for(3)  # the code, the old address's notice

    body = {"email": new, "code": old_reset, "password": "a brand new passphrase"}
    wrong(mailing_api.post("/api/v1/auth/password-reset/confirm", json=body))
    assert (
        mailing_api.post("/api/v1/auth/password-reset", json={"email": ana.email}).status_code
        == 202
    )
    assert mailing_api.post("/api/v1/auth/password-reset", json={"email": new}).status_code == 202
    [reset] = smtp_standin.wait_for(4)[3:]
    assert reset.rcpt_tos == (new,)
    body = {"email": new, "code": code_in(reset.message), "password": "a brand new passphrase"}
    assert mailing_api.post("/api/v1/auth/password-reset/confirm", json=body).status_code == 200
    assert sign_in(mailing_api, new, "a brand new passphrase").status_code == 200
    # The old address asked for no mail.
    assert [m.rcpt_tos for m in smtp_standin.received()].count((ana.email,)) == 2


def test_deleting_the_account_deletes_its_pending_change(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn, app: Flask
) -> None:
    ana, ben = mailing_api.register("Ana"), mailing_api.register("Ben")
    mailed_code(smtp_standin, mailing_api, ana, an_address())
    mailed_code(smtp_standin, mailing_api, ben, an_address())
    assert mailing_api.delete("/api/v1/me", as_=ana).status_code == 204
    with app.app_context():
        left = db.session.scalars(select(EmailChange.user_id)).all()
    assert [str(user_id) for user_id in left] == [ben.id]


def test_the_export_holds_nothing_of_a_pending_change(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn, app: Flask
) -> None:
    ana = mailing_api.register("Ana")
    new = an_address()
    code = mailed_code(smtp_standin, mailing_api, ana, new)
    with app.app_context():
        stored = db.session.get(EmailChange, uuid.UUID(ana.id))
        assert stored is not None
        code_hash = stored.code_hash
        db.session.rollback()
    assert code_hash != code and code not in code_hash
    export = mailing_api.get("/api/v1/me/export", as_=ana)
    assert export.status_code == 200
    assert code_hash not in export.text and code not in export.text
    assert export.json()["profile"]["email"] == ana.email


def test_the_worker_deletes_expired_changes(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn, worker: Worker, app: Flask
) -> None:
    ana, ben, cara = (
        mailing_api.register("Ana"),
        mailing_api.register("Ben"),
        mailing_api.register("Cara"),
    )
    clock.freeze(clock.now())
    mailed_code(smtp_standin, mailing_api, ana, an_address())
    cara_code = mailed_code(smtp_standin, mailing_api, cara, an_address())
    changed(mailing_api, smtp_standin, cara, cara_code)  # kept for its retry, 5 minutes
    clock.advance(timedelta(minutes=10))
    ben = mailing_api.fresh(ben)
    mailed_code(smtp_standin, mailing_api, ben, an_address())
    clock.advance(email_change.CODE_TTL - timedelta(minutes=5))  # Ana's is over, Ben's not
    worker.prune()
    with app.app_context():
        left = db.session.scalars(select(EmailChange.user_id)).all()
    assert [str(user_id) for user_id in left] == [ben.id]


def test_what_is_stored_of_a_code_is_its_hmac_under_the_secret_key_for_this_purpose(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn, app: Flask
) -> None:
    """A reader of the database alone cannot try guesses at a code offline; and the same code
    is stored otherwise as a password-reset code."""
    ana = mailing_api.register("Ana")
    code = mailed_code(smtp_standin, mailing_api, ana, an_address())
    issuer = app.extensions["reach.tokens"]
    with app.app_context():
        stored = db.session.scalar(select(EmailChange.code_hash))
        db.session.rollback()
    assert stored == email_change.code_hash(issuer, code)
    assert stored == issuer.keyed_hash("email-change", code.replace("-", ""))
    assert stored != password_reset.code_hash(issuer, code)
