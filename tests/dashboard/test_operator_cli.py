"""`reach create-operator EMAIL [--password P]`: operators are made on the command line only."""

from __future__ import annotations

import getpass
import socket
import sqlite3
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from service import create_app, migrate
from service.cli import main
from service.security.passwords import verify_password
from tests.dashboard.conftest import OperatorAccount, OpsClient
from tests.support.client import ApiClient, Person
from tests.support.redis_needed import require_redis
from tests.support.server import LiveServer
from tests.support.settings import make_settings


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'operators.sqlite3'}"
    migrate.upgrade(url)
    return {
        "DATABASE_URL": url,
        "SECRET_KEY": "cli-test-secret-key-0123456789abcdef",
        "WORKER_MODE": "separate",
    }


def operators(env: dict[str, str]) -> dict[str, str]:
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT email, password_hash FROM operators").fetchall())


def test_the_password_can_be_given_as_an_option(env: dict[str, str]) -> None:
    password = "a long operator password"
    result = CliRunner().invoke(
        main, ["create-operator", "Ops@Example.test", "--password", password], env=env
    )
    assert result.exit_code == 0, result.output
    assert "operator ops@example.test created" in result.output
    stored = operators(env)
    assert list(stored) == ["ops@example.test"]
    assert verify_password(stored["ops@example.test"], password)
    again = CliRunner().invoke(
        main, ["create-operator", "ops@example.test", "--password", password], env=env
    )
    assert again.exit_code == 1
    assert "exists already" in again.output


def test_without_the_option_it_asks_twice_without_echo(env: dict[str, str]) -> None:
    answers = "first try, long\nmismatch, long\nthe real password\nthe real password\n"
    result = CliRunner().invoke(
        main, ["create-operator", "ops2@example.test"], input=answers, env=env
    )
    assert result.exit_code == 0, result.output
    assert "Repeat for confirmation" in result.output
    assert "the real password" not in result.output
    assert verify_password(operators(env)["ops2@example.test"], "the real password")


def test_a_short_password_is_refused(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        main, ["create-operator", "ops3@example.test", "--password", "short"], env=env
    )
    assert result.exit_code == 1
    assert "at least 12 characters" in result.output
    assert operators(env) == {}


def test_help_lists_the_operator_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    for command in ("create-operator", "disable-operator", "enable-operator"):
        assert command in result.output
    assert "set-operator-password" in result.output


@pytest.fixture
def dashboard(env: dict[str, str]) -> Iterator[LiveServer]:
    """The service on the commands' database, serving /ops."""
    server = LiveServer(create_app(make_settings(env["DATABASE_URL"]))).start()
    yield server
    server.stop()


def signed_in_browser(server: LiveServer, account: OperatorAccount) -> OpsClient:
    browser = OpsClient(server.url)
    assert browser.sign_in(account).status_code == 302
    assert browser.get("/ops/").status_code == 200
    return browser


def refused(browser: OpsClient) -> bool:
    answer = browser.get("/ops/")
    return answer.status_code == 302 and answer.headers["Location"].startswith("/ops/login")


def test_an_operator_who_leaves_is_disabled_and_signed_out_everywhere(
    env: dict[str, str], dashboard: LiveServer
) -> None:
    """Someone who leaves the team, or whose laptop is lost: their open dashboards stop working
    at once and their password signs in no more, without touching the database by hand."""
    account = OperatorAccount("leaver@example.test", "the leaver's password")
    stays = OperatorAccount("stays@example.test", "the other one's password")
    for who in (account, stays):
        made = CliRunner().invoke(
            main, ["create-operator", who.email, "--password", who.password], env=env
        )
        assert made.exit_code == 0, made.output
    laptop, phone = signed_in_browser(dashboard, account), signed_in_browser(dashboard, account)
    colleague = signed_in_browser(dashboard, stays)

    result = CliRunner().invoke(main, ["disable-operator", "Leaver@Example.test"], env=env)
    assert result.exit_code == 0, result.output
    assert "operator leaver@example.test disabled; 2 signed-in sessions ended" in result.output
    assert refused(laptop) and refused(phone)
    assert OpsClient(dashboard.url).sign_in(account).status_code == 401
    assert colleague.get("/ops/").status_code == 200
    again = CliRunner().invoke(main, ["disable-operator", account.email], env=env)
    assert again.exit_code == 1 and "disabled already" in again.output

    # Enabled again (a mistake, or back from leave): a new sign-in, the old sessions stay over.
    result = CliRunner().invoke(main, ["enable-operator", account.email], env=env)
    assert result.exit_code == 0, result.output
    assert refused(laptop)
    assert signed_in_browser(dashboard, account)
    unknown = CliRunner().invoke(main, ["disable-operator", "nobody@example.test"], env=env)
    assert unknown.exit_code == 1 and "No operator nobody@example.test" in unknown.output


def test_a_new_password_ends_every_session_of_the_old_one(
    env: dict[str, str], dashboard: LiveServer
) -> None:
    """A password that leaked is changed: whoever signed in with it is signed out."""
    account = OperatorAccount("ops@example.test", "the password that leaked")
    made = CliRunner().invoke(
        main, ["create-operator", account.email, "--password", account.password], env=env
    )
    assert made.exit_code == 0, made.output
    browser = signed_in_browser(dashboard, account)
    short = CliRunner().invoke(
        main, ["set-operator-password", account.email, "--password", "short"], env=env
    )
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    assert browser.get("/ops/").status_code == 200

    answers = "a brand new password\na brand new password\n"
    result = CliRunner().invoke(
        main, ["set-operator-password", account.email], input=answers, env=env
    )
    assert result.exit_code == 0, result.output
    assert "a brand new password" not in result.output
    assert "1 signed-in session ended" in result.output
    assert refused(browser)
    assert OpsClient(dashboard.url).sign_in(account).status_code == 401
    assert signed_in_browser(dashboard, OperatorAccount(account.email, "a brand new password"))


def test_an_operator_password_signs_in_however_its_accents_were_typed(
    env: dict[str, str], dashboard: LiveServer
) -> None:
    """Operator passwords are hashed in NFKC form too (NIST SP 800-63B), and one hashed as typed
    before that is hashed again at its next sign-in; the 12-character rule counts characters
    once normalised (11 accented letters typed with combining accents are 22 code points)."""
    composed = "cr\u00e8me br\u00fbl\u00e9e \u00e0 deux"
    decomposed = unicodedata.normalize("NFD", composed)
    made = CliRunner().invoke(
        main, ["create-operator", "ops@example.test", "--password", decomposed], env=env
    )
    assert made.exit_code == 0, made.output
    assert signed_in_browser(dashboard, OperatorAccount("ops@example.test", composed))

    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    legacy = PasswordHasher().hash(decomposed)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE operators SET password_hash = ?", (legacy,))
    assert (
        OpsClient(dashboard.url).sign_in(OperatorAccount("ops@example.test", composed)).status_code
        == 401
    )
    assert signed_in_browser(dashboard, OperatorAccount("ops@example.test", decomposed))
    assert operators(env)["ops@example.test"] != legacy
    assert signed_in_browser(dashboard, OperatorAccount("ops@example.test", composed))

    short = unicodedata.normalize("NFD", "\u00e9" * 11)
    refused = CliRunner().invoke(
        main, ["create-operator", "ops2@example.test", "--password", short], env=env
    )
    assert refused.exit_code == 1 and "at least 12 characters" in refused.output


def test_an_operators_email_is_one_however_a_keyboard_typed_it(env: dict[str, str]) -> None:
    """As members' addresses: full-width letters (a Chinese or Japanese keyboard) are the ASCII
    ones; an operator made before, stored as typed, is still found by its own form."""
    password = "a long operator password"
    made = CliRunner().invoke(
        main, ["create-operator", f"{wide('OPS')}@Example.test", "--password", password], env=env
    )
    assert made.exit_code == 0, made.output
    assert list(operators(env)) == ["ops@example.test"]
    again = CliRunner().invoke(
        main, ["create-operator", "ops@example.test", "--password", password], env=env
    )
    assert "exists already" in again.output
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # stored before addresses were read in NFKC
        conn.execute(
            "INSERT INTO operators (id, email, password_hash, created_at) "
            "VALUES ('00000000000040008000000000000001', ?, ?, "
            "'2026-01-01 00:00:00')",
            (f"{wide('old')}@example.test", operators(env)["ops@example.test"]),
        )
    for email in (f"{wide('OLD')}@example.test", f"ops@{wide('example')}.test"):
        disabled = CliRunner().invoke(main, ["disable-operator", email], env=env)
        assert disabled.exit_code == 0, (email, disabled.output)


def test_an_operators_email_domain_is_one_in_unicode_or_punycode(env: dict[str, str]) -> None:
    """ "bücher.example" and "xn--bcher-kva.example" are one mailbox: one operator, stored with
    the domain in Unicode; one stored before in punycode is found typed either way."""
    password = "a long operator password"
    made = CliRunner().invoke(
        main, ["create-operator", "ops@xn--bcher-kva.example", "--password", password], env=env
    )
    assert made.exit_code == 0, made.output
    assert list(operators(env)) == ["ops@b\u00fccher.example"]
    again = CliRunner().invoke(
        main, ["create-operator", "ops@b\u00fccher.example", "--password", password], env=env
    )
    assert "exists already" in again.output
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # stored before domains were kept in Unicode
        conn.execute(
            "INSERT INTO operators (id, email, password_hash, created_at) "
            "VALUES ('00000000000040008000000000000002', ?, ?, '2026-01-01 00:00:00')",
            ("old@xn--mnchen-3ya.test", operators(env)["ops@b\u00fccher.example"]),
        )
    disabled = CliRunner().invoke(main, ["disable-operator", "old@m\u00fcnchen.test"], env=env)
    assert disabled.exit_code == 0, disabled.output


def wide(text: str) -> str:
    """`text` as a keyboard in full-width mode types it (U+FF01-FF5E for ASCII's 0x21-0x7E)."""
    return "".join(chr(ord(letter) + 0xFEE0) for letter in text)


def test_each_operator_command_is_in_the_audit_log_under_who_ran_it(
    env: dict[str, str], dashboard: LiveServer
) -> None:
    """Who made, disabled, enabled or re-keyed an operator account was in no log: the audit log
    shows each command, by the shell's user and host (no operator account runs them), and a
    refused command leaves nothing there."""
    account = OperatorAccount("ops@example.test", "the first long password")
    commands = [
        ["create-operator", account.email, "--password", account.password],
        ["disable-operator", account.email],
        ["enable-operator", account.email],
        ["set-operator-password", account.email, "--password", "the second long password"],
    ]
    for command in commands:
        result = CliRunner().invoke(main, command, env=env)
        assert result.exit_code == 0, result.output
    refused = CliRunner().invoke(main, ["enable-operator", account.email], env=env)
    assert refused.exit_code == 1, refused.output

    browser = signed_in_browser(
        dashboard, OperatorAccount(account.email, "the second long password")
    )
    entries = browser.get("/ops/api/audit").json()["items"]
    by_cli = [e for e in entries if e["action"] != "operator.sign_in"]
    assert [e["action"] for e in reversed(by_cli)] == [
        "operator.create",
        "operator.disable",
        "operator.enable",
        "operator.set_password",
    ]
    here = f"command line: {getpass.getuser()}@{socket.gethostname()}"
    assert {e["operator"] for e in by_cli} == {here}
    assert {(e["target_type"], e["detail"]["email"]) for e in by_cli} == {
        ("operator", account.email)
    }
    assert "the second long password" not in str(entries)
    page = browser.get("/ops/audit").text
    assert here in page and "operator.set_password" in page


@pytest.fixture
def limited(env: dict[str, str]) -> Iterator[tuple[dict[str, str], LiveServer]]:
    """The service on the commands' database, its rate limits in Redis (as in production),
    with two wrong sign-ins a minute per email and two bids a minute per account."""
    env = {**env, "REDIS_URL": require_redis("rate limits shared with the command line")}
    settings = make_settings(
        env["DATABASE_URL"],
        SECRET_KEY=env["SECRET_KEY"],  # the command finds an email's keyed limit by it
        REDIS_URL=env["REDIS_URL"],
        RATELIMIT_AUTH_EMAIL="2 per minute",
        RATELIMIT_BIDS="2 per minute",
    )
    server = LiveServer(create_app(settings)).start()
    yield env, server
    server.stop()


def send_bid(client: ApiClient, who: Person) -> int:
    body = {"client_id": str(uuid.uuid4()), "kind": "connect"}
    return client.post("/api/v1/bids", as_=who, json=body).status_code


def test_an_operator_clears_a_members_rate_limits_and_the_audit_log_says_so(
    limited: tuple[dict[str, str], LiveServer],
) -> None:
    """`reach limiter clear` (flask-limiter's) reset limits with no trace of who did it, and
    needed the limit's key, an email's keyed digest for a sign-in. `reach clear-rate-limits
    --email` clears every limit counted for the member the address names, and the audit log
    shows who ran it, when, and what it cleared (never the address itself)."""
    env, server = limited
    client = ApiClient(server.url)
    ana, ben = client.couple()
    wrong = {"email": ana.email, "password": "not Ana's password"}
    assert [client.post("/api/v1/auth/login", json=wrong).status_code for _ in range(3)] == [
        401,
        401,
        429,
    ]
    assert [send_bid(client, ana) for _ in range(3)] == [201, 201, 429]
    assert [send_bid(client, ben) for _ in range(3)] == [201, 201, 429]

    flasks = CliRunner().invoke(main, ["limiter", "clear", "--key", f"user:{ana.id}"], env=env)
    assert flasks.exit_code == 1, flasks.output
    assert "reach clear-rate-limits" in flasks.output

    result = CliRunner().invoke(main, ["clear-rate-limits", "--email", ana.email.upper()], env=env)
    assert result.exit_code == 0, result.output
    assert f"rate limits of account {ana.id} cleared" in result.output, result.output
    assert client.post("/api/v1/auth/login", json=wrong).status_code == 401
    assert send_bid(client, ana) == 201
    assert send_bid(client, ben) == 429  # only Ana's limits

    account = OperatorAccount("ops@example.test", "the operator's long password")
    made = CliRunner().invoke(
        main, ["create-operator", account.email, "--password", account.password], env=env
    )
    assert made.exit_code == 0, made.output
    entries = signed_in_browser(server, account).get("/ops/api/audit").json()["items"]
    (cleared,) = [e for e in entries if e["action"] == "rate_limits.clear"]
    assert cleared["operator"] == f"command line: {getpass.getuser()}@{socket.gethostname()}"
    assert (cleared["target_type"], cleared["target_id"]) == ("user", ana.id)
    assert cleared["detail"]["counters"] >= 2, cleared
    assert f"user:{ana.id}" in cleared["detail"]["keys"], cleared
    assert ana.email not in str(cleared) and ana.email.split("@")[0] not in str(cleared)


def test_clearing_an_addresss_rate_limits_is_audited_too(
    limited: tuple[dict[str, str], LiveServer],
) -> None:
    """A shared office address held at its sign-in limit: `--address` clears its limits."""
    env, server = limited
    address = "198.51.100.7"
    result = CliRunner().invoke(main, ["clear-rate-limits", "--address", address], env=env)
    assert result.exit_code == 0, result.output
    assert f"rate limits of address {address} cleared" in result.output
    nothing = CliRunner().invoke(main, ["clear-rate-limits"], env=env)
    assert nothing.exit_code == 2 and "--email or --address" in nothing.output
    bad = CliRunner().invoke(main, ["clear-rate-limits", "--address", "office"], env=env)
    assert bad.exit_code == 2 and "not an IP address" in bad.output
    without_redis = {key: value for key, value in env.items() if key != "REDIS_URL"}
    told = CliRunner().invoke(
        main, ["clear-rate-limits", "--address", address], env={**without_redis, "REDIS_URL": ""}
    )
    assert told.exit_code == 1 and "restarting it clears them" in told.output, told.output
    away = {**env, "REDIS_URL": "redis://:hunter2-pw@127.0.0.1:1/4", "REDIS_TIMEOUT_MS": "200"}
    told = CliRunner().invoke(main, ["clear-rate-limits", "--address", address], env=away)
    assert told.exit_code == 1, told.output
    assert (
        "cannot reach Redis at 127.0.0.1:1" in told.output and "Nothing was cleared" in told.output
    )
    assert "hunter2-pw" not in told.output

    account = OperatorAccount("ops@example.test", "the operator's long password")
    CliRunner().invoke(
        main, ["create-operator", account.email, "--password", account.password], env=env
    )
    entries = signed_in_browser(server, account).get("/ops/api/audit").json()["items"]
    cleared = [e for e in entries if e["action"] == "rate_limits.clear"]
    assert [(e["target_type"], e["target_id"]) for e in cleared] == [("address", address)]
