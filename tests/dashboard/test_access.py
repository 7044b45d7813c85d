"""Who gets into /ops: operators with a live session; never members, forged or fixed cookies."""

from __future__ import annotations

import base64
import html
import json
import re
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import socketio
from flask import Flask, request

from service import create_app
from service.clock import clock
from tests.dashboard.conftest import OperatorAccount, OpsClient, live_figures
from tests.dashboard.helpers import connect_to_ops
from tests.security.conftest import create_operator
from tests.support.client import ApiClient
from tests.support.races import server_disconnects_held, socket_closed
from tests.support.server import LiveServer
from tests.support.settings import make_settings
from tests.support.waiting import wait_until

PAGES = ["/ops/", "/ops/push", "/ops/support", "/ops/audit"]
JSON = ["/ops/api/overview", "/ops/api/push", "/ops/api/audit"]


def cookie_payload(value: str) -> dict[str, Any]:
    """What a Flask session cookie says (it is signed, not encrypted)."""
    if not value.strip("."):
        return {}
    compressed = value.startswith(".")
    data = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return dict(json.loads(zlib.decompress(raw) if compressed else raw))


def with_cookie(live_server: LiveServer, value: str) -> OpsClient:
    client = OpsClient(live_server.url)
    client.http.cookies.set("reach_ops", value, domain="127.0.0.1", path="/")
    return client


def assert_refused(client: OpsClient, headers: dict[str, str] | None = None) -> None:
    for path in PAGES:
        response = client.get(path, headers=headers)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/ops/login"), path
    for path in JSON:
        response = client.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["Content-Type"] == "application/problem+json"
        assert set(response.json()) == {"type", "title", "status", "detail", "code"}


def test_signing_in_rotates_the_session_and_signing_out_ends_it(
    ops_client: Callable[[], OpsClient], operator: OperatorAccount, live_server: LiveServer
) -> None:
    browser = ops_client()
    login_page = browser.get("/ops/login")
    set_cookie = login_page.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Path=/" in set_cookie
    before = browser.cookie
    assert before is not None
    anonymous = cookie_payload(before)
    assert set(anonymous) == {"csrf"}

    assert browser.sign_in(operator).status_code == 302
    after = browser.cookie
    assert after is not None and after != before
    signed_in = cookie_payload(after)
    assert set(signed_in) == {"csrf", "ops_sid"}
    assert signed_in["csrf"] != anonymous["csrf"]
    assert browser.get("/ops/").status_code == 200
    # Whoever held the cookie from before the sign-in (a fixation attempt) is not signed in.
    assert_refused(with_cookie(live_server, before))

    token = browser.csrf()
    assert browser.post("/ops/logout", data={"csrf_token": token}).status_code == 302
    assert_refused(browser)
    # The signed cookie alone opens nothing once the server forgot the session.
    assert_refused(with_cookie(live_server, after))


def test_a_cookie_chosen_by_someone_else_is_never_adopted(
    live_server: LiveServer, operator: OperatorAccount
) -> None:
    planted = "attacker-chosen-session-value"
    victim = with_cookie(live_server, planted)
    assert_refused(victim)
    assert victim.sign_in(operator).status_code == 302
    assert victim.cookie not in (None, planted)
    assert victim.get("/ops/").status_code == 200
    assert_refused(with_cookie(live_server, planted))


def test_a_tampered_cookie_is_refused(signed_in: OpsClient, live_server: LiveServer) -> None:
    value = signed_in.cookie
    assert value is not None
    payload, _, signature = value.partition(".")
    forged = json.dumps({"ops_sid": "guessed", "csrf": "x"}).encode()
    forged_value = base64.urlsafe_b64encode(forged).decode().rstrip("=") + "." + signature
    assert_refused(with_cookie(live_server, forged_value))
    assert_refused(with_cookie(live_server, payload + "." + signature[::-1]))


def test_members_get_nothing_from_ops(
    client: ApiClient, live_server: LiveServer, ops_client: Callable[[], OpsClient]
) -> None:
    ana = client.register("Ana")
    bearer = {"Authorization": f"Bearer {ana.access_token}"}
    assert_refused(ops_client(), headers=bearer)
    assert_refused(with_cookie(live_server, ana.access_token))
    assert_refused(with_cookie(live_server, ana.refresh_token))
    # A member's email and password do not sign in to /ops.
    member = ops_client()
    response = member.sign_in(OperatorAccount(ana.email, ana.password))
    assert response.status_code == 401
    assert "ops_sid" not in cookie_payload(member.cookie or "")
    assert_refused(member)


def test_the_ops_socket_refuses_members_and_strangers(
    client: ApiClient, live_server: LiveServer, signed_in: OpsClient, ops_quiet: None
) -> None:
    ana = client.register("Ana")
    attempts: list[dict[str, Any]] = [
        {"auth": {"token": ana.access_token}},
        {"headers": {"Authorization": f"Bearer {ana.access_token}"}},
        {"headers": {"Cookie": f"reach_ops={ana.access_token}"}},
        {},
    ]
    for attempt in attempts:
        stranger = socketio.Client(reconnection=False)
        refusals: list[Any] = []
        stranger.on("connect_error", refusals.append, namespace="/ops")
        with pytest.raises(socketio.exceptions.ConnectionError):
            stranger.connect(
                live_server.url, namespaces=["/ops"], transports=["websocket"], **attempt
            )
        stranger.disconnect()
        # The refusal is a problem object, as on every other refusal (the message names it).
        assert refusals[0]["message"] == "Sign in at /ops/login."
        assert refusals[0]["data"] == {
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "Sign in at /ops/login.",
            "code": "unauthorized",
        }
    operator = socketio.Client(reconnection=False)
    connect_to_ops(operator, live_server.url, signed_in.cookie)
    assert operator.connected
    operator.disconnect()


def test_the_ops_socket_takes_only_the_dashboards_own_origin(
    server_with: Callable[..., LiveServer], signed_in: OpsClient
) -> None:
    """ALLOWED_ORIGINS are the members' web apps: a page of theirs (a script injected into
    one, say) must not open the overview with an operator's cookie, which SameSite=Lax sends
    between subdomains of one site. The members' namespace still takes them."""
    server = server_with(ALLOWED_ORIGINS=("https://app.example",))
    cookie = {"Cookie": f"reach_ops={signed_in.cookie}"}

    def connect(origin: str, namespace: str, headers: dict[str, str]) -> list[Any]:
        """Connect from a page of `origin`; the refusals the namespace answered."""
        sock = socketio.Client(reconnection=False, websocket_extra_options={"origin": origin})
        refusals: list[Any] = []
        sock.on("connect_error", refusals.append, namespace=namespace)
        try:
            sock.connect(
                server.url,
                namespaces=[namespace],
                transports=["websocket"],
                headers=headers,
                wait_timeout=5,
            )
        except socketio.exceptions.ConnectionError:
            assert refusals, "refused by the engine, not the namespace"
        finally:
            sock.disconnect()
        return refusals

    refused = connect("https://app.example", "/ops", cookie)
    assert [r["data"]["status"] for r in refused] == [403], refused
    assert connect(server.url, "/ops", cookie) == []
    # The members' namespace takes the web app's origin; this socket brings no token.
    refused = connect("https://app.example", "/", {})
    assert [r["data"]["status"] for r in refused] == [401], refused


def test_signing_out_as_the_browser_closes_its_socket_stops_the_live_figures(
    app: Flask, live_server: LiveServer, signed_in: OpsClient, ops_quiet: None
) -> None:
    """The sign-out cuts the session's /ops socket just as the tab closes it: the overview stops
    being computed for nobody."""
    operator = socketio.Client(reconnection=False)
    connect_to_ops(operator, live_server.url, signed_in.cookie)
    eio_sid = operator.eio.sid
    assert live_figures(app).watchers == 1
    token = signed_in.csrf()
    with ThreadPoolExecutor(1) as background, server_disconnects_held(app) as held:
        signing_out = background.submit(signed_in.post, "/ops/logout", data={"csrf_token": token})
        assert held.wait(5), "the sign-out did not cut the socket"
        operator.disconnect()
        wait_until(lambda: socket_closed(app, eio_sid), what="the socket to close")
    assert signing_out.result(timeout=10).status_code == 302
    assert live_figures(app).wait_idle(5), "the figures are still computed for a closed socket"
    assert live_figures(app).watchers == 0


def test_the_ops_socket_ends_with_its_session(
    app: Flask, live_server: LiveServer, signed_in: OpsClient, ops_quiet: None
) -> None:
    """A tab left open streams the figures only while its sign-in lasts: once the session has
    run out (OPS_SESSION_HOURS), the socket is closed, as a sign-out would close it."""
    operator = socketio.Client(reconnection=False)
    overviews: list[Any] = []
    operator.on("ops.overview", overviews.append, namespace="/ops")
    connect_to_ops(operator, live_server.url, signed_in.cookie)
    wait_until(lambda: len(overviews) >= 1, what="the first overview")
    hours = app.extensions["reach.settings"].OPS_SESSION_HOURS
    clock.freeze(clock.now() + timedelta(hours=hours, minutes=1))
    try:
        wait_until(lambda: not operator.connected, what="the expired session's socket to close")
    finally:
        operator.disconnect()
    assert signed_in.get("/ops/").status_code == 302
    assert live_figures(app).wait_idle(5), "the figures are still computed for nobody"


@pytest.mark.parametrize("token", [None, "", "wrong-token", "other-session"])
def test_a_form_without_this_sessions_csrf_token_changes_nothing(
    token: str | None,
    client: ApiClient,
    signed_in: OpsClient,
    ops_client: Callable[[], OpsClient],
    operator: OperatorAccount,
) -> None:
    ana = client.register("Ana")
    path = f"/ops/support/users/{ana.id}/disable"
    form: dict[str, str] = {}
    if token == "other-session":
        other = ops_client()
        assert other.sign_in(operator).status_code == 302
        form["csrf_token"] = other.csrf()
    elif token is not None:
        form["csrf_token"] = token
    response = signed_in.post(path, data=form)
    assert response.status_code == 400
    assert client.get("/api/v1/me", as_=ana).status_code == 200
    audit = signed_in.get("/ops/api/audit").json()["items"]
    assert [e["action"] for e in audit if e["target_id"] == ana.id] == []
    # With the session's own token the same form works.
    response = signed_in.post(path, data={"csrf_token": signed_in.csrf()})
    assert response.status_code == 302
    assert client.get("/api/v1/me", as_=ana).status_code == 401


def test_signing_in_needs_the_csrf_token_too(
    ops_client: Callable[[], OpsClient], operator: OperatorAccount
) -> None:
    browser = ops_client()
    browser.get("/ops/login")
    form = {"email": operator.email, "password": operator.password}
    assert browser.post("/ops/login", data=form).status_code == 400
    assert "ops_sid" not in cookie_payload(browser.cookie or "")


def test_signing_in_over_plain_http_says_the_dashboard_needs_https(
    app: Flask, server_with: Callable[..., LiveServer], operator: OperatorAccount
) -> None:
    """In production the cookie is Secure, which a browser keeps only over HTTPS (or on
    localhost): over plain HTTP the sign-in's form comes back without its session. The answer
    says so, instead of asking for a reload that can never help."""
    server = server_with()
    server.app.config["SESSION_COOKIE_SECURE"] = True  # as on PostgreSQL outside the tests
    browser = OpsClient(server.url)  # like a browser, it sends no Secure cookie over http://
    answer = browser.sign_in(operator)
    assert answer.status_code == 400
    assert "Open /ops over HTTPS" in answer.text
    assert "reload the page" not in answer.text
    # Behind TLS (the proxy says https) the same sign-in works.
    proxied = server_with(TRUSTED_PROXIES=1)
    proxied.app.config["SESSION_COOKIE_SECURE"] = True
    secure = OpsClient(proxied.url)
    secure.http.headers["X-Forwarded-Proto"] = "https"
    token = secure.csrf("/ops/login")
    secure.http.cookies.set("reach_ops", secure.http.cookies.get("reach_ops"), secure=False)
    form = {"email": operator.email, "password": operator.password, "csrf_token": token}
    assert secure.post("/ops/login", data=form).status_code == 302


@pytest.mark.committed  # each request on a connection of its own: they run side by side
def test_failed_sign_ins_are_limited_per_operator_from_any_address(
    app: Flask, server_with: Callable[..., LiveServer]
) -> None:
    """Guessing one operator's password from many addresses: the per-address limit alone
    would let each address try RATELIMIT_AUTH times; the operator's account has a limit of its
    own, which only failures stay counted in, however many are sent at once."""
    server = server_with(RATELIMIT_AUTH_EMAIL="3 per minute")
    target, other = create_operator(app), create_operator(app)
    wrong = OperatorAccount(target.email.upper(), "not the password at all")
    with ThreadPoolExecutor(max_workers=8) as pool:
        guesses = pool.map(lambda _: OpsClient(server.url).sign_in(wrong).status_code, range(8))
        assert sorted(guesses) == [401] * 3 + [429] * 5
    assert OpsClient(server.url).sign_in(target).status_code == 429
    assert OpsClient(server.url).sign_in(other).status_code == 302


def test_a_sign_in_refused_for_too_many_tries_says_how_long_to_wait(
    app: Flask, server_with: Callable[..., LiveServer]
) -> None:
    """The refusal is a page an operator can act on: not the limiter's "2 per 1 minute"."""
    server = server_with(RATELIMIT_AUTH_EMAIL="2 per minute")
    wrong = OperatorAccount(create_operator(app).email, "not the password at all")
    assert [OpsClient(server.url).sign_in(wrong).status_code for _ in range(2)] == [401, 401]
    refused = OpsClient(server.url).sign_in(wrong)
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    assert 0 < wait <= 61  # the window's end, in whole seconds, rounded up
    assert f"Too many attempts: try again in {wait} s." in refused.text
    assert "per 1 minute" not in refused.text


def test_pages_forbid_framing_and_foreign_scripts(signed_in: OpsClient) -> None:
    response = signed_in.get("/ops/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    script = signed_in.get("/ops/static/vendor/socket.io.min.js")
    assert script.status_code == 200 and "Socket.IO v4" in script.text


def test_next_never_leaves_ops(
    ops_client: Callable[[], OpsClient], operator: OperatorAccount
) -> None:
    for target, expected in [
        ("/ops/push", "/ops/push"),
        ("https://evil.example/ops/", "/ops/"),
        ("//evil.example/ops/", "/ops/"),
        ("/api/v1/me", "/ops/"),
        # Dot segments a browser resolves before following the redirect: out of /ops.
        ("/ops/../api/v1/me", "/ops/"),
        ("/ops/%2e%2E/api/v1/me", "/ops/"),
        ("/ops/./../api/v1/me", "/ops/"),
        ("/ops/no-such-page", "/ops/"),
    ]:
        browser = ops_client()
        token = browser.csrf("/ops/login")
        form = {"email": operator.email, "password": operator.password, "csrf_token": token}
        response = browser.post("/ops/login", data={**form, "next": target})
        assert response.headers["Location"] == expected, target


def test_api_responses_set_no_cookie(client: ApiClient) -> None:
    response = requests.get(f"{client.base_url}/api/v1/openapi.json", timeout=10)
    assert "Set-Cookie" not in response.headers


def test_only_requests_with_the_cookie_read_a_session(
    app: Flask,
    client: ApiClient,
    ops_client: Callable[[], OpsClient],
    operator: OperatorAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A phone's request sends no cookie: no session signer is built for it. An operator's
    requests, which carry one, still read and write their session."""
    interface = app.session_interface
    build = interface.get_signing_serializer  # type: ignore[attr-defined]
    signers: list[str] = []

    def counted(current: Flask) -> Any:
        signers.append(request.path)
        return build(current)

    monkeypatch.setattr(interface, "get_signing_serializer", counted)
    ana, _ben = client.couple()
    bid = {"client_id": str(uuid.uuid4()), "kind": "connect"}
    assert client.post("/api/v1/bids", as_=ana, json=bid).status_code == 201
    assert client.get("/api/v1/me", as_=ana).status_code == 200
    assert signers == []

    browser = ops_client()
    assert browser.sign_in(operator).status_code == 302
    assert browser.get("/ops/").status_code == 200
    assert "/ops/" in signers


def test_a_form_sent_after_the_session_ran_out_leads_back_to_its_page_after_signing_in(
    app: Flask, client: ApiClient, signed_in: OpsClient, operator: OperatorAccount
) -> None:
    """An operator leaves an account's page open past OPS_SESSION_HOURS and presses an action:
    the sign-in it is sent to leads back to that page, never to the action's address, which
    only takes forms (a GET of it was a 405 page). The action itself waits to be pressed again."""
    ana = client.register("Ana")
    page = f"/ops/support/users/{ana.id}"
    token = signed_in.csrf(page)
    hours = app.extensions["reach.settings"].OPS_SESSION_HOURS
    clock.freeze(clock.now() + timedelta(hours=hours, minutes=1))
    for action in (f"{page}/disable", "/ops/logout"):
        sent = signed_in.post(
            action, data={"csrf_token": token}, headers={"Referer": signed_in.url(page)}
        )
        assert sent.status_code == 302
        login = sent.headers["Location"]
        assert login.startswith("/ops/login"), login
        form = signed_in.get(login)
        next_path = re.search(r'name="next" value="([^"]*)"', form.text)
        assert next_path is not None
        fields = {
            "email": operator.email,
            "password": operator.password,
            "csrf_token": signed_in.csrf(login),
            "next": next_path.group(1),
        }
        signed = signed_in.post("/ops/login", data=fields)
        assert signed.status_code == 302
        landed = signed_in.get(signed.headers["Location"])
        assert landed.status_code == 200, (action, signed.headers["Location"], landed.status_code)
        assert signed.headers["Location"] == page
        assert client.get("/api/v1/me", as_=client.fresh(ana)).status_code == 200  # not disabled
        clock.freeze(clock.now() + timedelta(hours=hours, minutes=1))


def test_while_the_database_is_away_pages_say_so_in_a_page(
    signed_in: OpsClient, operator: OperatorAccount
) -> None:
    """An operator opening /ops during an outage gets a page that says the database is away
    and when to try again, not the API's problem JSON as raw text; /ops/api/ keeps JSON."""
    away = LiveServer(create_app(make_settings("postgresql://reach@127.0.0.1:1/away"))).start()
    try:
        pages = [signed_in.get(f"{away.url}{path}") for path in PAGES]
        answers = [signed_in.get(f"{away.url}{path}") for path in JSON]
        browser = OpsClient(away.url)
        sign_in = browser.sign_in(operator)
    finally:
        away.stop()
    for page in [*pages, sign_in]:
        assert page.status_code == 503, page.text
        assert page.headers["Content-Type"].startswith("text/html"), page.headers
        assert int(page.headers["Retry-After"]) > 0
        assert "503 · Service Unavailable" in page.text
        assert "database" in page.text
    for answer in answers:
        assert answer.status_code == 503
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert int(answer.headers["Retry-After"]) == answer.json()["retry_after"]


def test_an_address_under_ops_that_is_no_page_answers_with_a_page(
    signed_in: OpsClient, ops_client: Callable[[], OpsClient]
) -> None:
    """A mistyped /ops address, or one of an action opened as a page, is the dashboard's own
    error page (with its navigation), not the API's problem JSON; /ops/api/ keeps JSON, and a
    stranger is sent to the sign-in whatever the address, learning nothing of what exists."""
    for path in ["/ops/nope", "/ops/support/users/nope", "/ops/logout", "/ops/push/jobs/1/retry"]:
        page = signed_in.get(path)
        assert page.status_code in (404, 405), path
        assert page.headers["Content-Type"].startswith("text/html"), path
        assert 'aria-label="Dashboard"' in page.text, path
        assert "openapi" not in page.text, path
    answer = signed_in.get("/ops/api/nope")
    assert (answer.status_code, answer.headers["Content-Type"]) == (404, "application/problem+json")
    stranger = ops_client()
    for path in ["/ops/nope", "/ops/logout"]:
        response = stranger.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/ops/login"), path


def test_pages_that_do_not_update_say_when_they_were_read(signed_in: OpsClient) -> None:
    """Push health, support and the audit log are read once: a tab left open must not pass
    old figures off as current. The overview updates live and says so on its own."""
    for path in PAGES[1:]:
        page = signed_in.get(path)
        assert page.status_code == 200, (path, page.text)
        stamp = re.search(r'id="as-of"[^>]*>[^<]*?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC', page.text)
        assert stamp, (path, page.text)
        read_at = datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        assert abs(read_at - clock.now()) < timedelta(minutes=1), (path, stamp[0])
    assert 'id="as-of"' not in signed_in.get("/ops/").text


def test_a_method_no_dashboard_address_takes_answers_with_the_dashboards_page(
    signed_in: OpsClient,
) -> None:
    """PUT, PATCH or DELETE on a page (a script, an extension, a mistaken tool) gets the
    dashboard's own error page under its security headers, naming what the address takes; an
    address that is no page stays a 404. /ops/api/ keeps the API's problem JSON."""
    for method, path, status in [
        ("PUT", "/ops/push", 405),
        ("DELETE", "/ops/", 405),
        ("PATCH", "/ops/support/search", 405),
        ("DELETE", "/ops/nope", 404),
    ]:
        page = signed_in.http.request(method, signed_in.url(path), timeout=10)
        assert page.status_code == status, (method, path)
        assert page.headers["Content-Type"].startswith("text/html"), (method, path)
        assert 'aria-label="Dashboard"' in page.text, (method, path)
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"], path
        if status == 405:
            assert method not in page.headers["Allow"], (method, path)
    assert signed_in.http.put(signed_in.url("/ops/push"), timeout=10).headers["Allow"] in (
        "GET, HEAD, OPTIONS",
        "HEAD, GET, OPTIONS",
    )
    answer = signed_in.http.delete(signed_in.url("/ops/api/push"), timeout=10)
    assert answer.status_code == 405
    assert answer.headers["Content-Type"] == "application/problem+json"


def test_signing_in_leads_back_to_the_page_asked_for_with_its_query(
    app: Flask, signed_in: OpsClient, operator: OperatorAccount
) -> None:
    """An operator on the audit log's older page whose session ran out signs in and lands on
    that page again, not on its first; one already signed in who follows a sign-in link with
    `next` goes there rather than to the overview."""
    hours = app.extensions["reach.settings"].OPS_SESSION_HOURS
    clock.freeze(clock.now() + timedelta(hours=hours, minutes=1))
    page = "/ops/audit?before=12"
    sent = signed_in.get(page)
    assert sent.status_code == 302
    form = signed_in.get(sent.headers["Location"])
    next_path = re.search(r'name="next" value="([^"]*)"', form.text)
    assert next_path is not None
    fields = {
        "email": operator.email,
        "password": operator.password,
        "csrf_token": signed_in.csrf("/ops/login"),
        "next": html.unescape(next_path.group(1)),
    }
    signed = signed_in.post("/ops/login", data=fields)
    assert signed.headers["Location"] == page
    again = signed_in.get("/ops/login?next=/ops/push%3Fbefore%3D3")
    assert (again.status_code, again.headers["Location"]) == (302, "/ops/push?before=3")


def test_signing_out_after_the_session_ran_out_says_it_is_signed_out(
    app: Flask, signed_in: OpsClient
) -> None:
    """Signing out is what an ended session already is: the sign-in page says so, rather than
    that the sign-out "was not done" and must be tried again after signing in."""
    token = signed_in.csrf("/ops/")
    hours = app.extensions["reach.settings"].OPS_SESSION_HOURS
    clock.freeze(clock.now() + timedelta(hours=hours, minutes=1))
    sent = signed_in.post("/ops/logout", data={"csrf_token": token})
    assert sent.status_code == 302
    page = signed_in.get(sent.headers["Location"])
    assert "You are signed out: your session had already ended." in page.text
    assert "not done" not in page.text
