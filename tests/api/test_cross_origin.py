"""A members' web app at an allowed origin (ALLOWED_ORIGINS) can call the REST API from a
browser: preflights are answered, and answers, errors included, say the origin may read them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import requests

from tests.api.test_errors import assert_problem
from tests.support.client import PASSWORD, ApiClient
from tests.support.server import LiveServer

APP = "https://app.example.com"
OTHER = "https://elsewhere.example"


def preflight(client: ApiClient, path: str, origin: str, method: str) -> requests.Response:
    """What a browser sends before a request with a JSON body or an Authorization header."""
    return client.request(
        "OPTIONS",
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


def exposed(response: requests.Response) -> set[str]:
    names = response.headers.get("Access-Control-Expose-Headers", "")
    return {name.strip().lower() for name in names.split(",") if name.strip()}


def test_a_web_app_at_an_allowed_origin_can_sign_in_and_read_its_answers(
    server_with: Callable[..., LiveServer],
) -> None:
    """Without these headers a browser refuses the preflight of every call with a JSON body or
    a token: a web app at the origin the sockets allow could not even sign in."""
    client = ApiClient(server_with(ALLOWED_ORIGINS=(APP,), RATELIMIT_AUTH="2 per minute").url)
    for path, method in (("/api/v1/auth/register", "POST"), ("/api/v1/me", "PATCH")):
        answer = preflight(client, path, APP, method)
        assert answer.status_code in (200, 204), answer.text
        assert answer.headers.get("Access-Control-Allow-Origin") == APP
        allowed = answer.headers.get("Access-Control-Allow-Methods", "")
        assert method in {m.strip() for m in allowed.split(",")}, allowed
        headers = answer.headers.get("Access-Control-Allow-Headers", "").lower()
        assert {"authorization", "content-type"} <= {h.strip() for h in headers.split(",")}
        assert "Origin" in answer.headers.get("Vary", "")
        assert "Access-Control-Allow-Credentials" not in answer.headers  # bearer tokens only

    from_app = {"Origin": APP}
    email = f"web-{uuid.uuid4().hex[:8]}@example.test"
    body = {"email": email, "password": PASSWORD, "display_name": "Wen", "timezone": "UTC"}
    registered = client.post("/api/v1/auth/register", json=body, headers=from_app)
    assert registered.status_code == 201, registered.text
    assert registered.headers.get("Access-Control-Allow-Origin") == APP
    assert "Origin" in registered.headers.get("Vary", "")

    # Errors too, or the app cannot read the problem, nor Retry-After on a 429.
    unsigned = client.get("/api/v1/me", headers=from_app)
    assert_problem(unsigned, 401, "unauthorized")
    assert unsigned.headers.get("Access-Control-Allow-Origin") == APP
    assert "www-authenticate" in exposed(unsigned)
    wrong = {"email": email, "password": "not the password"}
    limited = [client.post("/api/v1/auth/login", json=wrong, headers=from_app) for _ in range(3)]
    assert_problem(limited[-1], 429, "rate_limited")
    assert limited[-1].headers.get("Access-Control-Allow-Origin") == APP
    assert "retry-after" in exposed(limited[-1])

    token = registered.json()["access_token"]
    export = client.get(
        "/api/v1/me/export", headers={**from_app, "Authorization": f"Bearer {token}"}
    )
    assert export.status_code == 200, export.text
    assert "content-disposition" in exposed(export)


def test_other_origins_get_no_permission(server_with: Callable[..., LiveServer]) -> None:
    client = ApiClient(server_with(ALLOWED_ORIGINS=(APP,)).url)
    answer = preflight(client, "/api/v1/auth/login", OTHER, "POST")
    assert "Access-Control-Allow-Origin" not in answer.headers
    refused = client.post("/api/v1/auth/login", json={}, headers={"Origin": OTHER})
    assert "Access-Control-Allow-Origin" not in refused.headers
    # A native app sends no Origin: nothing changes for it.
    native = client.post("/api/v1/auth/login", json={})
    assert "Access-Control-Allow-Origin" not in native.headers


def test_no_origin_is_allowed_unless_configured(live_server: LiveServer) -> None:
    client = ApiClient(live_server.url)
    answer = preflight(client, "/api/v1/auth/login", APP, "POST")
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_preflights_count_against_no_limit(server_with: Callable[..., LiveServer]) -> None:
    """A browser sends a preflight before each call it has not cached the answer for: they
    are not the calls the limits count."""
    client = ApiClient(
        server_with(
            ALLOWED_ORIGINS=(APP,), RATELIMIT_BIDS="2 per minute", RATELIMIT_JOIN="2 per minute"
        ).url
    )
    ana, _ = client.couple()
    for _ in range(3):
        for path in ("/api/v1/bids", "/api/v1/couple/invites", "/api/v1/couple/join"):
            answer = preflight(client, path, APP, "POST")
            assert answer.status_code in (200, 204), (path, answer.text)
    sent = client.post(
        "/api/v1/bids",
        as_=ana,
        json={"client_id": str(uuid.uuid4()), "kind": "connect"},
        headers={"Origin": APP},
    )
    assert sent.status_code == 201, sent.text
