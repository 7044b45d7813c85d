"""Fixtures for /ops: an operator, signed-in HTTP clients, headless Chromium, the FCM stand-in."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from service.dashboard.live import LiveFigures
from service.extensions import db
from service.push.fcm import FcmBackend
from service.services import ops_accounts
from service.services.ops_audit import CommandLine
from service.worker.dispatch import Dispatcher, RetryPolicy
from service.worker.runner import Worker
from tests.support.fcm_standin import FcmStandIn
from tests.support.server import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
OPERATOR_PASSWORD = "operator password, long enough"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class OperatorAccount:
    email: str
    password: str = OPERATOR_PASSWORD


@pytest.fixture
def operator(app: Flask) -> OperatorAccount:
    """An operator account in the test's transaction."""
    account = OperatorAccount(f"ops-{os.urandom(4).hex()}@reach.test")
    with app.app_context():
        ops_accounts.create_operator(
            db.session, account.email, account.password, by=CommandLine.here()
        )
    return account


@dataclass
class OpsClient:
    """A browser-like HTTP client of /ops: keeps the cookie, reads CSRF tokens from forms."""

    base_url: str
    http: requests.Session = field(default_factory=requests.Session)

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return self.http.get(self.url(path), timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return self.http.post(self.url(path), timeout=10, **kwargs)

    def csrf(self, page: str = "/ops/") -> str:
        found = CSRF_FIELD.search(self.get(page).text)
        assert found, f"no CSRF token on {page}"
        return found.group(1)

    def sign_in(self, account: OperatorAccount) -> requests.Response:
        token = self.csrf("/ops/login")
        form = {"email": account.email, "password": account.password, "csrf_token": token}
        return self.post("/ops/login", data=form)

    @property
    def cookie(self) -> str | None:
        return self.http.cookies.get("reach_ops")


@pytest.fixture
def ops_client(live_server: LiveServer) -> Iterator[Callable[[], OpsClient]]:
    made: list[OpsClient] = []

    def make() -> OpsClient:
        made.append(OpsClient(live_server.url))
        return made[-1]

    yield make
    for client in made:
        client.http.close()


@pytest.fixture
def signed_in(ops_client: Callable[[], OpsClient], operator: OperatorAccount) -> OpsClient:
    client = ops_client()
    response = client.sign_in(operator)
    assert response.status_code == 302, response.text
    return client


def live_figures(app: Flask) -> LiveFigures:
    return app.extensions["reach.ops_live"]  # type: ignore[no-any-return]


@pytest.fixture
def ops_quiet(app: Flask) -> Iterator[None]:
    """After the test, wait until nobody watches the overview, before the rollback."""
    yield
    assert live_figures(app).wait_idle(15), "the /ops figures loop did not stop"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (never a downloaded browser).

    Module-scoped: Playwright's sync API keeps an asyncio loop running in the main thread
    while it is open, which other tests' `asyncio.run()` (firebase-admin) cannot share.
    """
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("REQUIRE_BROWSER", "1") == "1":
            pytest.fail(message + " (or set REQUIRE_BROWSER=0 to skip browser tests)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, live_server: LiveServer, ops_quiet: None) -> Iterator[Any]:
    """A fresh browser context per test; every dialog (confirm) is accepted."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    yield tab
    context.close()


def sign_in_in_browser(page: Any, account: OperatorAccount) -> None:
    from playwright.sync_api import expect

    page.goto("/ops/login")
    page.fill("input[name=email]", account.email)
    page.fill("input[name=password]", account.password)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def standin() -> Iterator[FcmStandIn]:
    server = FcmStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def fcm_worker(app: Flask, standin: FcmStandIn, tmp_path: Path) -> Iterator[Worker]:
    """The real worker sending through firebase-admin to the stand-in; gives up after 4 tries."""
    credentials = standin.write_credentials(tmp_path / "service-account.json")
    backend = FcmBackend(str(credentials), standin.url, max_concurrency=4, timeout_seconds=5)
    policy = RetryPolicy(base_seconds=2.0, max_seconds=60.0, max_attempts=4)
    yield Worker(app, name="ops-test-worker", dispatcher=Dispatcher(backend, policy))
    backend.close()
