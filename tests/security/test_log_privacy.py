"""Logs keep no secrets and no partner's words.

A realistic flow runs against a server at LOG_LEVEL=DEBUG with the log push backend and the
worker: sign-up, sign-in (also a wrong password), refresh and its reuse, a password change
(also a wrong current password and a new one too short), pairing, devices with push tokens,
bids with notes over REST and the socket, responses, a repair conversation with messages over
REST and the socket, check-ins, pushes, sync, export, account deletion, signing out
everywhere. Every log record of every logger in the process is captured (and stdout/stderr
besides); none may contain a password or its hash, an access or refresh token, a push token,
an invite code, a display name, a bid or response note, a repair topic or message text.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from service.clock import clock
from service.extensions import db
from service.logs import JsonFormatter
from service.models import User
from tests.dashboard.conftest import OperatorAccount, OpsClient
from tests.security.conftest import marker
from tests.support import repairs as repair_helpers
from tests.support.client import ApiClient, Person
from tests.support.phones import Phone
from tests.support.server import LiveServer

# Client-side libraries of the test itself (requests, the phones' Socket.IO clients).
NOT_THE_SERVICE = ("urllib3", "socketio.client", "engineio.client", "websocket", "hypothesis")
# These print request payloads (engineio: every packet, the connect auth token included;
# SQLAlchemy: statement parameters) once they log at INFO: they must stay quiet.
PAYLOAD_LOGGERS = ("engineio.server", "socketio.server", "sqlalchemy.engine", "sqlalchemy.pool")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.formatter_ = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[tuple[str, str]]:
        """Each record as the service's formatter writes it, plus its raw arguments."""
        out = []
        for record in self.records:
            if record.name.startswith(NOT_THE_SERVICE):
                continue
            raw = f"{record.msg!r} {record.args!r} {record.__dict__!r}"
            out.append((record.name, self.formatter_.format(record) + raw))
        return out


@pytest.fixture
def every_log_record() -> Iterator[Capture]:
    """A handler on the root logger and on every logger that does not propagate to it."""
    capture = Capture()
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in logging.Logger.manager.loggerDict]
    detached = [lg for lg in loggers if isinstance(lg, logging.Logger) and not lg.propagate]
    levels = {lg.name: lg.level for lg in loggers if isinstance(lg, logging.Logger)}
    root_level = root.level
    root.addHandler(capture)
    for lg in detached:
        lg.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for lg in detached:
            lg.removeHandler(capture)
        root.setLevel(root_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def the_service_at_debug(server_with: Callable[..., LiveServer]) -> LiveServer:
    server = server_with(LOG_LEVEL="DEBUG", PUSH_BACKEND="log")
    logging.getLogger().setLevel(logging.DEBUG)
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("reach"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    return server


def test_no_secret_or_partners_word_reaches_the_logs(
    server_with: Callable[..., LiveServer],
    every_log_record: Capture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from service.worker.runner import Worker

    server = the_service_at_debug(server_with)
    for name in PAYLOAD_LOGGERS:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    client = ApiClient(server.url)
    secrets: dict[str, str] = {}

    def secret(label: str) -> str:
        secrets[label] = marker(label)
        return secrets[label]

    def keep_tokens(label: str, body: dict[str, Any]) -> dict[str, Any]:
        secrets[f"{label} access token"] = body["access_token"]
        secrets[f"{label} refresh token"] = body["refresh_token"]
        return body

    def register(name: str) -> Person:
        email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.test"
        password = secret(f"{name} password")
        display_name = secret(name)  # the partner's push titles name it
        body = {"email": email, "password": password, "display_name": display_name}
        body["timezone"] = "UTC"
        response = client.post("/api/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        pair = keep_tokens(f"{name} sign-up", response.json())
        return Person(email, password, pair["user"], pair["access_token"], pair["refresh_token"])

    # --- accounts and sessions ---------------------------------------------------------
    ana, ben = register("Ana"), register("Ben")
    wrong = {"email": ana.email, "password": secret("wrong password")}
    assert client.post("/api/v1/auth/login", json=wrong).status_code == 401
    signed_in = client.post(
        "/api/v1/auth/login", json={"email": ana.email, "password": ana.password}
    )
    keep_tokens("Ana sign-in", signed_in.json())
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    ana.access_token = keep_tokens("Ana refresh", rotated.json())["access_token"]
    clock.freeze(clock.now() + timedelta(seconds=30))  # too late for a retry of a lost answer
    reused = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert reused.status_code == 401  # the reuse revokes that session: sign in again
    ana.access_token = client.fresh(ana).access_token
    secrets["Ana fresh access token"] = ana.access_token
    bad_token = {"Authorization": f"Bearer {secret('forged token')}"}
    assert client.get("/api/v1/me", headers=bad_token).status_code == 401

    # --- a new password: a wrong current one, one too short, then the change --------------
    def password_hash() -> str:
        with server.app.app_context():
            stored = db.session.scalar(select(User.password_hash).where(User.id == ana_id))
            db.session.rollback()
        assert stored is not None
        return stored

    ana_id = uuid.UUID(ana.id)
    secrets["Ana's old password hash"] = password_hash()
    secrets["too short a password"] = uuid.uuid4().hex[:9]
    for current, new, status in (
        (secret("wrong current password"), secret("unused new password"), 422),
        (ana.password, secrets["too short a password"], 422),
        (ana.password, secret("Ana new password"), 204),
    ):
        body = {"current_password": current, "new_password": new}
        changed = client.post("/api/v1/me/password", as_=ana, json=body)
        assert changed.status_code == status, changed.text
    ana.password = secrets["Ana new password"]
    secrets["Ana's new password hash"] = password_hash()

    # --- pairing and devices -------------------------------------------------------------
    invite = client.post("/api/v1/couple/invites", as_=ana).json()
    secrets["invite code"] = invite["code"]
    joined = client.post("/api/v1/couple/join", as_=ben, json={"code": invite["code"].lower()})
    assert joined.status_code == 201
    wrong_code = client.post("/api/v1/couple/join", as_=ana, json={"code": "ZZZZ-ZZZZ"})
    assert wrong_code.status_code == 409
    for who, platform in ((ana, "android"), (ben, "ios"), (ben, "web")):
        token = secret(f"{who.email[:3]}-{platform}-push-token")
        device = client.post(
            "/api/v1/devices", as_=who, json={"platform": platform, "push_token": token}
        )
        assert device.status_code == 201, device.text
    patched = client.patch("/api/v1/me", as_=ben, json={"notes_on_lock_screen": True})
    assert patched.status_code == 200

    # --- bids over REST and the socket -----------------------------------------------------
    ana_phone = Phone(server.url, ana.access_token).connect()
    ben_phone = Phone(server.url, ben.access_token).connect()
    try:
        rest_bid = client.post(
            "/api/v1/bids",
            as_=ana,
            json={"client_id": str(uuid.uuid4()), "kind": "comfort", "note": secret("note")},
        ).json()
        socket_bid = ana_phone.call(
            "bid.send",
            {"client_id": str(uuid.uuid4()), "kind": "share", "note": secret("socket note")},
        )
        assert "id" in socket_bid, socket_bid
        too_long = {"client_id": str(uuid.uuid4()), "kind": "help", "note": secret("x") * 10}
        assert client.post("/api/v1/bids", as_=ana, json=too_long).status_code == 422
        assert ana_phone.call("bid.send", {**too_long, "extra": secret("field")})["status"] == 422
        later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        answered = client.post(
            f"/api/v1/bids/{rest_bid['id']}/responses",
            as_=ben,
            json={
                "client_id": str(uuid.uuid4()),
                "kind": "later",
                "back_at": later,
                "note": secret("response note"),
            },
        )
        assert answered.status_code == 201, answered.text
        toward = ben_phone.call(
            "bid.respond",
            {
                "bid_id": socket_bid["id"],
                "client_id": str(uuid.uuid4()),
                "kind": "toward",
                "note": secret("socket response note"),
            },
        )
        assert "id" in toward, toward

        # --- a repair conversation ---------------------------------------------------------
        repair = repair_helpers.start(client, ana, topic=secret("topic"))
        repair_helpers.write(client, ana, repair["id"], body=secret("message"))
        said = ben_phone.call(
            "repair.message",
            {"repair_id": repair["id"], "client_id": str(uuid.uuid4()), "body": secret("reply")},
        )
        assert "seq" in said, said
        ben_phone.client.emit("typing", {"repair_id": repair["id"]})
        ana_phone.wait_for("typing")
        client.post(f"/api/v1/repairs/{repair['id']}/read", as_=ana, json={"seq": 2})
        client.post(f"/api/v1/repairs/{repair['id']}/pause", as_=ben, json={"minutes": 20})
        client.post(f"/api/v1/repairs/{repair['id']}/resume", as_=ben)
        blank = repair_helpers.post_message(client, ana, repair["id"], body=" " * 3)
        assert blank.status_code == 422

        # --- check-ins, pushes, reading everything back ------------------------------------
        for who, score in ((ana, 4), (ben, 5)):
            scores = {"accessible": score, "responsive": score, "engaged": score}
            scores |= {"client_id": str(uuid.uuid4())}
            assert client.post("/api/v1/checkins", as_=who, json=scores).status_code == 201
        worker = Worker(server.app, name="log-privacy-worker")
        for _ in range(3):
            worker.run_once()
        for path in ("/api/v1/sync", "/api/v1/bids", "/api/v1/me/export", "/api/v1/insights"):
            assert client.get(path, as_=ana).status_code == 200, path
    finally:
        ana_phone.disconnect()
        ben_phone.disconnect()
    assert client.delete("/api/v1/me", as_=ben).status_code == 204
    assert client.delete("/api/v1/me/sessions", as_=ana).status_code == 204
    logout = client.post(
        "/api/v1/auth/logout", json={"refresh_token": signed_in.json()["refresh_token"]}
    )
    assert logout.status_code == 204

    # --- what was logged -----------------------------------------------------------------
    records = every_log_record.texts()
    assert any(name == "reach.push" for name, _ in records), "the log push backend logged nothing"
    assert any(name == "reach.realtime" for name, _ in records), "no socket was logged"
    out, err = capfd.readouterr()
    leaks = [
        f"{label} in {where}"
        for label, value in secrets.items()
        for where, text in [*records, ("stdout", out), ("stderr", err)]
        if value in text
    ]
    assert leaks == [], "\n".join(leaks)


def test_a_sign_in_limit_logs_no_email(
    server_with: Callable[..., LiveServer], every_log_record: Capture
) -> None:
    """flask-limiter logs the key of every limit it refuses (INFO, the default level): the
    per-account limits of sign-ins, sign-ups and operators' sign-ins were keyed by the email,
    so a password guesser's target address landed in the log (and in Redis) once per try."""
    server = server_with(RATELIMIT_AUTH_EMAIL="1 per minute")
    client, ops = ApiClient(server.url), OpsClient(server.url)
    member, operator = marker("member") + "@example.test", marker("operator") + "@reach.test"
    signing_up = {"display_name": "X", "timezone": "UTC"}
    for path, extra in (("/api/v1/auth/login", {}), ("/api/v1/auth/register", signing_up)):
        body = {"email": member, "password": "not the password", **extra}
        answers = [client.post(path, json=body) for _ in range(2)]
        assert answers[-1].status_code == 429, answers[-1].text
    guesses = [ops.sign_in(OperatorAccount(operator, "wrong")).status_code for _ in range(2)]
    assert guesses[-1] == 429
    records = every_log_record.texts()
    refused = [text for name, text in records if name == "flask-limiter" and "exceeded" in text]
    assert len(refused) >= 3, "no refused limit was logged"
    assert [text for _, text in records if member in text or operator in text] == []
