"""The dashboard in headless Chromium: sign in, live overview, retry a push, disable an account."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError

from service.clock import clock
from service.dashboard import live
from service.extensions import db
from service.services import ops_accounts
from service.services.ops_audit import CommandLine
from service.worker.runner import Worker
from tests.dashboard.conftest import (
    OperatorAccount,
    live_figures,
    screenshot,
    sign_in_in_browser,
)
from tests.dashboard.helpers import add_device, dead_letter, send_bid
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until


def test_an_operator_signs_in_and_out(page: Any, operator: OperatorAccount) -> None:
    page.goto("/ops/")
    expect(page).to_have_url(re.compile(r"/ops/login\?next=/ops/$"))
    page.fill("input[name=email]", operator.email)
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator(".flash.error")).to_contain_text("wrong")
    screenshot(page, "01-login")
    sign_in_in_browser(page, operator)
    expect(page.locator(".signout .who")).to_have_text(operator.email)
    page.click(".signout button")
    expect(page.locator("h1")).to_have_text("Operators sign in")
    page.goto("/ops/push")
    expect(page.locator("h1")).to_have_text("Operators sign in")


def test_the_overview_updates_live_when_a_bid_is_sent_through_the_api(
    page: Any, operator: OperatorAccount, client: ApiClient, phone: Any
) -> None:
    sign_in_in_browser(page, operator)
    expect(page.locator("#live-status")).to_have_text("live")

    def figure(name: str) -> Any:
        return page.locator(f'[data-figure="{name}"]')

    before = {
        name: int(figure(name).inner_text())
        for name in (
            "bids.last_hour",
            "bids.last_day",
            "push.backlog_due",
            "response_time.answered",
        )
    }
    updates = int(page.locator("body").get_attribute("data-updates") or "0")
    ana, ben = client.couple("Ana", "Ben")
    ben_phone: Phone = phone(ben.access_token)
    bid = send_bid(client, ana)
    # No reload: the figures arrive over the /ops socket.
    expect(figure("bids.last_hour")).to_have_text(str(before["bids.last_hour"] + 1))
    expect(figure("bids.last_day")).to_have_text(str(before["bids.last_day"] + 1))
    expect(figure("push.backlog_due")).to_have_text(str(before["push.backlog_due"] + 1))
    last_bar = page.locator("#chart-bids rect.bar").last
    expect(last_bar).to_have_attribute("data-value", str(before["bids.last_hour"] + 1))
    # Each bar is the hour up to the next bar's start (the last one ends now): labelled with
    # its start to the minute, in UTC as the caption says.
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%H:%M")
    expect(last_bar).to_have_attribute("data-label", re.compile(r"^\d\d:\d\d$"))
    apart = abs(_minutes(last_bar.get_attribute("data-label")) - _minutes(hour_ago))
    assert min(apart, 24 * 60 - apart) <= 1
    expect(page.locator("figure:has(#chart-bids) figcaption")).to_contain_text("UTC")
    expect(figure("sockets.members")).not_to_have_text("0")
    assert int(page.locator("body").get_attribute("data-updates") or "0") > updates
    ben_phone.wait_for("bid.created")
    answer = {"client_id": str(uuid.uuid4()), "kind": "toward"}
    response = client.post(f"/api/v1/bids/{bid['id']}/responses", as_=ben, json=answer)
    assert response.status_code == 201, response.text
    answered = before["response_time.answered"] + 1
    expect(figure("response_time.answered")).to_have_text(str(answered))
    expect(figure("response_time.median_seconds")).not_to_have_text("—")
    screenshot(page, "02-overview")


def test_the_overviews_time_says_when_its_figures_were_made_to_people_and_to_machines(
    page: Any, operator: OperatorAccount
) -> None:
    """The `<time>` of the figures shown: its text and its `datetime` (what assistive
    technology and scripts read) name the same moment after every live update."""
    sign_in_in_browser(page, operator)
    updated = page.locator("#updated-at")
    served = updated.inner_text()
    expect(updated).not_to_have_text(served, timeout=10_000)  # figures made since
    text, at = page.eval_on_selector(
        "#updated-at", "node => [node.textContent, node.getAttribute('datetime')]"
    )
    moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    assert moment.strftime("%Y-%m-%d %H:%M:%S UTC") == text


def test_a_dead_lettered_push_is_retried_from_the_browser(
    page: Any,
    operator: OperatorAccount,
    client: ApiClient,
    fcm_worker: Worker,
    standin: FcmStandIn,
) -> None:
    ana, ben = client.couple("Ana", "Ben")
    add_device(client, ben, "ben-broken-phone")
    job_id = dead_letter(client, fcm_worker, standin, ana, "ben-broken-phone")
    sign_in_in_browser(page, operator)
    page.click("nav >> text=Push health")
    row = page.locator(f'#dead-letters tr[data-job="{job_id}"]')
    expect(row).to_contain_text("android: dead (INTERNAL)")
    expect(page.locator("#outcomes")).to_contain_text("INTERNAL")
    screenshot(page, "03-push-health-dead-letter")

    row.locator("button", has_text="Retry").click()
    expect(page.locator(".flash.ok")).to_have_text(f"Push job {job_id} is pending again.")
    expect(row).to_have_count(0)
    retried = page.locator(f'#retried tr[data-job="{job_id}"]')
    expect(retried.locator("[data-state]")).to_have_text("pending")

    assert fcm_worker.run_once().pushes == 1
    page.reload()
    expect(retried.locator("[data-state]")).to_have_text("done")
    expect(retried).to_contain_text("android: sent")
    assert [m["token"] for m in standin.messages()].count("ben-broken-phone") == 5
    screenshot(page, "04-push-health-retried")
    page.click("nav >> text=Audit log")
    expect(page.locator('#audit tr[data-action="push.retry"]')).to_contain_text(str(job_id))


def test_disabling_an_account_in_the_browser_refuses_its_next_api_call(
    page: Any, operator: OperatorAccount, client: ApiClient, phone: Any, app: Flask
) -> None:
    ana, _ben = client.couple("Ana", "Ben")
    device_id = add_device(client, ana, "ana-phone-token", "ios")
    ana_phone: Phone = phone(ana.access_token)
    sign_in_in_browser(page, operator)
    page.click("nav >> text=Support")
    page.fill("input[name=email]", ana.email)
    page.click("button:has-text('Find')")
    expect(page.locator("#account")).to_contain_text(ana.email)
    expect(page.locator("#account-state")).to_contain_text("active")
    expect(page.locator("#couple")).to_contain_text("paired since")
    expect(page.locator("#couple")).not_to_contain_text("Ben")

    device = page.locator(f'#devices tr[data-device="{device_id}"]')
    device.locator("button", has_text="Disable device").click()
    expect(device).to_contain_text("disabled: operator")
    listed = client.get("/api/v1/devices", as_=ana).json()["items"]
    assert [(d["active"], d["disabled_reason"]) for d in listed] == [(False, "operator")]

    assert client.get("/api/v1/me", as_=ana).status_code == 200
    page.click("button:has-text('Disable account')")
    expect(page.locator("#account-state")).to_contain_text("disabled")
    screenshot(page, "05-support-account-disabled")
    response = client.get("/api/v1/me", as_=ana)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    wait_until(
        lambda: not ana_phone.client.connected, what="the disabled account's socket to close"
    )
    login = {"email": ana.email, "password": ana.password}
    assert client.post("/api/v1/auth/login", json=login).status_code == 401

    page.click("button:has-text('Enable account')")
    expect(page.locator("#account-state")).to_contain_text("active")
    assert client.post("/api/v1/auth/login", json=login).status_code == 200
    page.click("nav >> text=Audit log")
    for action in ("support.lookup", "device.disable", "account.disable", "account.enable"):
        expect(page.locator(f'#audit tr[data-action="{action}"]').first).to_contain_text(
            operator.email
        )
    screenshot(page, "06-audit-log")


HOSTILE = '<img src=x onerror="window.__ran=1">'


def test_an_operator_whose_email_a_browser_field_would_refuse_signs_in(
    page: Any, app: Flask
) -> None:
    account = OperatorAccount(f"jürgen-{uuid.uuid4().hex[:6]}@reach.test")
    with app.app_context():
        ops_accounts.create_operator(
            db.session, account.email, account.password, by=CommandLine.here()
        )
    sign_in_in_browser(page, account)
    expect(page.locator(".signout .who")).to_have_text(account.email)


def test_support_finds_every_email_the_api_accepts_and_runs_none_of_its_text(
    page: Any, operator: OperatorAccount, client: ApiClient
) -> None:
    """The API accepts emails a browser's type=email field refuses (a local part with an
    accent, or quoted): support must still find them, and their text must stay text."""
    tag = uuid.uuid4().hex[:6]
    emails = [f"zoë-{tag}@example.test", f'"<img/src=x/onerror=window.__ran=1>{tag}"@example.test']
    people = []
    for email in emails:
        person = client.register(HOSTILE, email=email)
        people.append(person)
        device = {"platform": "web", "push_token": f"t-{uuid.uuid4().hex}", "app_version": HOSTILE}
        assert client.post("/api/v1/devices", as_=person, json=device).status_code == 201
    sign_in_in_browser(page, operator)
    for person in people:
        page.goto("/ops/support")
        page.fill("input[name=email]", person.email)
        page.click("button:has-text('Find')")
        expect(page.locator("#account")).to_contain_text(person.email)
        expect(page.locator("#devices")).to_contain_text(HOSTILE)
    page.goto("/ops/support")
    page.fill("input[name=email]", HOSTILE)
    page.click("button:has-text('Find')")
    expect(page.locator(".flash.error")).to_contain_text(f"No account has the email {HOSTILE}")
    page.click("nav >> text=Audit log")
    lookups = page.locator('#audit tr[data-action="support.lookup"]', has_text=operator.email)
    expect(lookups).to_have_count(3)
    assert page.evaluate("window.__ran") is None
    assert page.locator("#devices img, .flash img, #account img").count() == 0


def test_the_overview_names_the_process_whose_figures_it_shows_live(
    page: Any, operator: OperatorAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a balancer the page comes from one process and its socket from another (nginx
    hashes /socket.io/ by address, the rest goes to the least busy): the per-process figures
    arriving live are the socket's process's, and the page must name that one."""
    sign_in_in_browser(page, operator)
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator("#sockets-scope")).to_contain_text(live.PROCESS)
    monkeypatch.setattr(live, "PROCESS", "api-2.example:4242")
    expect(page.locator("#sockets-scope")).to_contain_text("(api-2.example:4242)")


def test_an_overview_whose_session_ended_says_so_instead_of_reconnecting(
    page: Any, operator: OperatorAccount, app: Flask
) -> None:
    """The server closes the socket of a session that ended (and Socket.IO clients never
    reconnect after that): the page must not claim to be reconnecting while its figures stop."""
    sign_in_in_browser(page, operator)
    expect(page.locator("#live-status")).to_have_text("live")
    hours = app.extensions["reach.settings"].OPS_SESSION_HOURS
    clock.freeze(clock.now() + timedelta(hours=hours, minutes=1))
    expect(page.locator("#live-status")).to_contain_text("signed out")
    expect(page.locator("#live-status")).to_have_class(re.compile(r"\boffline\b"))


def test_without_javascript_the_overview_says_it_is_read_once_and_the_forms_still_work(
    browser: Any, live_server: LiveServer, operator: OperatorAccount, client: ApiClient
) -> None:
    """With scripts blocked nothing connects: the overview must not say "connecting…" for
    ever, but that it was read once, as the other pages do; every form works without them."""
    ana = client.register("Ana")
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        sign_in_in_browser(page, operator)
        status = page.locator("#live-status")
        expect(status).to_have_text("not live: reload for newer figures")
        expect(status).to_have_class(re.compile(r"\boffline\b"))
        page.goto("/ops/support")
        page.fill("input[name=email]", ana.email)
        page.click("button:has-text('Find')")
        page.click("button:has-text('Disable account')")
        expect(page.locator("#account-state")).to_contain_text("disabled")
        page.click(".signout button")
        expect(page.locator("h1")).to_have_text("Operators sign in")
    finally:
        context.close()
    assert live_figures(live_server.app).watchers == 0


def test_an_overview_whose_figures_stop_arriving_says_they_are_stale(
    page: Any, operator: OperatorAccount, live_server: LiveServer
) -> None:
    """A path that stops forwarding (a NAT entry dropped, a balancer hung) keeps the socket
    open for Engine.IO's ping timeout, 45 s, while no figure arrives: the page must not keep
    saying "live" over figures that have stopped."""
    sign_in_in_browser(page, operator)
    path = TcpProxy("127.0.0.1", live_server.port).up()
    try:
        page.goto(f"http://127.0.0.1:{path.port}/ops/")
        expect(page.locator("#live-status")).to_have_text("live")
        updates = int(page.locator("body").get_attribute("data-updates") or "0")
        wait_until(
            lambda: int(page.locator("body").get_attribute("data-updates") or "0") > updates,
            what="a live update through the path",
        )
        shown = page.locator("#updated-at").inner_text()
        path.black_hole()
        expect(page.locator("#live-status")).to_contain_text("stale", timeout=15_000)
        expect(page.locator("#live-status")).to_contain_text(shown)
        expect(page.locator("#live-status")).to_have_class(re.compile(r"\boffline\b"))
        screenshot(page, "07-overview-stale")
    finally:
        path.down()


def test_an_overview_saying_its_figures_are_failing_says_stale_once_nothing_arrives(
    page: Any,
    operator: OperatorAccount,
    live_server: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The "failing" status is news sent each period: once even that stops arriving (the path
    went silent), the page must say so rather than keep the last failure as current."""
    sign_in_in_browser(page, operator)
    path = TcpProxy("127.0.0.1", live_server.port).up()
    try:
        page.goto(f"http://127.0.0.1:{path.port}/ops/")
        expect(page.locator("#live-status")).to_have_text("live")

        def unavailable(_sessions: set[str]) -> Any:
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))

        monkeypatch.setattr(live_figures(live_server.app), "compute", unavailable)
        expect(page.locator("#live-status")).to_contain_text("database unavailable")
        path.black_hole()
        expect(page.locator("#live-status")).to_contain_text("stale", timeout=15_000)
        expect(page.locator("#live-status")).to_have_class(re.compile(r"\boffline\b"))
    finally:
        path.down()


@pytest.mark.postgres
@pytest.mark.committed
def test_an_overview_rides_out_a_database_outage_and_a_socket_dropped_meanwhile(
    browser: Any,
    database_url: str,
    server_with: Callable[..., LiveServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While PostgreSQL is away no figure can be computed: the page says so (not "live" over
    old figures). A socket that reconnects meanwhile is refused with a 503, which Socket.IO
    clients never retry by themselves: the page must not send the operator to sign in again,
    and must be live again by itself once the database is back."""
    at = make_url(database_url)
    database = TcpProxy(at.host or "127.0.0.1", at.port or 5432).up()
    proxied = at.set(host="127.0.0.1", port=database.port).render_as_string(hide_password=False)
    server = server_with(DATABASE_URL=proxied)
    path = TcpProxy("127.0.0.1", server.port).up()
    account = OperatorAccount(f"ops-{uuid.uuid4().hex[:8]}@reach.test")
    with server.app.app_context():
        ops_accounts.create_operator(
            db.session, account.email, account.password, by=CommandLine.here()
        )
    context = browser.new_context(base_url=f"http://127.0.0.1:{path.port}")
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        status = page.locator("#live-status")
        sign_in_in_browser(page, account)
        expect(status).to_have_text("live")

        database.down()
        expect(status).to_contain_text("database unavailable", timeout=15_000)
        expect(status).to_have_class(re.compile(r"\boffline\b"))
        screenshot(page, "08-overview-database-unavailable")

        path.down()  # the socket drops too, and reconnects while the database is still away
        with caplog.at_level(logging.WARNING, logger="reach.realtime"):
            path.up()
            wait_until(
                lambda: any(
                    r.__dict__.get("namespace") == "/ops" and r.levelno == logging.WARNING
                    for r in caplog.records
                ),
                timeout=20,
                what="the reconnecting /ops socket to be refused",
            )
        expect(status).not_to_contain_text("sign in")
        database.up()
        expect(status).to_have_text("live", timeout=40_000)
        updates = int(page.locator("body").get_attribute("data-updates") or "0")
        wait_until(
            lambda: int(page.locator("body").get_attribute("data-updates") or "0") > updates,
            timeout=20,
            what="figures again after the outage",
        )
    finally:
        context.close()
        path.down()
        assert live_figures(server.app).wait_idle(15), "the /ops figures loop did not stop"
        database.down()


def test_an_action_whose_session_ran_out_comes_back_to_its_page_after_signing_in(
    page: Any, operator: OperatorAccount, client: ApiClient, app: Flask
) -> None:
    """A support page left open past OPS_SESSION_HOURS: its button leads to the sign-in, and
    signing in goes back to the page the button was on (the action's own address takes only
    POSTs: going there would be a 405), without doing the action behind the operator's back."""
    ana = client.register("Ana")
    sign_in_in_browser(page, operator)
    page.goto("/ops/support")
    page.fill("input[name=email]", ana.email)
    page.click("button:has-text('Find')")
    expect(page.locator("#account-state")).to_contain_text("active")
    account_page = page.url
    hours = app.extensions["reach.settings"].OPS_SESSION_HOURS
    clock.freeze(clock.now() + timedelta(hours=hours, minutes=1))
    page.click("button:has-text('Disable account')")
    expect(page.locator("h1")).to_have_text("Operators sign in")
    expect(page.locator(".flash.error")).to_contain_text("session had ended, so that was not done")
    page.fill("input[name=email]", operator.email)
    page.fill("input[name=password]", operator.password)
    page.click("button[type=submit]")
    expect(page.locator("#account")).to_contain_text(ana.email)
    assert page.url == account_page
    expect(page.locator("#account-state")).to_contain_text("active")


def _minutes(hh_mm: str | None) -> int:
    """Minutes since midnight of an "HH:MM" label."""
    hours, minutes = (int(part) for part in (hh_mm or "").split(":"))
    return hours * 60 + minutes
