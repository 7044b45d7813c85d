"""A member who forgot their password asks for a code by mail (to a local SMTP stand-in) and
sets a new password with it: this phone signs in, every other one is signed out."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import timedelta

import requests
from flask import Flask
from sqlalchemy import select

from service.clock import clock
from service.extensions import db
from service.models import PasswordReset
from service.services.accounts import password_reset
from service.worker.runner import Worker
from tests.support.client import PASSWORD, ApiClient, Person
from tests.support.mailing import FROM, code_in
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.smtp_standin import SmtpStandIn
from tests.support.waiting import wait_until

NEW = "a brand new passphrase"


def ask(mailing_api: ApiClient, email: str) -> requests.Response:
    return mailing_api.post("/api/v1/auth/password-reset", json={"email": email})


def reset(mailing_api: ApiClient, email: str, code: str, password: str = NEW) -> requests.Response:
    body = {"email": email, "code": code, "password": password}
    return mailing_api.post("/api/v1/auth/password-reset/confirm", json=body)


def sign_in(mailing_api: ApiClient, email: str, password: str) -> requests.Response:
    return mailing_api.post("/api/v1/auth/login", json={"email": email, "password": password})


def mailed_code(standin: SmtpStandIn, mailing_api: ApiClient, who: Person) -> str:
    """Ask for a code for `who` and read it from the mail that arrives."""
    before = len(standin.received())
    asked = ask(mailing_api, who.email)
    assert asked.status_code == 202, asked.text
    message = standin.wait_for(before + 1)[before].message
    assert message["To"] == who.email
    return code_in(message)


def wrong(response: requests.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert list(response.json()["errors"]) == ["code"]


def test_a_mailed_code_sets_a_new_password_and_signs_every_other_phone_out(
    mailing_api: ApiClient, mailing: LiveServer, smtp_standin: SmtpStandIn, phones: list[Phone]
) -> None:
    ana = mailing_api.register("Ana")
    other = sign_in(mailing_api, ana.email, PASSWORD).json()
    socket = Phone(mailing.url, other["access_token"]).connect()
    phones.append(socket)

    asked = ask(mailing_api, f"  {ana.email.upper()} ")
    assert asked.status_code == 202, asked.text
    assert asked.json() == {"expires_in": 30 * 60}
    [mailed] = smtp_standin.wait_for(1)
    assert mailed.rcpt_tos == (ana.email,)
    message = mailed.message
    assert message["To"] == ana.email
    assert message["From"] == FROM
    assert message["Subject"] == "Reset your Reach password"
    code = code_in(message)
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}", code), code

    # As a person types it: lower case, without its dash.
    done = reset(mailing_api, ana.email, code.replace("-", "").lower())
    assert done.status_code == 200, done.text
    signed_in = done.json()
    assert signed_in["user"]["id"] == ana.id
    assert mailing_api.get("/api/v1/me", headers=_bearer(signed_in)).status_code == 200

    # Every phone signed in before is signed out: its socket closes, its tokens stop.
    wait_until(lambda: not socket.client.connected, timeout=5, what="the other socket to close")
    for before in (
        ana,
        Person(ana.email, PASSWORD, ana.user, other["access_token"], other["refresh_token"]),
    ):
        assert mailing_api.get("/api/v1/me", as_=before).status_code == 401
        refreshed = mailing_api.post(
            "/api/v1/auth/refresh", json={"refresh_token": before.refresh_token}
        )
        assert refreshed.status_code == 401
    assert sign_in(mailing_api, ana.email, PASSWORD).status_code == 401
    assert sign_in(mailing_api, ana.email, NEW).status_code == 200

    export = mailing_api.get("/api/v1/me/export", headers=_bearer(signed_in)).json()
    endings = sorted(s["ended_because"] or "" for s in export["sessions"])
    assert endings == ["", "", "password_reset", "password_reset"]

    # The code worked once: another password with it is refused.
    wrong(reset(mailing_api, ana.email, code, "yet another passphrase"))


def _bearer(signed_in: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {signed_in['access_token']}"}


def test_an_address_without_an_account_gets_the_same_answer_and_no_mail(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana = mailing_api.register("Ana")
    nobody = ask(mailing_api, "nobody-here@example.com")
    assert nobody.status_code == 202, nobody.text
    asked = ask(mailing_api, ana.email)
    assert asked.json() == nobody.json()
    # The mail to Ana was handed over after the unknown address's request was answered.
    smtp_standin.wait_for(1)
    assert [m.rcpt_tos for m in smtp_standin.received()] == [(ana.email,)]
    wrong(reset(mailing_api, "nobody-here@example.com", "AAAA-AAAA"))


def test_only_the_code_mailed_last_works(mailing_api: ApiClient, smtp_standin: SmtpStandIn) -> None:
    ana = mailing_api.register("Ana")
    first = mailed_code(smtp_standin, mailing_api, ana)
    second = mailed_code(smtp_standin, mailing_api, ana)
    assert first != second
    wrong(reset(mailing_api, ana.email, first))
    assert reset(mailing_api, ana.email, second).status_code == 200


def test_five_tries_then_the_code_is_spent_even_for_the_right_one(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana = mailing_api.register("Ana")
    code = mailed_code(smtp_standin, mailing_api, ana)
    guess = "ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "YYYY-YYYY"
    for _ in range(password_reset.MOST_ATTEMPTS):
        wrong(reset(mailing_api, ana.email, guess))
    wrong(reset(mailing_api, ana.email, code))
    assert sign_in(mailing_api, ana.email, PASSWORD).status_code == 200
    assert sign_in(mailing_api, ana.email, NEW).status_code == 401


def test_tries_sent_all_at_once_check_no_more_than_five(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn, app: Flask
) -> None:
    ana = mailing_api.register("Ana")
    code = mailed_code(smtp_standin, mailing_api, ana)
    guesses = [f"{n:04d}-{n:04d}" for n in range(20)]
    guesses = [g for g in guesses if g != code]
    answers: list[int] = []
    start = threading.Barrier(len(guesses))

    def guess(what: str) -> None:
        client = ApiClient(mailing_api.base_url)
        start.wait()
        answers.append(reset(client, ana.email, what).status_code)

    threads = [threading.Thread(target=guess, args=(g,)) for g in guesses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(answers)) == [422], answers
    with app.app_context():
        attempts = db.session.scalar(select(PasswordReset.attempts))
    assert attempts == password_reset.MOST_ATTEMPTS
    wrong(reset(mailing_api, ana.email, code))


def test_an_expired_code_is_refused(mailing_api: ApiClient, smtp_standin: SmtpStandIn) -> None:
    ana = mailing_api.register("Ana")
    clock.freeze(clock.now())
    code = mailed_code(smtp_standin, mailing_api, ana)
    clock.advance(password_reset.CODE_TTL)
    wrong(reset(mailing_api, ana.email, code))
    assert sign_in(mailing_api, ana.email, PASSWORD).status_code == 200


def test_a_reset_sent_again_after_its_answer_was_lost_signs_in_again(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana = mailing_api.register("Ana")
    clock.freeze(clock.now())
    code = mailed_code(smtp_standin, mailing_api, ana)
    first = reset(mailing_api, ana.email, code)
    assert first.status_code == 200, first.text
    again = reset(mailing_api, ana.email, code)
    assert again.status_code == 200, again.text
    assert again.json()["refresh_token"] != first.json()["refresh_token"]
    # Both sign-ins work: the retry ended nothing.
    for answer in (first, again):
        assert mailing_api.get("/api/v1/me", headers=_bearer(answer.json())).status_code == 200
    # Not with another password, and not once the retry window has passed.
    wrong(reset(mailing_api, ana.email, code, "yet another passphrase"))
    clock.advance(password_reset.RETRY_WINDOW + timedelta(seconds=1))
    wrong(reset(mailing_api, ana.email, code))


def test_a_new_password_is_held_to_the_sign_up_rules(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn
) -> None:
    ana = mailing_api.register("Ana")
    code = mailed_code(smtp_standin, mailing_api, ana)
    short = reset(mailing_api, ana.email, code, "short")
    assert short.status_code == 422
    assert list(short.json()["errors"]) == ["password"]
    # The refused body took no try of the code.
    assert reset(mailing_api, ana.email, code).status_code == 200


def test_codes_asked_for_one_address_are_limited(
    server_with: Callable[..., LiveServer], smtp_standin: SmtpStandIn
) -> None:
    server = server_with(
        MAIL_BACKEND="smtp",
        SMTP_URL=smtp_standin.url,
        MAIL_FROM=FROM,
        RATELIMIT_PASSWORD_RESET="2 per hour",
    )
    mailing_api = ApiClient(server.url)
    ana = mailing_api.register("Ana")
    assert [ask(mailing_api, ana.email).status_code for _ in range(2)] == [202, 202]
    limited = ask(mailing_api, ana.email.upper())
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    assert ask(mailing_api, "someone-else@example.com").status_code == 202
    smtp_standin.wait_for(2)
    assert [m.rcpt_tos for m in smtp_standin.received()] == [(ana.email,)] * 2


def test_the_worker_deletes_expired_codes(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn, worker: Worker, app: Flask
) -> None:
    ana, ben = mailing_api.register("Ana"), mailing_api.register("Ben")
    clock.freeze(clock.now())
    mailed_code(smtp_standin, mailing_api, ana)
    clock.advance(timedelta(minutes=10))
    mailed_code(smtp_standin, mailing_api, ben)
    clock.advance(password_reset.CODE_TTL - timedelta(minutes=5))  # Ana's is over, Ben's not
    worker.prune()
    with app.app_context():
        left = db.session.scalars(select(PasswordReset.user_id)).all()
    assert [str(user_id) for user_id in left] == [ben.id]


def test_what_is_stored_of_a_code_is_keyed_with_the_secret_key(
    mailing_api: ApiClient, smtp_standin: SmtpStandIn, server_with: Callable[..., LiveServer]
) -> None:
    """A reader of the database alone cannot try guesses at a code offline: a process with
    another SECRET_KEY does not take the code the first one mailed."""
    other = server_with(SECRET_KEY="another-secret-key-for-reach-tests-only-9876543210")
    ana = mailing_api.register("Ana")
    code = mailed_code(smtp_standin, mailing_api, ana)
    wrong(reset(ApiClient(other.url), ana.email, code))
    assert reset(mailing_api, ana.email, code).status_code == 200
