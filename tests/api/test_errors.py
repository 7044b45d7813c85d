"""Every error path answers in the contract's problem+json shape, and changes nothing."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode

import jwt
import pytest
from flask import Flask

from service import create_app
from service.clock import clock
from service.security.tokens import LEEWAY_SECONDS
from tests.support.client import PASSWORD, ApiClient
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.settings import make_settings

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def assert_problem(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) >= PROBLEM_KEYS, body
    assert body["status"] == status
    assert body["code"] == code
    assert "Traceback" not in response.text
    return dict(body)


def test_malformed_json_is_400(client: ApiClient) -> None:
    response = client.post(
        "/api/v1/auth/register",
        data='{"email": "a@b.c", ',
        headers={"Content-Type": "application/json"},
    )
    body = assert_problem(response, 400, "bad_request")
    assert "JSON" in body["detail"]


def test_a_malformed_body_is_400_saying_what_is_wrong_where(client: ApiClient) -> None:
    """A body sent as JSON that is not (a trailing comma, a Latin-1 accent) got "The request
    could not be read. Send a JSON body with Content-Type: application/json.", which the
    client had done: the problem now says the body is not valid JSON, and where."""
    ana = client.register("Ana")
    headers = {"Content-Type": "application/json"}
    trailing = client.patch(
        "/api/v1/me", as_=ana, data=b'{"display_name": "Ana B",}', headers=headers
    )
    detail = assert_problem(trailing, 400, "bad_request")["detail"]
    assert detail.startswith("The body is not valid JSON"), detail
    assert "line 1 column 26" in detail, detail
    latin1 = client.patch(
        "/api/v1/me", as_=ana, data=b'{"display_name": "Zo\xeb"}', headers=headers
    )
    detail = assert_problem(latin1, 400, "bad_request")["detail"]
    assert detail.startswith("The body is not valid JSON") and "UTF-8" in detail, detail
    assert client.get("/api/v1/me", as_=ana).json()["display_name"] == "Ana"


def test_a_byte_order_mark_before_the_json_is_ignored(client: ApiClient) -> None:
    """RFC 8259 lets a parser ignore a BOM; some HTTP clients write one before UTF-8 JSON."""
    body = json.dumps(
        {
            "email": f"bom-{uuid.uuid4().hex[:8]}@example.test",
            "password": "correct horse battery",
            "display_name": "Zoë",
            "timezone": "UTC",
        }
    )
    response = client.post(
        "/api/v1/auth/register",
        data=b"\xef\xbb\xbf" + body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["user"]["display_name"] == "Zoë"
    doubled = client.post(
        "/api/v1/auth/register",
        data=b"\xef\xbb\xbf\xef\xbb\xbf" + body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert_problem(doubled, 400, "bad_request")


def test_wrong_types_and_unknown_fields_are_422_with_field_errors(client: ApiClient) -> None:
    response = client.post(
        "/api/v1/auth/register",
        json={
            "email": 5,
            "password": ["x"],
            "display_name": None,
            "timezone": "UTC",
            "admin": True,
        },
    )
    body = assert_problem(response, 422, "validation_error")
    assert set(body["errors"]) == {"email", "password", "display_name", "admin"}
    assert all(isinstance(m, list) and m for m in body["errors"].values())


def test_overlong_strings_are_422(client: ApiClient) -> None:
    response = client.post(
        "/api/v1/auth/register",
        json={
            "email": "a" * 250 + "@b.io",
            "password": "p" * 257,
            "display_name": "n" * 61,
            "timezone": "UTC",
        },
    )
    body = assert_problem(response, 422, "validation_error")
    assert {"email", "password", "display_name"} <= set(body["errors"])


def test_bad_timezone_is_422(client: ApiClient) -> None:
    for zone in ("Mars/Base", "utc ", "../etc/passwd", ""):
        response = client.post(
            "/api/v1/auth/register",
            json={
                "email": "tz@example.test",
                "password": PASSWORD,
                "display_name": "T",
                "timezone": zone,
            },
        )
        assert "timezone" in assert_problem(response, 422, "validation_error")["errors"]
    login = client.post(
        "/api/v1/auth/login", json={"email": "tz@example.test", "password": PASSWORD}
    )
    assert login.status_code == 401


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer ", "Token abc", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz"],
)
def test_missing_or_malformed_tokens_are_401(client: ApiClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    assert_problem(client.get("/api/v1/me", headers=headers), 401, "unauthorized")


def test_a_401_names_its_scheme(client: ApiClient) -> None:
    """HTTP (RFC 9110 11.6.1) has every 401 carry WWW-Authenticate with a challenge; some
    HTTP clients fail a 401 without one (Android's HttpURLConnection: "No authentication
    challenges found") instead of handing the problem to the app."""
    person = client.register()
    refused = [
        client.get("/api/v1/me"),
        client.get("/api/v1/me", headers={"Authorization": "Bearer not.a.jwt"}),
        client.post("/api/v1/auth/login", json={"email": person.email, "password": "wrong"}),
        client.post("/api/v1/auth/refresh", json={"refresh_token": "rt_unknown"}),
    ]
    for response in refused:
        assert_problem(response, 401, "unauthorized")
        assert response.headers.get("WWW-Authenticate") == 'Bearer realm="reach"', response.text


def _forge(token: str, **changes: object) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_tampered_tokens_are_401(client: ApiClient) -> None:
    ana, ben = client.register("Ana"), client.register("Ben")
    for token in (
        _forge(ana.access_token, sub=ben.id),
        _forge(ana.access_token, exp=4102444800),
        ana.access_token[:-3] + ("AAA" if not ana.access_token.endswith("AAA") else "BBB"),
    ):
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 401, "unauthorized")
    # alg=none is never accepted.
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = ana.access_token.split(".")[1]
    none_token = f"{header}.{payload}."
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {none_token}"})
    assert_problem(response, 401, "unauthorized")
    # The refresh token is not an access token.
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {ana.refresh_token}"})
    assert_problem(response, 401, "unauthorized")


def test_tokens_signed_with_the_key_that_are_not_this_services_access_tokens_are_401(
    app: Flask, client: ApiClient
) -> None:
    """A token signed with the right key is still refused unless it is an access token
    (`typ`) issued by this service (`iss`) for the app (`aud`); one signed with another key,
    or naming a `kid` the service does not use, gets nothing more."""
    ana = client.register("Ana")
    claims = jwt.decode(ana.access_token, options={"verify_signature": False})
    key = app.extensions["reach.tokens"].secret
    forged = [
        jwt.encode({**claims, "typ": "refresh"}, key, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims.items() if k != "typ"}, key, algorithm="HS256"),
        jwt.encode({**claims, "aud": "reach-ops"}, key, algorithm="HS256"),
        jwt.encode({**claims, "iss": "someone-else"}, key, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims.items() if k != "sid"}, key, algorithm="HS256"),
        jwt.encode(claims, "another key, at least thirty-two bytes long", algorithm="HS256"),
        jwt.encode(claims, "another key, at least thirty-two bytes long", headers={"kid": "x"}),
    ]
    for token in forged:
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 401, "unauthorized")
    assert client.get("/api/v1/me", as_=ana).status_code == 200


def test_an_access_token_is_taken_for_a_few_seconds_past_its_expiry_and_no_longer(
    client: ApiClient,
) -> None:
    """Clocks of servers behind one balancer differ a little: LEEWAY_SECONDS, no more."""
    ana = client.register("Ana")
    expires = jwt.decode(ana.access_token, options={"verify_signature": False})["exp"]
    clock.freeze(datetime.fromtimestamp(expires + LEEWAY_SECONDS - 1, UTC))
    assert client.get("/api/v1/me", as_=ana).status_code == 200
    clock.freeze(datetime.fromtimestamp(expires + LEEWAY_SECONDS, UTC))
    assert_problem(client.get("/api/v1/me", as_=ana), 401, "unauthorized")


def test_unknown_path_is_404_and_wrong_method_405(client: ApiClient) -> None:
    assert_problem(client.get("/api/v1/nothing-here"), 404, "not_found")
    response = client.request("PUT", "/api/v1/auth/login", json={})
    assert_problem(response, 405, "bad_request")
    assert "POST" in response.headers["Allow"]


def test_too_large_body_is_413(client: ApiClient) -> None:
    response = client.post(
        "/api/v1/auth/login",
        data=json.dumps({"email": "a@b.c", "password": "x" * 70_000}),
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 413, "bad_request")


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/json"]
)
def test_a_body_not_sent_as_json_is_415_and_changes_nothing(
    client: ApiClient, content_type: str | None
) -> None:
    """A body whose Content-Type is missing or not JSON was read as no body: a profile change
    answered 200 and changed nothing (the phone believed it saved), a sign-in 422 "Missing
    data for required field" for fields it had sent."""
    ana = client.register("Ana")
    headers = {"Content-Type": content_type} if content_type else {}
    changed = json.dumps({"display_name": "Ana B"}).encode()
    response = client.patch("/api/v1/me", as_=ana, data=changed, headers=headers)
    problem = assert_problem(response, 415, "bad_request")
    assert "Content-Type: application/json" in problem["detail"]
    assert client.get("/api/v1/me", as_=ana).json()["display_name"] == "Ana"

    sign_in = {"email": ana.email, "password": ana.password}
    for body in (json.dumps(sign_in).encode(), urlencode(sign_in).encode()):
        refused = client.post("/api/v1/auth/login", data=body, headers=headers)
        assert_problem(refused, 415, "bad_request")


def test_a_compressed_body_is_415_saying_to_send_it_uncompressed(client: ApiClient) -> None:
    """A client that gzips its request bodies (an OkHttp interceptor, Ktor's ContentEncoding)
    got 400 "Send a JSON body with Content-Type: application/json", which it had done; a body
    whose Content-Encoding the service does not undo is refused as RFC 9110 has it (415),
    saying what to change, and an identity one is read as usual."""
    ana = client.register("Ana")
    changed = json.dumps({"display_name": "Ana B"}).encode()
    for encoding, body in (("gzip", gzip.compress(changed)), ("br", changed), ("GZIP", changed)):
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
        response = client.patch("/api/v1/me", as_=ana, data=body, headers=headers)
        problem = assert_problem(response, 415, "bad_request")
        assert "Content-Encoding" in problem["detail"], problem
    assert client.get("/api/v1/me", as_=ana).json()["display_name"] == "Ana"
    headers = {"Content-Type": "application/json", "Content-Encoding": "identity"}
    response = client.patch("/api/v1/me", as_=ana, data=changed, headers=headers)
    assert response.status_code == 200 and response.json()["display_name"] == "Ana B"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON; charset=UTF-8",
        "application/merge-patch+json",
        "application/vnd.reach+json",
    ],
)
def test_every_json_media_type_is_read(client: ApiClient, content_type: str) -> None:
    ana = client.register("Ana")
    changed = json.dumps({"display_name": "Ana B"}).encode()
    response = client.patch(
        "/api/v1/me", as_=ana, data=changed, headers={"Content-Type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.json()["display_name"] == "Ana B"


def test_a_request_without_a_body_needs_no_content_type(client: ApiClient) -> None:
    """Only a body is refused for its type: an empty one is no body, whatever its type says
    (some HTTP clients send a form type with every POST), and operations that take none
    (marking a bid seen) are called without one."""
    ana, ben = client.couple()
    bid = client.post(
        "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "share"}
    )
    assert bid.status_code == 201, bid.text
    for content_type in (None, "application/x-www-form-urlencoded", "text/plain"):
        headers = {"Content-Type": content_type} if content_type else {}
        seen = client.post(f"/api/v1/bids/{bid.json()['id']}/seen", as_=ben, headers=headers)
        assert seen.status_code == 200, (content_type, seen.text)
        empty = client.post("/api/v1/auth/logout", data=b"", headers=headers)
        assert "refresh_token" in assert_problem(empty, 422, "validation_error")["errors"]


def test_server_error_is_500_without_a_stack_trace(server_with: Callable[..., LiveServer]) -> None:
    server = server_with()

    @server.app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    client = ApiClient(server.url)
    body = assert_problem(client.get("/boom"), 500, "server_error")
    assert "secret internal detail" not in json.dumps(body)


def test_a_server_error_is_logged_with_the_request_it_answered(
    server_with: Callable[..., LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    """The 5xx alert comes by endpoint (reach_http_request_duration_seconds): the log line
    with the traceback names the same endpoint, its URL rule (never the path and its ids)."""
    server = server_with()

    @server.app.get("/boom/<int:n>")
    def boom(n: int) -> str:
        raise RuntimeError("secret internal detail")

    with caplog.at_level(logging.ERROR, logger="reach.errors"):
        assert_problem(ApiClient(server.url).get("/boom/7"), 500, "server_error")
    [record] = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert (record.__dict__["method"], record.__dict__["endpoint"]) == ("GET", "/boom/<int:n>")


def test_a_503_while_the_database_is_away_is_logged_with_its_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = LiveServer(create_app(make_settings("postgresql://reach@127.0.0.1:1/away"))).start()
    try:
        with caplog.at_level(logging.WARNING, logger="reach.errors"):
            answer = ApiClient(server.url).post(
                "/api/v1/auth/login", json={"email": "a@example.test", "password": PASSWORD}
            )
    finally:
        server.stop()
    assert_problem(answer, 503, "server_error")
    [record] = [r for r in caplog.records if r.getMessage() == "database unavailable; answered 503"]
    assert record.__dict__["method"] == "POST"
    assert record.__dict__["endpoint"] == "/api/v1/auth/login"


def test_too_many_sign_ins_are_429_with_retry_after(
    server_with: Callable[..., LiveServer],
) -> None:
    client = ApiClient(server_with(RATELIMIT_AUTH="3 per minute").url)
    body = {"email": "nobody@example.test", "password": "wrong password"}
    statuses = [client.post("/api/v1/auth/login", json=body).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    limited = client.post("/api/v1/auth/login", json=body)
    problem = assert_problem(limited, 429, "rate_limited")
    assert 0 < int(limited.headers["Retry-After"]) <= 61  # a minute's window, rounded up
    assert "Retry-After" in problem["detail"]
    assert problem["retry_after"] == int(limited.headers["Retry-After"])


def test_waiting_out_retry_after_is_enough(server_with: Callable[..., LiveServer]) -> None:
    """Retry-After is rounded up: a phone that waits as long as it says is let in. Rounded
    down, a window with 2.9 s left said 2, the retry after 2 s was refused again, and that
    429 said 0: wait nothing, and be refused until the window ended."""
    client = ApiClient(server_with(RATELIMIT_AUTH="1 per 3 seconds").url)
    body = {"email": "nobody@example.test", "password": "wrong password"}
    opened = time.time()  # the window opens with the first sign-in, at this moment or after
    assert client.post("/api/v1/auth/login", json=body).status_code == 401
    limited = client.post("/api/v1/auth/login", json=body)
    answered = time.time()
    problem = assert_problem(limited, 429, "rate_limited")
    said = int(limited.headers["Retry-After"])
    assert problem["retry_after"] == said
    assert said >= opened + 3 - answered, (said, answered - opened)
    time.sleep(said)
    assert client.post("/api/v1/auth/login", json=body).status_code == 401


def test_a_problems_title_is_its_status_phrase_whichever_way_it_came(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    """RFC 9457: with type about:blank, the title is the status's phrase. The same status had
    two titles ("Unprocessable Entity" from a schema, "Validation failed" from a rule or a
    socket ack; "Too Many Requests" over REST, "Too many requests" in an ack)."""
    titles = {
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        422: "Unprocessable Entity",
    }
    ana, _ben = client.couple()
    body = {"client_id": str(uuid.uuid4()), "kind": "help"}
    bid = client.post("/api/v1/bids", as_=ana, json=body).json()
    answered = [
        client.get("/api/v1/me"),
        client.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"}),
        client.post(f"/api/v1/bids/{bid['id']}/seen", as_=ana),
        client.get(f"/api/v1/bids/{uuid.uuid4()}", as_=ana),
        client.get("/api/v1/nothing-here"),
        client.post("/api/v1/couple/invites", as_=ana),
        client.post("/api/v1/couple/join", as_=client.register(), json={"code": "AAAA-AAAA"}),
        client.post("/api/v1/bids", as_=ana, json={"kind": "nope"}),
    ]
    for response in answered:
        body = response.json()
        assert body["title"] == titles[body["status"]], body
    device = phone(ana.access_token)
    acks = [
        device.call("bid.seen", {"bid_id": bid["id"]}),
        device.call("bid.send", {"kind": "nope"}),
        device.call("bid.delivered", {"bid_id": bid["id"]}),
    ]
    for ack in acks:
        assert ack["title"] == titles[ack["status"]], ack
    for ack in (device.call("connect", {}), device.client.call("bid.seen", ({}, 1), timeout=5)):
        assert (ack["status"], ack["title"]) == (400, "Bad Request"), ack
