"""Register, sign in, refresh with rotation (and the retry of a lost refresh), sign out, and
/me."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
import requests
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy import select, update

from service.clock import clock
from service.extensions import db
from service.models import User
from tests.support.client import PASSWORD, ApiClient
from tests.support.phones import Phone
from tests.support.server import LiveServer

# REFRESH_REUSE_GRACE_SECONDS by default: how soon a reused refresh token may be a retry.
GRACE = timedelta(seconds=30)
# Someone else's sign-up of a taken email: not the account's password (so not a retry of its own).
ANOTHER_PASSWORD = "another person's password"
# The event a change of a partner's name or time zone is.
UPDATED = "couple.partner_updated"
# The socket event that brings the account's own phones its profile.
ME = "me.updated"


def refresh(client: ApiClient, token: str) -> requests.Response:
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def me(client: ApiClient, access_token: str) -> int:
    headers = {"Authorization": f"Bearer {access_token}"}
    return client.get("/api/v1/me", headers=headers).status_code


def assert_reuse(response: requests.Response) -> None:
    assert response.status_code == 401, response.text
    assert "already used" in response.json()["detail"]


def test_register_returns_user_and_tokens(client: ApiClient) -> None:
    response = client.post(
        "/api/v1/auth/register",
        json={
            "email": "Ana@Example.test",
            "password": PASSWORD,
            "display_name": "Ana",
            "timezone": "America/New_York",
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["email"] == "ana@example.test"
    assert body["user"]["timezone"] == "America/New_York"
    assert body["user"]["quiet_hours"] is None
    assert body["user"]["created_at"].endswith("Z")
    assert "password" not in body["user"]
    assert "password_hash" not in body["user"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == body["user"]["id"]


def test_register_twice_with_one_email_is_a_conflict(client: ApiClient) -> None:
    person = client.register("Ana")
    again = client.post(
        "/api/v1/auth/register",
        json={
            "email": person.email.upper(),
            "password": ANOTHER_PASSWORD,
            "display_name": "X",
            "timezone": "UTC",
        },
    )
    assert again.status_code == 409
    assert again.json()["code"] == "conflict"


# How long after an account was made a sign-up of it sent again may sign in to it.
SIGN_UP_RETRY = timedelta(minutes=10)


def sign_up_body(email: str, password: str = PASSWORD, **profile: str) -> dict[str, str]:
    body = {"email": email, "password": password, "display_name": "Ana", "timezone": "UTC"}
    return {**body, **profile}


def test_a_sign_up_sent_again_after_its_answer_was_lost_signs_in_to_the_account(
    client: ApiClient,
) -> None:
    """The phone's sign-up made the account, its answer was lost, the app sent it again: that
    answered 409 "An account with this email exists", to the person who had just made it."""
    email = f"maya-{uuid.uuid4().hex[:8]}@example.test"
    first = client.post(
        "/api/v1/auth/register",
        json=sign_up_body(email, display_name="Maya", timezone="Europe/Berlin"),
    )
    assert first.status_code == 201, first.text
    maya = first.json()
    headers = {"Authorization": f"Bearer {maya['access_token']}"}
    device = {"platform": "ios", "push_token": f"apns-{uuid.uuid4().hex}"}
    assert client.post("/api/v1/devices", json=device, headers=headers).status_code == 201
    before = client.get("/api/v1/me", headers=headers).json()

    # The retry's name and zone are not the account's: the account as stored answers.
    again = client.post(
        "/api/v1/auth/register",
        json=sign_up_body(email.upper(), display_name="M", timezone="Asia/Tokyo"),
    )
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["user"] == before
    assert set(body) == set(maya)
    retried = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/api/v1/me", headers=retried).json() == before
    sessions = client.get("/api/v1/me/sessions", headers=retried).json()["items"]
    assert len(sessions) == 2
    assert refresh(client, body["refresh_token"]).status_code == 200
    # The first answer's session goes on, its device too; nothing else changed.
    assert client.get("/api/v1/me", headers=headers).json() == before
    devices = client.get("/api/v1/devices", headers=headers).json()["items"]
    assert [d["active"] for d in devices] == [True]
    assert client.get("/api/v1/couple", headers=retried).status_code == 404


def test_a_sign_up_sent_again_with_another_password_is_a_conflict_as_before(
    client: ApiClient,
) -> None:
    ana = client.register("Ana")
    wrong = client.post(
        "/api/v1/auth/register", json=sign_up_body(ana.email, "not Ana's password at all")
    )
    assert wrong.status_code == 409, wrong.text
    assert wrong.json()["code"] == "conflict"
    assert wrong.json()["detail"] == "An account with this email exists: sign in instead."
    sessions = client.get("/api/v1/me/sessions", as_=ana).json()["items"]
    assert len(sessions) == 1


def test_a_sign_up_sent_again_once_the_account_is_not_new_is_a_conflict(
    client: ApiClient,
) -> None:
    clock.freeze(clock.now())
    ana = client.register("Ana")
    clock.advance(SIGN_UP_RETRY - timedelta(seconds=1))
    last = client.post("/api/v1/auth/register", json=sign_up_body(ana.email))
    assert last.status_code == 200, last.text
    clock.advance(timedelta(seconds=1))
    late = client.post("/api/v1/auth/register", json=sign_up_body(ana.email))
    assert late.status_code == 409, late.text
    assert late.json()["detail"] == "An account with this email exists: sign in instead."
    sessions = client.get("/api/v1/me/sessions", as_=client.fresh(ana)).json()["items"]
    assert len(sessions) == 3  # the first, the retry in time, the sign-in just now


def test_an_email_with_spaces_around_it_signs_up_as_it_signs_in(client: ApiClient) -> None:
    """A keyboard's suggestion (iOS QuickType, Gboard) inserts the address with a space after
    it. Sign-in dropped the spaces, sign-up answered 422 "Not a valid email address."."""
    email = "Maya.QuickType@Example.test"
    body = {"password": PASSWORD, "display_name": "Maya", "timezone": "UTC"}
    response = client.post("/api/v1/auth/register", json={**body, "email": f" {email} "})
    assert response.status_code == 201, response.text
    assert response.json()["user"]["email"] == email.lower()
    signed_in = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    other = {**body, "password": ANOTHER_PASSWORD}
    again = client.post("/api/v1/auth/register", json={**other, "email": f"{email.lower()}\t"})
    assert again.status_code == 409, again.text
    inside = client.post("/api/v1/auth/register", json={**body, "email": "maya @example.test"})
    assert inside.status_code == 422, inside.text


def full_width(text: str) -> str:
    """`text` as a keyboard in full-width mode types it: each ASCII letter, digit and sign as
    its full-width form (U+FF01-U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_an_email_typed_in_full_width_or_decomposed_letters_is_the_same_account(
    client: ApiClient,
) -> None:
    """A Chinese or Japanese keyboard in full-width mode types "maya@example.com" in full-width
    letters and at sign, and "ë" arrives composed from one keyboard, as "e" and a combining
    diaeresis from another (text pasted from macOS). Each was refused (422) or made a second
    account, and signing in with another form was refused: the address is now read in
    Unicode's compatibility form (NFKC)."""
    body = {"password": PASSWORD, "display_name": "Zoë", "timezone": "UTC"}
    composed = "zo\u00eb.maya@example.test"
    made = client.post("/api/v1/auth/register", json={**body, "email": composed})
    assert made.status_code == 201, made.text
    for other in (
        "zoe\u0308.maya@example.test",
        full_width("ZO") + "\u00cb." + full_width("MAYA@EXAMPLE") + ".test",
        "zo\u00eb.maya@" + full_width("example") + ".test",
    ):
        taken = {**body, "password": ANOTHER_PASSWORD, "email": other}
        twice = client.post("/api/v1/auth/register", json=taken)
        assert twice.status_code == 409, (other, twice.text)
        signed_in = client.post("/api/v1/auth/login", json={"email": other, "password": PASSWORD})
        assert signed_in.status_code == 200, (other, signed_in.text)
        assert signed_in.json()["user"]["id"] == made.json()["user"]["id"]
    wide = full_width("lee@example") + ".test"
    made = client.post("/api/v1/auth/register", json={**body, "email": wide})
    assert made.status_code == 201, made.text
    assert made.json()["user"]["email"] == "lee@example.test"


def test_an_account_whose_email_was_stored_in_another_form_still_signs_in(
    app: Flask, client: ApiClient
) -> None:
    """Addresses stored before they were read as NFKC keep the form they were typed in: typed
    that way, they still sign in (and a sign-up in that form is still taken)."""
    person = client.register("Lee", email="lee.legacy@example.test")
    stored = full_width("lee") + "@example.test"
    with app.app_context():
        db.session.execute(update(User).where(User.id == uuid.UUID(person.id)).values(email=stored))
        db.session.commit()
    body = {"email": stored, "password": PASSWORD}
    signed_in = client.post("/api/v1/auth/login", json=body)
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["id"] == person.id
    taken = {**body, "password": ANOTHER_PASSWORD, "display_name": "Lee", "timezone": "UTC"}
    again = client.post("/api/v1/auth/register", json=taken)
    assert again.status_code == 409, again.text


def test_an_email_whose_domain_is_in_unicode_or_punycode_is_one_account(
    client: ApiClient,
) -> None:
    """ "bücher.example" and its ASCII form "xn--bcher-kva.example" are one mailbox: each made an
    account of its own. The domain is kept in Unicode, which ever form was typed."""
    body = {"password": PASSWORD, "display_name": "Ana", "timezone": "UTC"}
    made = client.post("/api/v1/auth/register", json={**body, "email": "ana@b\u00fccher.example"})
    assert made.status_code == 201, made.text
    for other in ("ana@xn--bcher-kva.example", "Ana@XN--BCHER-KVA.example"):
        taken = {**body, "password": ANOTHER_PASSWORD, "email": other}
        twice = client.post("/api/v1/auth/register", json=taken)
        assert twice.status_code == 409, (other, twice.text)
        signed_in = client.post("/api/v1/auth/login", json={"email": other, "password": PASSWORD})
        assert signed_in.status_code == 200, (other, signed_in.text)
        assert signed_in.json()["user"]["id"] == made.json()["user"]["id"]
    made = client.post("/api/v1/auth/register", json={**body, "email": "lee@xn--mnchen-3ya.test"})
    assert made.status_code == 201, made.text
    assert made.json()["user"]["email"] == "lee@m\u00fcnchen.test"
    taken = {**body, "password": ANOTHER_PASSWORD, "email": "lee@m\u00fcnchen.test"}
    twice = client.post("/api/v1/auth/register", json=taken)
    assert twice.status_code == 409, twice.text


def test_an_account_stored_with_a_punycode_domain_still_signs_in(
    app: Flask, client: ApiClient
) -> None:
    """An address stored before domains were kept in Unicode, as "xn--" typed it, signs in typed
    either way (and a sign-up in either form is taken)."""
    person = client.register("Ana", email="ana.legacy@example.test")
    stored = "ana@xn--bcher-kva.example"
    with app.app_context():
        db.session.execute(update(User).where(User.id == uuid.UUID(person.id)).values(email=stored))
        db.session.commit()
    for typed in (stored, "ana@b\u00fccher.example", "ANA@B\u00dcCHER.example"):
        body = {"email": typed, "password": PASSWORD}
        signed_in = client.post("/api/v1/auth/login", json=body)
        assert signed_in.status_code == 200, (typed, signed_in.text)
        assert signed_in.json()["user"]["id"] == person.id
        taken = {**body, "password": ANOTHER_PASSWORD, "display_name": "Ana", "timezone": "UTC"}
        again = client.post("/api/v1/auth/register", json=taken)
        assert again.status_code == 409, (typed, again.text)


def test_an_email_too_long_once_lower_cased_is_refused(client: ApiClient) -> None:
    """Emails are stored lower-cased, in at most 254 characters, and lower-casing can lengthen
    one: "İ" becomes "i" and a combining dot. 212 characters as typed, 412 as stored: a 422
    naming the field, not a 500."""
    body = {"password": PASSWORD, "display_name": "Ana", "timezone": "UTC"}
    email = "İ" * 200 + "@example.test"
    response = client.post("/api/v1/auth/register", json={**body, "email": email})
    assert response.status_code == 422, response.text
    assert "email" in response.json()["errors"]
    # The longest one that fits once lower-cased is taken.
    email = "İ" * 120 + "@example.test"
    assert len(email.lower()) == 253
    response = client.post("/api/v1/auth/register", json={**body, "email": email})
    assert response.status_code == 201, response.text
    assert response.json()["user"]["email"] == email.lower()


def test_login_and_wrong_password(client: ApiClient) -> None:
    person = client.register("Ana")
    ok = client.post("/api/v1/auth/login", json={"email": person.email, "password": PASSWORD})
    assert ok.status_code == 200
    assert ok.json()["user"]["id"] == person.id
    wrong = client.post("/api/v1/auth/login", json={"email": person.email, "password": "nope"})
    assert wrong.status_code == 401
    assert wrong.headers["Content-Type"] == "application/problem+json"
    assert wrong.json()["code"] == "unauthorized"
    unknown = client.post("/api/v1/auth/login", json={"email": "no@one.test", "password": "x"})
    assert unknown.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]


# One password, typed two ways: an accent composed with its letter (most keyboards), or as a
# letter and a combining accent (text pasted from macOS, some iOS input methods).
COMPOSED = "cr\u00e8me br\u00fbl\u00e9e \u00e0 deux"
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


def sign_in(client: ApiClient, email: str, password: str) -> requests.Response:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def sign_up(client: ApiClient, email: str, password: str) -> requests.Response:
    body = {"email": email, "password": password, "display_name": "Zoe", "timezone": "UTC"}
    return client.post("/api/v1/auth/register", json=body)


def test_a_password_signs_in_however_its_accents_were_typed(client: ApiClient) -> None:
    """NIST SP 800-63B: passwords are normalised (NFKC) before they are hashed. An accented
    password typed on another keyboard (a letter and a combining accent rather than the one
    composed letter) was a wrong password; so were full-width digits (a CJK keyboard)."""
    assert COMPOSED != DECOMPOSED
    for made, typed in ((COMPOSED, DECOMPOSED), (DECOMPOSED, COMPOSED)):
        email = f"zoe-{uuid.uuid4().hex[:8]}@example.test"
        assert sign_up(client, email, made).status_code == 201
        for password in (typed, made):
            assert sign_in(client, email, password).status_code == 200, (made, password)
        assert sign_in(client, email, COMPOSED.replace("\u00e8", "e")).status_code == 401
    email = f"zoe-{uuid.uuid4().hex[:8]}@example.test"
    assert sign_up(client, email, "pin 1234 and more").status_code == 201
    wide_digits = "pin \uff11\uff12\uff13\uff14 and more"
    assert sign_in(client, email, wide_digits).status_code == 200


def test_a_password_hashed_as_typed_before_normalising_signs_in_and_is_hashed_again(
    app: Flask, client: ApiClient
) -> None:
    """An account whose password was hashed as typed (decomposed) keeps signing in that way;
    that sign-in hashes it again in NFKC form, so from then on either way of typing it does."""
    person = client.register("Lee")
    with app.app_context():
        legacy = PasswordHasher().hash(DECOMPOSED)
        db.session.execute(
            update(User).where(User.id == uuid.UUID(person.id)).values(password_hash=legacy)
        )
        db.session.commit()
    assert sign_in(client, person.email, COMPOSED).status_code == 401
    assert sign_in(client, person.email, DECOMPOSED).status_code == 200
    with app.app_context():
        rehashed = db.session.scalar(
            select(User.password_hash).where(User.id == uuid.UUID(person.id))
        )
    assert rehashed != legacy
    assert sign_in(client, person.email, COMPOSED).status_code == 200
    assert sign_in(client, person.email, DECOMPOSED).status_code == 200


def test_a_passwords_length_is_counted_once_normalised(client: ApiClient) -> None:
    """9 accented letters typed with combining accents are 18 code points but 9 characters:
    too short. 200 accented letters signed up composed are 400 code points typed decomposed:
    the sign-in takes them (it refused them as over 256)."""
    short = unicodedata.normalize("NFD", "\u00e9" * 9)
    assert len(short) == 18
    refused = sign_up(client, f"zoe-{uuid.uuid4().hex[:8]}@example.test", short)
    assert refused.status_code == 422
    assert "password" in refused.json()["errors"]
    email = f"zoe-{uuid.uuid4().hex[:8]}@example.test"
    assert sign_up(client, email, "\u00e9" * 200).status_code == 201
    typed = unicodedata.normalize("NFD", "\u00e9" * 200)
    assert sign_in(client, email, typed).status_code == 200
    over = sign_up(client, f"zoe-{uuid.uuid4().hex[:8]}@example.test", "\ufb03" * 90)
    assert over.status_code == 422  # 90 ligatures are 270 letters once normalised
    assert "password" in over.json()["errors"]


def test_refresh_rotates_and_the_old_token_stops_working(client: ApiClient) -> None:
    person = client.register("Ana")
    first = client.post("/api/v1/auth/refresh", json={"refresh_token": person.refresh_token})
    assert first.status_code == 200
    pair = first.json()
    assert pair["refresh_token"] != person.refresh_token
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {pair['access_token']}"}).ok
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert second.status_code == 200


def test_reusing_a_refresh_token_revokes_the_whole_family(client: ApiClient) -> None:
    person = client.register("Ana")
    clock.freeze(clock.now())
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": person.refresh_token})
    new_pair = rotated.json()
    # Someone replays the old token, later than a retry of a lost answer: the family ends.
    clock.advance(GRACE)
    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": person.refresh_token})
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]
    # As every refusal that ends a session, it says what the phone does now.
    assert replay.json()["detail"].endswith(": sign in again."), replay.json()["detail"]
    after = client.post("/api/v1/auth/refresh", json={"refresh_token": new_pair["refresh_token"]})
    assert after.status_code == 401
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {new_pair['access_token']}"})
    assert me.status_code == 401
    # Other sessions of the same account are untouched.
    other = client.post("/api/v1/auth/login", json={"email": person.email, "password": PASSWORD})
    assert client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {other.json()['access_token']}"}
    ).ok


def test_a_retry_of_a_lost_refresh_gets_a_new_pair_and_the_lost_one_stops_working(
    client: ApiClient,
) -> None:
    """The phone's refresh reached the server, its answer did not (a tunnel, the app
    suspended): the phone retries with the same token, which the rotation spent."""
    person = client.register("Ana")
    clock.freeze(clock.now())
    lost = refresh(client, person.refresh_token)
    assert lost.status_code == 200
    clock.advance(GRACE - timedelta(seconds=1))
    retried = refresh(client, person.refresh_token)
    assert retried.status_code == 200, retried.text
    pair = retried.json()
    assert set(pair) == set(lost.json())
    assert pair["refresh_token"] not in (person.refresh_token, lost.json()["refresh_token"])
    assert me(client, pair["access_token"]) == 200
    # The lost answer's access token is the session's, as the retry's is: it works until it
    # expires, unless the session ends first ...
    assert me(client, lost.json()["access_token"]) == 200
    # ... which it does once the lost answer's refresh token shows up: someone had it.
    assert_reuse(refresh(client, lost.json()["refresh_token"]))
    assert refresh(client, pair["refresh_token"]).status_code == 401
    assert me(client, pair["access_token"]) == 401
    assert me(client, lost.json()["access_token"]) == 401


def test_the_retry_answers_with_the_token_the_phone_keeps(client: ApiClient) -> None:
    person = client.register("Ana")
    clock.freeze(clock.now())
    refresh(client, person.refresh_token)
    retried = refresh(client, person.refresh_token).json()
    assert refresh(client, retried["refresh_token"]).status_code == 200


def test_each_retry_replaces_the_last_until_the_window_after_the_rotation_ends(
    client: ApiClient,
) -> None:
    """The window runs from the rotation, not from the latest retry: a token shown again and
    again is not kept alive by it."""
    person = client.register("Ana")
    clock.freeze(clock.now())
    first = refresh(client, person.refresh_token).json()
    clock.advance(GRACE / 2)
    second = refresh(client, person.refresh_token).json()
    clock.advance(GRACE / 2 - timedelta(seconds=1))
    third = refresh(client, person.refresh_token)
    assert third.status_code == 200, third.text
    clock.advance(timedelta(seconds=1))
    assert_reuse(refresh(client, person.refresh_token))
    for pair in (first, second, third.json()):
        assert refresh(client, pair["refresh_token"]).status_code == 401


def test_a_retry_after_the_grace_window_revokes_the_session(client: ApiClient) -> None:
    person = client.register("Ana")
    clock.freeze(clock.now())
    rotated = refresh(client, person.refresh_token).json()
    clock.advance(GRACE)
    assert_reuse(refresh(client, person.refresh_token))
    assert refresh(client, rotated["refresh_token"]).status_code == 401
    assert me(client, rotated["access_token"]) == 401


def test_a_reuse_once_the_next_token_was_used_revokes_the_session(client: ApiClient) -> None:
    """The phone got the answer and refreshed with it: the chain moved on, and whoever shows
    the older token now holds a copy, however soon it comes."""
    person = client.register("Ana")
    clock.freeze(clock.now())
    rotated = refresh(client, person.refresh_token).json()
    newest = refresh(client, rotated["refresh_token"]).json()
    assert_reuse(refresh(client, person.refresh_token))
    assert refresh(client, newest["refresh_token"]).status_code == 401
    assert me(client, newest["access_token"]) == 401


def test_with_no_grace_window_any_reuse_revokes_the_session(
    server_with: Callable[..., LiveServer],
) -> None:
    client = ApiClient(server_with(REFRESH_REUSE_GRACE_SECONDS=0).url)
    person = client.register("Ana")
    clock.freeze(clock.now())
    rotated = refresh(client, person.refresh_token).json()
    assert_reuse(refresh(client, person.refresh_token))
    assert refresh(client, rotated["refresh_token"]).status_code == 401


def test_a_retry_is_refused_once_the_session_has_ended(client: ApiClient) -> None:
    person = client.register("Ana")
    refresh(client, person.refresh_token)
    assert client.post("/api/v1/auth/logout", json={"refresh_token": person.refresh_token}).ok
    ended = refresh(client, person.refresh_token)
    assert ended.status_code == 401
    assert "ended" in ended.json()["detail"]


def test_logout_revokes_the_session(client: ApiClient) -> None:
    person = client.register("Ana")
    out = client.post("/api/v1/auth/logout", json={"refresh_token": person.refresh_token})
    assert out.status_code == 204
    assert client.get("/api/v1/me", as_=person).status_code == 401
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": person.refresh_token})
    assert refresh.status_code == 401
    assert (
        client.post("/api/v1/auth/logout", json={"refresh_token": "rt_unknown"}).status_code == 204
    )


@pytest.mark.parametrize("route", ["/api/v1/auth/refresh", "/api/v1/auth/logout"])
def test_an_access_token_sent_as_the_refresh_token_says_which_to_send(
    client: ApiClient, route: str
) -> None:
    """The access token (a JWT) where the refresh token belongs: the 422 says which token this is
    and which to send, not that it is too long; nothing is refreshed or signed out."""
    person = client.register("Ana")
    response = client.post(route, json={"refresh_token": person.access_token})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == {
        "refresh_token": [
            "This is the access token: send the refresh token (rt_...) that sign-in gave."
        ]
    }
    assert client.get("/api/v1/me", as_=person).status_code == 200


@pytest.mark.parametrize("route", ["/api/v1/auth/refresh", "/api/v1/auth/logout"])
@pytest.mark.parametrize("prefix", ["Bearer ", "bearer  "])
@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
def test_a_token_sent_with_a_bearer_prefix_says_to_send_it_alone(
    client: ApiClient, route: str, prefix: str, which: str
) -> None:
    """`Authorization`'s "Bearer " copied into the body: the 422 says to send the refresh token
    alone, not that it is too long (an access token) or that the session is over (a refresh
    token, which would send the app to sign-in); nothing is refreshed or signed out."""
    person = client.register("Ana")
    response = client.post(route, json={"refresh_token": prefix + getattr(person, which)})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == {
        "refresh_token": [
            "Send the refresh token (rt_...) alone, without 'Bearer ': only the access token "
            "goes in the Authorization header with it."
        ]
    }
    assert client.get("/api/v1/me", as_=person).status_code == 200
    assert refresh(client, person.refresh_token).status_code == 200


def test_expired_access_token_is_refused(client: ApiClient) -> None:
    person = client.register("Ana")
    clock.freeze(clock.now() + timedelta(minutes=16))
    response = client.get("/api/v1/me", as_=person)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_expired_refresh_token_is_refused(client: ApiClient) -> None:
    person = client.register("Ana")
    clock.freeze(clock.now() + timedelta(days=31))
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": person.refresh_token})
    assert response.status_code == 401


def test_profile_update_with_quiet_hours(client: ApiClient) -> None:
    person = client.register("Ana")
    response = client.patch(
        "/api/v1/me",
        as_=person,
        json={
            "display_name": "Ana M.",
            "timezone": "Asia/Tokyo",
            "quiet_hours": {"start": "22:30", "end": "07:00"},
            "notes_on_lock_screen": True,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["display_name"] == "Ana M."
    assert body["timezone"] == "Asia/Tokyo"
    assert body["quiet_hours"] == {"start": "22:30", "end": "07:00"}
    assert body["notes_on_lock_screen"] is True
    assert client.get("/api/v1/me", as_=person).json() == body
    cleared = client.patch("/api/v1/me", as_=person, json={"quiet_hours": None})
    assert cleared.json()["quiet_hours"] is None


def test_bad_profile_updates_change_nothing(client: ApiClient) -> None:
    person = client.register("Ana")
    before = client.get("/api/v1/me", as_=person).json()
    for body, field in (
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "22:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "07:00", "end": "07:00"}}, "quiet_hours.end"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": " \t "}, "display_name"),
        ({"display_name": "x" * 61}, "display_name"),
        ({"display_name": 42}, "display_name"),
        ({"email": "new@example.test"}, "email"),
        ({"notes_on_lock_screen": "maybe"}, "notes_on_lock_screen"),
    ):
        response = client.patch("/api/v1/me", as_=person, json=body)
        assert response.status_code == 422, (body, response.text)
        problem = response.json()
        assert problem["code"] == "validation_error"
        assert field in problem["errors"], (body, problem)
    assert client.get("/api/v1/me", as_=person).json() == before


def test_a_name_is_kept_without_the_spaces_around_it_and_never_blank(client: ApiClient) -> None:
    """The partner's phone shows it ("Ana is reaching for you"), so blank is no name."""
    blank = client.post(
        "/api/v1/auth/register",
        json={
            "email": "blank@example.test",
            "password": "a long enough password",
            "display_name": "   ",
            "timezone": "Europe/Berlin",
        },
    )
    assert blank.status_code == 422
    assert "display_name" in blank.json()["errors"]
    for invisible in ("\u200b", "\u200e\u2060", "\u3164", "\u115f\u1160", "\u2800"):
        refused = client.post(
            "/api/v1/auth/register",
            json={
                "email": "invisible@example.test",
                "password": "a long enough password",
                "display_name": invisible,
                "timezone": "Europe/Berlin",
            },
        )
        assert refused.status_code == 422, (invisible, refused.text)
        assert "display_name" in refused.json()["errors"]
    ana = client.register(" Ana ", email="spaced-ana@example.test")
    assert ana.user["display_name"] == "Ana"
    renamed = client.patch("/api/v1/me", as_=ana, json={"display_name": "  Ana B. "})
    assert renamed.json()["display_name"] == "Ana B."
    hidden = client.patch("/api/v1/me", as_=ana, json={"display_name": "\u200b"})
    assert hidden.status_code == 422 and "display_name" in hidden.json()["errors"]
    assert client.get("/api/v1/me", as_=ana).json()["display_name"] == "Ana B."
    emoji = client.patch("/api/v1/me", as_=ana, json={"display_name": "\u2764\ufe0f Ana"})
    assert emoji.json()["display_name"] == "\u2764\ufe0f Ana"


def test_a_name_with_a_line_break_tab_or_other_control_character_is_refused(
    client: ApiClient,
) -> None:
    """The name is the partner's push title ("Ana is reaching for you") and their couple
    screen: a line break pushed the rest of the title to a second line, and a tab, a bell or a
    terminal escape was stored and shown as is. Emoji joined with a zero-width joiner stay."""
    ana = client.register("Ana")
    body = {"password": PASSWORD, "timezone": "UTC"}
    breaks = ("Ana\nBen", "Ana\r\nBen", "Ana\u2028Ben", "Ana\u2029Ben", "Ana\x85B.")
    for control in (*breaks, "Ana\tB.", "Ana\x07", "\x1b[31mAna"):
        made = client.post(
            "/api/v1/auth/register",
            json={**body, "email": "control@example.test", "display_name": control},
        )
        assert made.status_code == 422, (control, made.text)
        assert "display_name" in made.json()["errors"]
        renamed = client.patch("/api/v1/me", as_=ana, json={"display_name": control})
        assert renamed.status_code == 422, (control, renamed.text)
        assert "display_name" in renamed.json()["errors"]
    assert client.get("/api/v1/me", as_=ana).json()["display_name"] == "Ana"
    family = "Ana \U0001f469\u200d\u2764\ufe0f\u200d\U0001f468"
    renamed = client.patch("/api/v1/me", as_=ana, json={"display_name": family})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["display_name"] == family


def test_a_new_name_or_time_zone_reaches_both_phones_live_and_through_sync(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    """The partner's phone shows the name and the time zone ("it's 3 am for Ben") as
    `GET /couple` gave them: a change of either is an event in the couple's stream, carrying
    the member as `GET /couple` shows a partner, to both phones and to sync."""
    ana, ben = client.couple()
    sol = client.register("Sol")
    ana_phone, ben_phone, sol_phone = (phone(p.access_token) for p in (ana, ben, sol))
    changes = {"display_name": " Ana B. ", "timezone": "Asia/Tokyo"}
    assert client.patch("/api/v1/me", as_=ana, json=changes).status_code == 200

    event = ben_phone.wait_for(UPDATED)
    assert event["cursor"] == 2
    assert event["data"] == {"id": ana.id, "display_name": "Ana B.", "timezone": "Asia/Tokyo"}
    assert event["data"] == client.get("/api/v1/couple", as_=ben).json()["partner"]
    assert ana_phone.wait_for(UPDATED) == event
    synced = client.get("/api/v1/sync", as_=ben, params={"since": 1}).json()
    assert synced["events"] == [event] and synced["next"] == 2

    assert client.patch("/api/v1/me", as_=ben, json={"timezone": "UTC"}).status_code == 200
    bens = ana_phone.wait_for(UPDATED, lambda e: e["cursor"] == 3)
    assert bens["data"] == {"id": ben.id, "display_name": "Ben", "timezone": "UTC"}
    assert bens["data"] == client.get("/api/v1/couple", as_=ana).json()["partner"]
    assert ben_phone.wait_for(UPDATED, lambda e: e["cursor"] == 3) == bens
    synced = client.get("/api/v1/sync", as_=ana, params={"since": 2}).json()
    assert synced["events"] == [bens] and synced["next"] == 3
    assert sol_phone.events == []


def test_a_change_the_partner_cannot_see_is_no_event(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    """The same name or zone sent again, quiet hours and lock-screen notes (which `GET /couple`
    does not show the partner) write no event: the next change that is one takes cursor 2."""
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    for same in (
        {"display_name": "Ana", "timezone": "Europe/Berlin"},
        {"display_name": "  Ana "},
        {"quiet_hours": {"start": "22:00", "end": "07:00"}, "notes_on_lock_screen": True},
        {"timezone": "Europe/Berlin", "quiet_hours": None},
    ):
        assert client.patch("/api/v1/me", as_=ana, json=same).status_code == 200, same
    assert client.patch("/api/v1/me", as_=ana, json={"display_name": "Ana B."}).ok
    assert ben_phone.wait_for(UPDATED)["cursor"] == 2
    assert ana_phone.wait_for(UPDATED)["cursor"] == 2
    types = [e["type"] for e in client.get("/api/v1/sync", as_=ben).json()["events"]]
    assert types == ["couple.paired", UPDATED]
    assert [name for name, _ in ben_phone.events] == [UPDATED]


def test_the_accounts_own_phones_get_the_profile_as_get_me_shows_it_and_nobody_else(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    """A change of the profile goes to every connected phone of the account as `me.updated`,
    the profile as `GET /me` shows it, never to the partner's nor anyone else's; sending the
    values already stored sends nothing."""
    ana, ben = client.couple()
    sol = client.register("Sol")
    ana_phone, ana_tablet = phone(ana.access_token), phone(client.fresh(ana).access_token)
    ben_phone, sol_phone = phone(ben.access_token), phone(sol.access_token)
    assert client.patch("/api/v1/me", as_=ben, json={"timezone": "UTC"}).ok
    assert ben_phone.wait_for(ME) == client.get("/api/v1/me", as_=ben).json()
    same = {"display_name": "Ana", "quiet_hours": None, "notes_on_lock_screen": False}
    assert client.patch("/api/v1/me", as_=ana, json=same).status_code == 200
    changes = {"quiet_hours": {"start": "22:00", "end": "07:00"}, "notes_on_lock_screen": True}
    answer = client.patch("/api/v1/me", as_=ana, json=changes)
    assert answer.status_code == 200, answer.text
    shown = client.get("/api/v1/me", as_=ana).json()
    assert answer.json() == shown
    for device in (ana_phone, ana_tablet):  # after anything sent before it
        assert device.wait_for(ME) == shown
    assert [len(device.named(ME)) for device in (ana_phone, ana_tablet, ben_phone)] == [1, 1, 1]
    assert sol_phone.events == []


def test_a_change_numbers_the_profile_and_sending_it_again_does_not(client: ApiClient) -> None:
    """`profile_version` starts at 0, counts each `PATCH /me` that changed the profile, and is
    in the sign-in's answer, `GET /me` and the `PATCH` answer alike."""
    ana = client.register("Ana")
    assert ana.user["profile_version"] == 0
    assert client.get("/api/v1/me", as_=ana).json()["profile_version"] == 0
    changed = client.patch("/api/v1/me", as_=ana, json={"display_name": "Anna"})
    assert changed.json()["profile_version"] == 1
    again = client.patch("/api/v1/me", as_=ana, json={"display_name": "Anna"})
    assert again.json()["profile_version"] == 1
    signed_in = client.post(
        "/api/v1/auth/login", json={"email": ana.email, "password": ana.password}
    )
    assert signed_in.json()["user"]["profile_version"] == 1


def test_an_unpaired_change_is_no_event(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    """Single, or after unpairing, a profile change goes to no stream: the former partner hears
    nothing (only the account's own phones do, `me.updated`), and a new couple's stream starts
    with `couple.paired`."""
    ana, ben = client.couple()
    ben_phone = phone(ben.access_token)
    assert client.delete("/api/v1/couple", as_=ana).status_code == 204
    ben_phone.wait_for("couple.ended")
    sol = client.register("Sol")
    sol_phone = phone(sol.access_token)
    for who in (ana, sol):
        renamed = client.patch(
            "/api/v1/me", as_=who, json={"display_name": "New", "timezone": "UTC"}
        )
        assert renamed.status_code == 200, renamed.text
    client.pair(sol, ben)
    paired = sol_phone.wait_for("couple.paired")
    assert paired["cursor"] == 1
    assert ben_phone.wait_for("couple.paired") == paired
    assert [name for name, _ in sol_phone.events] == [ME, "couple.paired"]  # her own phone's
    assert [name for name, _ in ben_phone.events] == ["couple.ended", "couple.paired"]
    assert [e["type"] for e in client.get("/api/v1/sync", as_=ben).json()["events"]] == [
        "couple.paired"
    ]
