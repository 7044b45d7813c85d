"""Support and push actions over HTTP: each does what it says or refuses, and is audited."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select, text, update

from service.clock import clock
from service.dashboard import views
from service.extensions import db
from service.models import AuthSession, Device, PushJob, RefreshToken
from service.services import ops_push
from service.worker.runner import Worker
from tests.api.test_devices import reinstalled
from tests.dashboard.conftest import OperatorAccount, OpsClient
from tests.dashboard.helpers import add_device, dead_letter, dead_letter_of, job_state, send_bid
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn
from tests.support.plans import rows_examined, rows_fetched
from tests.support.repairs import start, write


def audit(ops: OpsClient) -> list[dict[str, str]]:
    return list(ops.get("/ops/api/audit").json()["items"])


def test_revoking_sessions_signs_the_member_out_everywhere(
    client: ApiClient, signed_in: OpsClient
) -> None:
    ana = client.register("Ana")
    add_device(client, ana, "ana-signed-in-phone")
    second = client.fresh(client.register("Ana", email=f"x-{uuid.uuid4().hex[:6]}@example.test"))
    add_device(client, second, "other-account-phone")
    response = signed_in.post(
        f"/ops/support/users/{ana.id}/revoke-sessions", data={"csrf_token": signed_in.csrf()}
    )
    assert response.status_code == 302
    assert client.get("/api/v1/me", as_=ana).status_code == 401
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert refresh.status_code == 401
    assert client.get("/api/v1/me", as_=second).status_code == 200  # only that account
    login = client.post("/api/v1/auth/login", json={"email": ana.email, "password": ana.password})
    assert login.status_code == 200  # not disabled: signing in again works
    entry = audit(signed_in)[0]
    assert entry["action"] == "account.revoke_sessions"
    assert entry["target_id"] == ana.id
    assert entry["detail"] == {"sessions_revoked": 1}
    # None of the account's phones gets pushes until it signs in and registers again.
    listed = client.get("/api/v1/devices", as_=client.fresh(ana)).json()["items"]
    assert [(d["active"], d["disabled_reason"]) for d in listed] == [(False, "signed_out")]
    assert client.get("/api/v1/devices", as_=second).json()["items"][0]["active"] is True


def live_sessions_shown(ops: OpsClient, user_id: str) -> int:
    page = ops.get(f"/ops/support/users/{user_id}").text
    found = re.search(r'<dd id="live-sessions">(\d+)</dd>', page)
    assert found, page
    return int(found.group(1))


def test_signed_in_sessions_count_only_those_the_phone_can_still_use(
    client: ApiClient, signed_in: OpsClient
) -> None:
    """A sign-in whose refresh token expired is over, though the hourly prune has not yet
    deleted it; so is one signed out. Neither counts, nor is revoked again."""
    clock.freeze(clock.now() - timedelta(days=31))  # REFRESH_TOKEN_DAYS ago, and one more
    ana = client.register("Ana")
    stale_refresh = ana.refresh_token
    clock.unfreeze()
    client.fresh(ana)
    signed_out = client.post(
        "/api/v1/auth/login", json={"email": ana.email, "password": ana.password}
    )
    client.post("/api/v1/auth/logout", json={"refresh_token": signed_out.json()["refresh_token"]})
    expired = client.post("/api/v1/auth/refresh", json={"refresh_token": stale_refresh})
    assert expired.status_code == 401, expired.text  # that phone cannot come back

    assert live_sessions_shown(signed_in, ana.id) == 1
    revoke = signed_in.post(
        f"/ops/support/users/{ana.id}/revoke-sessions", data={"csrf_token": signed_in.csrf()}
    )
    assert revoke.status_code == 302
    assert audit(signed_in)[0]["detail"] == {"sessions_revoked": 1}
    assert live_sessions_shown(signed_in, ana.id) == 0


def test_a_sign_in_whose_access_token_still_works_is_counted_and_revoked(
    app: Flask, client: ApiClient, signed_in: OpsClient
) -> None:
    """A phone whose refresh tokens ran out still calls with the access token it got last, for
    a few minutes (the member's own list shows it, and can end it). The support page counted
    no signed-in session, and revoking them audited none ended, so support took the account
    for signed out while that phone still wrote. It is counted, and so is its revoking."""
    ana = client.register("Ana")
    with app.app_context():
        db.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.session_id.in_(
                    select(AuthSession.id).where(AuthSession.user_id == uuid.UUID(ana.id))
                )
            )
            .values(expires_at=clock.now() - timedelta(seconds=1))
        )
        db.session.commit()
    assert client.get("/api/v1/me", as_=ana).status_code == 200

    assert live_sessions_shown(signed_in, ana.id) == 1
    revoke = signed_in.post(
        f"/ops/support/users/{ana.id}/revoke-sessions", data={"csrf_token": signed_in.csrf()}
    )
    assert revoke.status_code == 302
    assert audit(signed_in)[0]["detail"] == {"sessions_revoked": 1}
    assert client.get("/api/v1/me", as_=ana).status_code == 401
    assert live_sessions_shown(signed_in, ana.id) == 0


def last_pushes_shown(page: str) -> dict[str, str]:
    """The Last push cell of each device row on a support page, by device id."""
    rows = re.findall(r'<tr data-device="([^"]+)">(.*?)</tr>', page, re.DOTALL)
    return {device: re.findall(r"<td>(.*?)</td>", row, re.DOTALL)[4] for device, row in rows}


def test_the_last_push_of_every_device_is_read_at_once(
    client: ApiClient, signed_in: OpsClient, app: Flask, worker: Worker
) -> None:
    """The support page of an account with many phones (old ones stay listed, switched off)
    reads their last pushes in one statement, not one per device, each its own latest."""
    ana, ben = client.couple()
    page, pushed = f"/ops/support/users/{ben.id}", dict[str, str]()
    reads: list[str] = []

    def on(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if re.search(r"\bFROM push_attempts\b", statement):
            reads.append(statement)

    def shown() -> dict[str, str]:
        reads.clear()
        cells = last_pushes_shown(signed_in.get(page).text)
        assert len(reads) == 1, (len(cells), reads)
        return cells

    with app.app_context():
        engine = db.engine
    clock.freeze(clock.now().replace(microsecond=0))
    event.listen(engine, "before_cursor_execute", on)
    try:
        for devices in range(1, 4):
            clock.advance(timedelta(minutes=1))
            phone = add_device(client, client.fresh(ben), f"ben-phone-{devices}")
            send_bid(client, client.fresh(ana))
            assert worker.run_once().pushes == 1  # the earlier phones are switched off
            pushed[phone] = clock.now().strftime("%Y-%m-%d %H:%M:%S UTC")
            off = signed_in.post(
                f"{page}/devices/{phone}/disable", data={"csrf_token": signed_in.csrf()}
            )
            assert off.status_code == 302
            cells = shown()
            assert {d: cells[d].rsplit("· ", 1)[-1] for d in pushed} == pushed, cells
        spare = add_device(client, client.fresh(ben), "ben-spare-phone")
        assert "none yet" in shown()[spare]
    finally:
        event.remove(engine, "before_cursor_execute", on)


def test_lookups_are_audited_and_unknown_accounts_say_so(signed_in: OpsClient) -> None:
    response = signed_in.post(
        "/ops/support/search",
        data={"email": "nobody@example.test", "csrf_token": signed_in.csrf("/ops/support")},
    )
    assert response.status_code == 404
    assert "No account has the email nobody@example.test" in response.text
    assert audit(signed_in)[0]["action"] == "support.lookup"
    assert audit(signed_in)[0]["detail"] == {"found": False}
    missing = signed_in.get(f"/ops/support/users/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert "There is no such account" in missing.text


def test_a_search_without_an_email_says_so(signed_in: OpsClient) -> None:
    """Spaces pass the field's `required`: the page says what is missing, not a bare 404 that
    looks as if nothing happened; nothing was looked up, so nothing is in the audit log."""
    token = signed_in.csrf("/ops/support")
    for typed in ("   ", ""):
        response = signed_in.post("/ops/support/search", data={"email": typed, "csrf_token": token})
        assert response.status_code == 400
        assert "Type the email of the account to find." in response.text
    assert [e["action"] for e in audit(signed_in)] == ["operator.sign_in", "operator.create"]
    unreadable = {"email": "\x00nobody@example.test", "csrf_token": token}
    response = signed_in.post("/ops/support/search", data=unreadable)
    assert response.status_code == 404
    assert "No account has the email" in response.text


def test_actions_that_do_not_apply_are_refused_with_a_message(
    client: ApiClient, signed_in: OpsClient
) -> None:
    ana = client.register("Ana")
    page = f"/ops/support/users/{ana.id}"
    response = signed_in.post(f"{page}/enable", data={"csrf_token": signed_in.csrf()})
    assert response.headers["Location"] == page
    assert "This account is not disabled." in signed_in.get(page).text
    other = str(uuid.uuid4())
    signed_in.post(f"{page}/devices/{other}/disable", data={"csrf_token": signed_in.csrf()})
    assert "This account has no such device." in signed_in.get(page).text
    signed_in.post("/ops/push/jobs/999999/retry", data={"csrf_token": signed_in.csrf()})
    assert "There is no such push job." in signed_in.get("/ops/push").text
    assert [e["action"] for e in audit(signed_in)] == ["operator.sign_in", "operator.create"]


def test_a_push_that_is_not_dead_cannot_be_retried(
    client: ApiClient, signed_in: OpsClient, app: Flask
) -> None:
    ana, ben = client.couple()
    client.post("/api/v1/devices", as_=ben, json={"platform": "web", "push_token": "ben-web"})
    bid = send_bid(client, ana)
    with app.app_context():
        job_id = db.session.scalar(
            select(PushJob.id).where(PushJob.dedupe_key == f"bid.created:{bid['id']}")
        )
    signed_in.post(f"/ops/push/jobs/{job_id}/retry", data={"csrf_token": signed_in.csrf()})
    assert "Only dead-lettered pushes can be retried; this one is pending." in (
        signed_in.get("/ops/push").text
    )


def test_a_disabled_account_gets_no_pushes_until_its_app_registers_again(
    client: ApiClient, signed_in: OpsClient, app: Flask, worker: Worker
) -> None:
    ana, ben = client.couple()
    add_device(client, ana, "ana-phone-token")
    add_device(client, ana, "ana-tablet-token", "ios")
    page = f"/ops/support/users/{ana.id}"
    assert (
        signed_in.post(f"{page}/disable", data={"csrf_token": signed_in.csrf()}).status_code == 302
    )
    assert audit(signed_in)[0]["detail"] == {"sessions_revoked": 1, "devices_disabled": 2}
    with app.app_context():
        states = set(db.session.execute(select(Device.active, Device.disabled_reason)).all())
    assert states == {(False, "account_disabled")}
    send_bid(client, ben)
    assert worker.run_once().pushes == 0

    assert (
        signed_in.post(f"{page}/enable", data={"csrf_token": signed_in.csrf()}).status_code == 302
    )
    ana = client.fresh(ana)
    again = client.post(
        "/api/v1/devices", as_=ana, json={"platform": "android", "push_token": "ana-phone-token"}
    )
    assert again.status_code == 201 and again.json()["active"] is True
    send_bid(client, ben)
    assert worker.run_once().pushes == 1


def retry(signed_in: OpsClient, job_id: int) -> None:
    response = signed_in.post(
        f"/ops/push/jobs/{job_id}/retry", data={"csrf_token": signed_in.csrf()}
    )
    assert response.status_code == 302


def test_a_retried_push_still_waits_out_the_recipients_quiet_hours(
    client: ApiClient,
    ops_client: Callable[[], OpsClient],
    operator: OperatorAccount,
    fcm_worker: Worker,
    standin: FcmStandIn,
) -> None:
    """The bid came at 21:00 in Berlin, before Ben's quiet hours; its push failed until the
    worker gave up. An operator retrying it at 23:00 does not wake him: it goes at 07:00."""
    ana, ben = client.couple("Ana", "Ben")
    quiet = {"quiet_hours": {"start": "22:00", "end": "07:00"}}
    assert client.patch("/api/v1/me", as_=ben, json=quiet).status_code == 200
    add_device(client, ben, "ben-sleeping-phone")
    clock.freeze(datetime(2031, 5, 1, 19, 0, tzinfo=UTC))  # 21:00 in Berlin
    signed_in = ops_client()
    assert signed_in.sign_in(operator).status_code == 302
    job_id = dead_letter(client, fcm_worker, standin, ana, "ben-sleeping-phone")
    tried = len(standin.messages())

    clock.freeze(datetime(2031, 5, 1, 21, 0, tzinfo=UTC))  # 23:00 in Berlin
    retry(signed_in, job_id)
    assert fcm_worker.run_once().pushes == 0
    assert len(standin.messages()) == tried
    assert job_state(fcm_worker, job_id) == "pending"

    clock.freeze(datetime(2031, 5, 2, 5, 0, tzinfo=UTC))  # 07:00 in Berlin
    assert fcm_worker.run_once().pushes == 1
    assert job_state(fcm_worker, job_id) == "done"


def test_a_retried_message_push_waits_for_the_conversations_break(
    client: ApiClient, signed_in: OpsClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """Ana's message push failed until the worker gave up, then Ben took a break. An operator's
    retry during it holds the push until the break ends, as the messages written in it are."""
    ana, ben = client.couple("Ana", "Ben")
    add_device(client, ben, "ben-phone")
    repair = start(client, client.fresh(ana))

    def a_message() -> str:
        message = write(client, client.fresh(ana), repair["id"], body="are you there?")
        return f"repair.message:{repair['id']}:{message['seq']}"

    job_id = dead_letter_of(fcm_worker, standin, "ben-phone", a_message)
    pause = {"minutes": 60}
    paused = client.post(f"/api/v1/repairs/{repair['id']}/pause", as_=client.fresh(ben), json=pause)
    assert paused.status_code == 200, paused.text
    ends = clock.now() + timedelta(minutes=60)
    tried = len(standin.messages())

    retry(signed_in, job_id)
    assert fcm_worker.run_once().pushes == 0
    assert len(standin.messages()) == tried
    clock.freeze(ends)
    fcm_worker.run_once()
    assert job_state(fcm_worker, job_id) == "done"
    assert "repair.message" in [m["data"]["type"] for m in standin.messages()[tried:]]


def test_a_dead_push_of_a_bid_answered_since_is_withdrawn_not_retried(
    client: ApiClient, signed_in: OpsClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """Ben answered the bid in the app: its push has nothing left to say, so no operator's
    retry sends "Ana is reaching for you" for it afterwards."""
    ana, ben = client.couple("Ana", "Ben")
    add_device(client, ben, "ben-flaky-phone")
    job_id = dead_letter(client, fcm_worker, standin, ana, "ben-flaky-phone")
    tried = len(standin.messages())
    with fcm_worker.app.app_context(), db.scope() as session:
        key = session.scalar(select(PushJob.dedupe_key).where(PushJob.id == job_id))
    assert key is not None
    bid_id = key.removeprefix("bid.created:")
    answer = {"client_id": str(uuid.uuid4()), "kind": "toward"}
    answered = client.post(f"/api/v1/bids/{bid_id}/responses", as_=client.fresh(ben), json=answer)
    assert answered.status_code == 201, answered.text
    assert job_state(fcm_worker, job_id) == "cancelled"

    retry(signed_in, job_id)
    assert "Only dead-lettered pushes can be retried; this one is cancelled." in (
        signed_in.get("/ops/push").text
    )
    assert fcm_worker.run_once().pushes == 0
    assert len(standin.messages()) == tried


def test_a_push_fcm_refuses_as_a_message_is_dead_lettered_for_operators_to_see(
    client: ApiClient,
    signed_in: OpsClient,
    fcm_worker: Worker,
    standin: FcmStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FCM refuses the message itself (INVALID_ARGUMENT about one of its fields, not the
    token): Ben never got the push. Operators see it with the dead letters, FCM's code beside
    it; the worker's log names the job and the code, never what anyone wrote; the phone stays
    on, and an operator's retry sends it again."""
    ana, ben = client.couple("Ana", "Ben")
    client.patch("/api/v1/me", as_=ben, json={"notes_on_lock_screen": True})
    add_device(client, ben, "ben-phone")
    standin.script("ben-phone", fcm.INVALID_DATA)
    send_bid(client, ana, note="our secret words")
    with caplog.at_level(logging.INFO):
        assert fcm_worker.run_once().pushes == 1
    listed = signed_in.get("/ops/api/push").json()
    assert [(job["kind"], job["deliveries"]) for job in listed["dead_letters"]] == [
        (
            "bid.created",
            [
                {
                    "platform": "android",
                    "state": "invalid",
                    "attempts": 1,
                    "error": "INVALID_ARGUMENT",
                }
            ],
        )
    ]
    assert listed["summary"]["dead"] == 1
    job_id = listed["dead_letters"][0]["id"]
    refused = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [
        (r.getMessage(), getattr(r, "job_id", None), getattr(r, "error", None)) for r in refused
    ] == [("push refused for good: dead-lettered", job_id, "INVALID_ARGUMENT")]
    assert "our secret words" not in caplog.text
    devices = client.get("/api/v1/devices", as_=client.fresh(ben)).json()["items"]
    assert [d["active"] for d in devices] == [True]

    retry(signed_in, job_id)
    assert fcm_worker.run_once().pushes == 1
    assert job_state(fcm_worker, job_id) == "done"
    assert len(standin.messages()) == 2


@pytest.mark.postgres
def test_the_push_page_finds_the_retried_pushes_without_reading_the_whole_audit_log(
    signed_in: OpsClient, app: Flask
) -> None:
    """A year of sign-ins and lookups in the audit log, and no push retried: the push page's
    "recently retried" reads the entries of retries, not every entry ever made."""
    entries = 3000
    fill = (
        "INSERT INTO ops_audit_log (operator_email, action, target_type, target_id, detail, at) "
        "SELECT 'ops@reach.test', 'support.lookup', 'user', '-', '{}', "
        "now() - i * interval '1 minute' FROM generate_series(1, :n) AS i"
    )
    with app.app_context(), db.scope() as session:
        session.execute(text(fill), {"n": entries})
    looks: list[tuple[str, Any]] = []

    def on(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if re.search(r"\bFROM ops_audit_log\b.*\baction\b", statement, re.DOTALL):
            looks.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on)
    try:
        assert signed_in.get("/ops/push").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", on)
    assert len(looks) == 1, looks
    with app.app_context(), db.scope() as session:
        read = rows_examined(session.connection(), *looks[0], "ops_audit_log")
    assert read <= 10, f"read {read} of {entries} audit entries to find no retry"


def test_ids_past_what_the_database_holds_are_not_found_not_a_server_error(
    signed_in: OpsClient,
) -> None:
    """A job id or an audit page bound past a 64-bit integer names nothing there is."""
    for job_id in (2**63, 10**20):
        response = signed_in.post(
            f"/ops/push/jobs/{job_id}/retry", data={"csrf_token": signed_in.csrf()}
        )
        assert response.status_code == 302, response.text
        assert "There is no such push job." in signed_in.get("/ops/push").text
    newest = audit(signed_in)
    for before in (2**63, 10**25):
        page = signed_in.get(f"/ops/api/audit?before={before}")
        assert page.status_code == 200, page.text
        assert page.json()["items"] == newest
        assert signed_in.get(f"/ops/audit?before={before}").status_code == 200
    for before in (0, -(2**63) - 1):
        page = signed_in.get(f"/ops/api/audit?before={before}")
        assert page.status_code == 200, page.text
        assert page.json() == {"items": [], "next": None}


def test_an_email_with_a_nul_is_no_account_not_a_server_error(
    signed_in: OpsClient, ops_client: Callable[[], OpsClient], operator: OperatorAccount
) -> None:
    """PostgreSQL text cannot hold a NUL: no account's email has one, and asking for one is
    answered as for any unknown email."""
    search = {"email": f"\x00{operator.email}", "csrf_token": signed_in.csrf("/ops/support")}
    assert signed_in.post("/ops/support/search", data=search).status_code == 404
    stranger = ops_client()
    form = {"email": f"{operator.email}\x00", "password": operator.password}
    refused = stranger.post("/ops/login", data={**form, "csrf_token": stranger.csrf("/ops/login")})
    assert refused.status_code == 401
    assert "Email or password is wrong." in refused.text


def test_every_dead_lettered_push_can_be_reached_page_by_page(
    client: ApiClient,
    signed_in: OpsClient,
    fcm_worker: Worker,
    standin: FcmStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More dead letters than a page holds: the page says how many it shows of how many, and
    links to the older ones, so that none is out of an operator's reach."""
    monkeypatch.setattr(ops_push, "DEAD_LETTER_PAGE", 2)
    ana, ben = client.couple()
    add_device(client, ben, "ben-broken-phone")
    jobs = [dead_letter(client, fcm_worker, standin, ana, "ben-broken-phone") for _ in range(3)]

    first = signed_in.get("/ops/push").text
    older = re.search(r'href="(/ops/push\?before=[^"]+)"[^>]*>Older dead letters', first)
    assert older, "no link to the older dead letters"
    assert "latest 2 of 3" in first
    assert dead_rows(first) == [jobs[2], jobs[1]]
    second = signed_in.get(older.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    assert dead_rows(second.text) == [jobs[0]]
    assert "Older dead letters" not in second.text
    assert 'href="/ops/push">Newest' in second.text

    listed = signed_in.get("/ops/api/push").json()
    assert [job["id"] for job in listed["dead_letters"]] == [jobs[2], jobs[1]]
    after = signed_in.get("/ops/api/push", params={"before": listed["dead_letters_next"]}).json()
    assert [job["id"] for job in after["dead_letters"]] == [jobs[0]]
    assert after["dead_letters_next"] is None
    assert signed_in.get("/ops/push", params={"before": "not-a-cursor"}).status_code == 400


def test_a_dead_letter_cursor_it_did_not_give_is_a_400_saying_so(signed_in: OpsClient) -> None:
    """A script paging /ops/api/push with a cursor it made up (or kept from another version)
    is told the page does not exist, not to send a JSON body it never needed."""
    refused = signed_in.get("/ops/api/push", params={"before": "not-a-cursor"})
    assert refused.status_code == 400
    problem = refused.json()
    assert problem["code"] == "bad_request"
    assert "page of dead letters does not exist" in problem["detail"], problem


def test_numbers_in_ops_paths_and_cursors_are_ascii_digits(signed_in: OpsClient) -> None:
    """A job id or a cursor's id in other digits than 0-9 (Python reads "\u0661" as 1) named
    the job of that number: it names nothing."""
    for job in ("\u0661", "\uff11"):
        retried = signed_in.post(
            f"/ops/push/jobs/{job}/retry", data={"csrf_token": signed_in.csrf()}
        )
        assert retried.status_code == 404, (job, retried.text)
    for job in ("\u0661", "\u00b2"):
        refused = signed_in.get("/ops/api/push", params={"before": f"2026-01-01T00:00:00Z~{job}"})
        assert refused.status_code == 400, (job, refused.text)
        assert "page of dead letters does not exist" in refused.json()["detail"]


def test_a_dead_letter_cursor_outside_the_calendar_in_utc_is_a_400(signed_in: OpsClient) -> None:
    """A made-up cursor whose time, read in UTC, falls before the year 1 or after 9999 (its
    offset pushing it over) is no page either: it was a 500, the time failing to convert as
    the query was built."""
    for before in ("0001-01-01T00:00:00+01:00~5", "9999-12-31T23:59:59-01:00~5"):
        refused = signed_in.get("/ops/api/push", params={"before": before})
        assert refused.status_code == 400, (before, refused.text)
        assert "page of dead letters does not exist" in refused.json()["detail"]


# Python's int() reads other scripts' digits ("\u0661" is 1), a plus sign, spaces, underscores.
@pytest.mark.parametrize("before", ["zzz", "", "1.5", "0x10", "\u0661", "+5", " 5", "1_0"])
def test_an_audit_log_cursor_it_did_not_give_is_a_400_not_the_newest_page(
    signed_in: OpsClient, before: str
) -> None:
    """A script paging /ops/api/audit with a cursor it made up got the newest entries again, as
    if it had reached the start: it is told the page does not exist, as push health tells it."""
    refused = signed_in.get("/ops/api/audit", params={"before": before})
    assert refused.status_code == 400, refused.text
    assert "page of the audit log does not exist" in refused.json()["detail"]
    assert signed_in.get("/ops/audit", params={"before": before}).status_code == 400


def dead_rows(page: str) -> list[int]:
    table = page.split('id="dead-letters"', 1)[1].split("</table>", 1)[0]
    return [int(job) for job in re.findall(r'data-job="(\d+)"', table)]


def test_the_audit_log_links_to_older_entries_only_when_there_are_some(
    signed_in: OpsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log that fills its page exactly has nothing older: no link to an empty page that
    would say "Nothing recorded yet."; an older page links back to the newest entries."""
    for email in ("one@example.test", "two@example.test"):
        form = {"email": email, "csrf_token": signed_in.csrf("/ops/support")}
        assert signed_in.post("/ops/support/search", data=form).status_code == 404
    monkeypatch.setattr(views, "AUDIT_PAGE", 4)  # made, signed in, two lookups: one full page
    full = signed_in.get("/ops/audit").text
    assert full.count("<tr data-action=") == 4
    assert "Older entries" not in full
    assert signed_in.get("/ops/api/audit").json()["next"] is None

    monkeypatch.setattr(views, "AUDIT_PAGE", 2)
    first = signed_in.get("/ops/audit").text
    older = re.search(r'href="(/ops/audit\?before=\d+)">Older entries', first)
    assert older and first.count("<tr data-action=") == 2
    second = signed_in.get(older.group(1)).text
    assert re.findall(r'<tr data-action="([^"]+)"', second) == [
        "operator.sign_in",
        "operator.create",
    ]
    assert "Older entries" not in second
    assert 'href="/ops/audit">Newest entries' in second


@pytest.mark.postgres
@pytest.mark.committed  # vacuumed, as autovacuum leaves a table of old rows
def test_the_support_page_reads_the_switched_off_devices_it_shows_and_counts_the_rest(
    client: ApiClient, signed_in: OpsClient, app: Flask
) -> None:
    """500 reinstalls: the page read every switched-off device of the account to show five
    and count the rest. It reads the five, and counts the rest from the index."""
    ben = client.register("Ben")
    live = [add_device(client, ben, f"ben-live-{n}") for n in range(2)]
    history = 500
    with app.app_context():
        engine = db.engine
    with engine.begin() as conn:
        reinstalled(conn, ben.id, history)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE devices"
        )
    reads: list[tuple[str, Any]] = []

    def on(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if re.match(r"\s*SELECT\b.*\bFROM devices\b", statement, re.DOTALL):
            reads.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", on)
    try:
        page = signed_in.get(f"/ops/support/users/{ben.id}")
    finally:
        event.remove(engine, "before_cursor_execute", on)
    assert page.status_code == 200
    assert re.findall(r'<tr data-device="([^"]+)">', page.text)[:2] == live
    not_shown = rf'id="devices-not-shown"[^>]*>\s*{history - 5} older switched-off devices'
    assert re.search(not_shown, page.text)
    assert reads
    with engine.connect() as conn:
        fetched = sum(rows_fetched(conn, sql, params, "devices") for sql, params in reads)
    assert fetched <= 10, f"read {fetched} devices of {history} switched off to show five"


def test_an_account_with_years_of_phones_shows_the_live_ones_and_the_latest_switched_off(
    client: ApiClient, signed_in: OpsClient, app: Flask
) -> None:
    """Hundreds of reinstalls leave hundreds of switched-off devices: the support page lists
    the live ones, the few switched off last, and how many more there are, reading no more
    rows than it shows (and no push of a device it does not show)."""
    ben = client.register("Ben")
    live = [add_device(client, ben, f"ben-live-{n}") for n in range(2)]
    old = 300
    start_at = clock.now() - timedelta(days=old + 1)
    with app.app_context(), db.scope() as session:
        session.add_all(
            Device(
                user_id=uuid.UUID(ben.id),
                platform="ios" if n % 2 else "android",
                push_token=f"ben-reinstall-{n}",
                active=False,
                disabled_reason="unregistered",
                created_at=start_at + timedelta(days=n),
                updated_at=start_at + timedelta(days=n, hours=1),
            )
            for n in range(old)
        )
    newest_off = [f"ben-reinstall-{n}" for n in range(old - 1, old - 6, -1)]
    with app.app_context(), db.scope() as session:
        tokens = {
            token: str(id_) for token, id_ in session.execute(select(Device.push_token, Device.id))
        }
    reads: list[tuple[str, Any]] = []

    def on(_conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if re.search(r"\bFROM (devices|push_attempts)\b", statement):
            reads.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on)
    try:
        page = signed_in.get(f"/ops/support/users/{ben.id}")
    finally:
        event.remove(engine, "before_cursor_execute", on)
    assert page.status_code == 200
    shown = re.findall(r'<tr data-device="([^"]+)">', page.text)
    assert shown == live + [tokens[t] for t in newest_off], shown
    assert re.search(r'id="devices-not-shown"[^>]*>\s*295 older switched-off devices', page.text)
    assert len(reads) <= 3, [s for s, _ in reads]
    pushes = [p for s, p in reads if re.search(r"\bFROM push_attempts\b", s)]
    asked = {str(v) for p in pushes for v in (p.values() if isinstance(p, dict) else p)}
    hidden = set(tokens.values()) - set(shown)
    assert len(pushes) == 1 and not asked & hidden, "the pushes of devices not shown were read"
