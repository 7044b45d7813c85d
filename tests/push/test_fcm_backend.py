"""FcmBackend through the real firebase-admin SDK over HTTP to the stand-in; the log backend."""

from __future__ import annotations

import inspect
import json
import logging
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import firebase_admin
import pytest
import requests
from firebase_admin import credentials, messaging
from google.auth.transport.requests import AuthorizedSession

from service.logs import JsonFormatter
from service.push import ERROR_MAX, PushMessage, PushResult
from service.push.backends import build_backend
from service.push.fcm import PINNED_VERSION, FcmBackend, apns_collapse_id, build_message
from service.push.log import LogBackend
from tests.support import fcm_standin as fcm
from tests.support.fcm_standin import FcmStandIn
from tests.support.waiting import wait_until

SEND_PATH = "/v1/projects/reach-test/messages:send"
DATA = {"type": "bid.created", "bid_id": "b-1", "cursor": "7"}


def push(token: str = "tok-1", platform: str = "ios", **overrides: Any) -> PushMessage:
    values: dict[str, Any] = {
        "key": f"key-{token}",
        "device_id": uuid.uuid4(),
        "platform": platform,
        "token": token,
        "data": DATA,
        "collapse_key": "bid-b-1",
        "title": "Alex is reaching for you",
        "body": "Tap to answer",
        "ttl_seconds": 3600,
    }
    return PushMessage(**{**values, **overrides})


@pytest.fixture
def backend(standin: FcmStandIn, credentials_file: Path) -> Iterator[FcmBackend]:
    sender = FcmBackend(str(credentials_file), standin.url, max_concurrency=4, timeout_seconds=5)
    yield sender
    sender.close()


def test_sends_the_exact_v1_message_for_each_platform(
    backend: FcmBackend, standin: FcmStandIn
) -> None:
    before = int(time.time())
    results = backend.send_batch([push("ios-1"), push("and-1", "android"), push("web-1", "web")])
    after = int(time.time())

    assert [r.outcome for r in results] == ["sent", "sent", "sent"]
    assert [r.key for r in results] == ["key-ios-1", "key-and-1", "key-web-1"]
    assert all(
        r.message_id and r.message_id.startswith("projects/reach-test/messages/") for r in results
    )
    assert len(standin.received("token")) == 1
    sends = {r.body["message"]["token"]: r for r in standin.received()}
    assert {r.path for r in sends.values()} == {SEND_PATH}
    headers = sends["ios-1"].headers
    assert headers["authorization"].startswith("Bearer standin-")
    assert headers["x-firebase-client"] == f"fire-admin-python/{PINNED_VERSION}"
    notification = {"title": "Alex is reaching for you", "body": "Tap to answer"}
    ios = sends["ios-1"].body["message"]
    expiration = int(ios["apns"]["headers"].pop("apns-expiration"))
    assert before + 3600 <= expiration <= after + 3600
    assert ios == {
        "token": "ios-1",
        "data": DATA,
        "notification": notification,
        "apns": {
            "headers": {
                "apns-priority": "10",
                "apns-push-type": "alert",
                "apns-collapse-id": "bid-b-1",
            },
            "payload": {"aps": {"alert": notification, "sound": "default", "mutable-content": 1}},
        },
    }
    assert sends["and-1"].body["message"] == {
        "token": "and-1",
        "data": DATA,
        "notification": notification,
        "android": {
            "collapse_key": "bid-b-1",
            "priority": "high",
            "ttl": "3600s",
            "notification": {"channel_id": "bids", "tag": "bid-b-1"},
        },
    }
    assert sends["web-1"].body["message"] == {
        "token": "web-1",
        "data": DATA,
        "notification": notification,
        "webpush": {
            "headers": {"TTL": "3600", "Urgency": "high", "Topic": "bid-b-1"},
            "notification": {"tag": "bid-b-1"},
        },
    }


def test_a_data_only_message_to_ios_uses_priority_5_and_content_available(
    backend: FcmBackend, standin: FcmStandIn
) -> None:
    [result] = backend.send_batch([push(title=None, body=None, badge=2, category="bid")])

    assert result.outcome == "sent"
    [message] = standin.messages()
    assert "notification" not in message
    assert message["apns"]["headers"]["apns-priority"] == "5"
    assert message["apns"]["headers"]["apns-push-type"] == "background"
    assert message["apns"]["payload"] == {
        "aps": {"content-available": 1, "badge": 2, "category": "bid", "thread-id": "bid"}
    }


@pytest.mark.parametrize(
    ("answer", "outcome", "error", "retry_after"),
    [
        (fcm.UNREGISTERED, "unregistered", "UNREGISTERED", None),
        (fcm.SENDER_ID_MISMATCH, "unregistered", "SENDER_ID_MISMATCH", None),
        (fcm.INVALID_ARGUMENT, "invalid", "INVALID_ARGUMENT", None),
        (fcm.INVALID_DATA, "invalid", "INVALID_ARGUMENT", None),  # the message: not the token
        (fcm.INVALID_TOKEN, "unregistered", "INVALID_TOKEN", None),
        (fcm.INVALID_TOKEN_FIELD, "unregistered", "INVALID_TOKEN", None),
        (fcm.quota_exceeded("7"), "retry", "QUOTA_EXCEEDED", 7.0),
        (fcm.unavailable(), "retry", "UNAVAILABLE", None),
        (fcm.unavailable("3"), "retry", "UNAVAILABLE", 3.0),
        (fcm.internal(), "retry", "INTERNAL", None),
        (fcm.quota_exceeded(), "retry", "QUOTA_EXCEEDED", None),
        (fcm.Answer(502), "retry", "UNKNOWN", None),
        (fcm.THIRD_PARTY_AUTH_ERROR, "failed", "THIRD_PARTY_AUTH_ERROR", None),
        (fcm.HANG_UP, "retry", "UNAVAILABLE", None),  # the connection closed: sent once
    ],
)
def test_fcm_errors_map_to_outcomes_and_reach_fcm_once(
    backend: FcmBackend,
    standin: FcmStandIn,
    answer: fcm.Answer,
    outcome: str,
    error: str,
    retry_after: float | None,
) -> None:
    standin.script("tok-1", answer)

    [result] = backend.send_batch([push("tok-1")])

    assert (result.outcome, result.error, result.retry_after) == (outcome, error, retry_after)
    assert result.message_id is None
    assert len(standin.received()) == 1  # the SDK's own retries are off


def test_a_message_fcm_refuses_is_logged_by_the_fields_it_names_never_by_its_words(
    backend: FcmBackend, standin: FcmStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """FCM's text about a value it refused quotes that value; a note shown on the lock screen
    is one, and the log line of the refusal wrote it out. The line names the field instead."""
    words = "I miss you so much tonight"
    standin.script(
        "tok-1",
        fcm.Answer(
            400,
            "INVALID_ARGUMENT",
            message=f"Invalid value at 'message.notification.body' (TYPE_STRING), \"{words}\"",
            violations=(("message.notification.body", f'Invalid value "{words}"'),),
        ),
    )
    with caplog.at_level(logging.INFO, logger="reach.push"):
        [result] = backend.send_batch([push("tok-1", body=words)])

    assert (result.outcome, result.error) == ("invalid", "INVALID_ARGUMENT")
    [line] = [r for r in caplog.records if r.getMessage() == "push invalid: INVALID_ARGUMENT"]
    assert line.error == "fields: message.notification.body"  # type: ignore[attr-defined]
    assert all(words not in str(vars(r)) for r in caplog.records)


def test_a_third_party_auth_error_is_failed_after_one_request(
    backend: FcmBackend, standin: FcmStandIn
) -> None:
    """Left alone, google-auth would answer FCM's 401 by fetching a new access token and
    sending again, twice: three requests, and a send longer than its bound."""
    standin.script("tok-1", fcm.THIRD_PARTY_AUTH_ERROR, fcm.THIRD_PARTY_AUTH_ERROR)

    [result] = backend.send_batch([push("tok-1")])

    assert (result.outcome, result.error) == ("failed", "THIRD_PARTY_AUTH_ERROR")
    assert (len(standin.received()), len(standin.received("token"))) == (1, 1)


def test_a_refused_access_token_is_retry_and_the_next_batch_fetches_a_new_one(
    backend: FcmBackend, standin: FcmStandIn
) -> None:
    assert [r.outcome for r in backend.send_batch([push("tok-1")])] == ["sent"]
    standin.revoke_tokens()  # still fresh by its expiry, yet refused

    [refused] = backend.send_batch([push("tok-2")])
    assert (refused.outcome, refused.error) == ("retry", "UNAUTHENTICATED")
    assert (len(standin.received()), len(standin.received("token"))) == (2, 1)

    [again] = backend.send_batch([push("tok-2")])
    assert again.outcome == "sent"
    assert (len(standin.received()), len(standin.received("token"))) == (3, 2)


def test_a_send_is_bounded_by_its_connection_attempts_and_the_answer(
    backend: FcmBackend,
) -> None:
    """Two connection attempts and the answer, each giving up after the timeout (5 s)."""
    assert backend.longest_send == 15
    retries = backend._session.get_adapter(backend.url).max_retries
    assert (retries.total, retries.connect, retries.read, retries.status) == (1, 1, 0, 0)
    assert backend._session._max_refresh_attempts == 0  # type: ignore[attr-defined]


def test_retry_after_as_an_http_date(backend: FcmBackend, standin: FcmStandIn) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    standin.script("tok-1", fcm.quota_exceeded(format_datetime(when, usegmt=True)))

    [result] = backend.send_batch([push("tok-1")])

    assert result.outcome == "retry"
    assert result.retry_after is not None
    assert 20 < result.retry_after <= 30


def test_a_scripted_queue_answers_in_order(backend: FcmBackend, standin: FcmStandIn) -> None:
    standin.script("tok-1", fcm.unavailable(), fcm.SUCCESS)

    first = backend.send_batch([push("tok-1")])
    second = backend.send_batch([push("tok-1")])

    assert [first[0].outcome, second[0].outcome] == ["retry", "sent"]
    assert len(standin.received()) == 2


def test_oversized_and_malformed_messages_are_invalid_before_any_request(
    backend: FcmBackend, standin: FcmStandIn
) -> None:
    results = backend.send_batch(
        [
            push("big", data={"type": "bid.created", "note": "x" * 4100}),
            push("neg", "android", ttl_seconds=-1),
        ]
    )

    assert [(r.outcome, r.error) for r in results] == [
        ("invalid", "PAYLOAD_TOO_LARGE"),
        ("invalid", "INVALID_MESSAGE: AndroidConfig.ttl must not be negative."),
    ]
    assert standin.received(kind=None) == []


def test_concurrency_is_bounded(standin: FcmStandIn, credentials_file: Path) -> None:
    standin.default_delay = 0.02
    sender = FcmBackend(str(credentials_file), standin.url, max_concurrency=4)
    try:
        results = sender.send_batch([push(f"tok-{i}") for i in range(40)])
    finally:
        sender.close()

    assert [r.key for r in results] == [f"key-tok-{i}" for i in range(40)]
    assert {r.outcome for r in results} == {"sent"}
    assert len(standin.received()) == 40
    assert 2 <= standin.max_in_flight <= 4


def test_a_send_cut_off_mid_body_is_not_a_received_message(standin: FcmStandIn) -> None:
    """A sender killed while writing (a worker under SIGKILL) delivered nothing to FCM."""
    body = json.dumps({"message": {"token": "tok-cut", "data": DATA}}).encode()
    head = (
        f"POST {SEND_PATH} HTTP/1.1\r\nHost: fcm\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", int(standin.url.rsplit(":", 1)[1]))) as raw:
        raw.sendall(head + body[:10])
    wait_until(lambda: standin.received("cut") != [], 5, "the cut request handled")

    assert standin.received() == []
    assert standin.messages() == []
    [cut] = standin.received("cut")
    assert (cut.path, cut.body) == (SEND_PATH, body[:10])


def test_a_slow_fcm_times_out_as_retry(standin: FcmStandIn, credentials_file: Path) -> None:
    standin.script("tok-1", fcm.slow(30))
    sender = FcmBackend(str(credentials_file), standin.url, timeout_seconds=0.3)
    try:
        [result] = sender.send_batch([push("tok-1")])
    finally:
        sender.close()

    assert (result.outcome, result.error) == ("retry", "DEADLINE_EXCEEDED")


def test_an_unreachable_token_endpoint_is_retry_without_sending(
    standin: FcmStandIn, tmp_path: Path
) -> None:
    path = fcm.write_service_account(tmp_path / "sa.json", "http://127.0.0.1:9/token")
    sender = FcmBackend(str(path), standin.url, timeout_seconds=2)
    try:
        results = sender.send_batch([push("tok-1"), push("tok-2")])
    finally:
        sender.close()

    assert [(r.outcome, r.error) for r in results] == [("retry", "AUTH_FAILED")] * 2
    assert standin.received() == []


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        # A proxy or load balancer in front of the token endpoint, failing for a while.
        ((502, "text/html", b"<html><body>502 Bad Gateway</body></html>"), "retry"),
        # An answer that is not the token's JSON at all: a portal's page, a list.
        ((200, "text/html", b"<html><body>Sign in to the network</body></html>"), "retry"),
        ((200, "application/json", b"[]"), "retry"),
        # The key itself refused: no later try will do better.
        ((400, "application/json", b'{"error": "invalid_grant"}'), "failed"),
    ],
)
def test_a_failing_token_endpoint_is_an_outcome_for_every_push_without_sending(
    standin: FcmStandIn, credentials_file: Path, answer: tuple[int, str, bytes], outcome: str
) -> None:
    standin.token_failure = answer
    sender = FcmBackend(str(credentials_file), standin.url, timeout_seconds=2)
    try:
        results = sender.send_batch([push("tok-1"), push("tok-2")])
    finally:
        sender.close()

    assert [(r.outcome, r.error) for r in results] == [(outcome, "AUTH_FAILED")] * 2
    assert len(standin.received("token")) == 1  # once for the batch
    assert standin.received() == []


def test_no_send_starts_after_the_deadline_and_the_rest_come_back_unsent(
    standin: FcmStandIn, credentials_file: Path
) -> None:
    """One at a time, half a second each: three start before the deadline, 1.25 s away (fewer
    on a machine so busy that the first send's token and connection take longer), and the rest
    come back unsent, never started."""
    standin.default_delay = 0.5
    sender = FcmBackend(str(credentials_file), standin.url, max_concurrency=1, timeout_seconds=5)
    try:
        wall, deadline = time.time() + 1.25, time.monotonic() + 1.25
        results = sender.send_batch([push(f"tok-{i}") for i in range(5)], deadline)
        finished = time.time()
    finally:
        sender.close()

    started = len(standin.messages())
    assert 1 <= started <= 3, started
    assert [(r.key, r.outcome) for r in results] == [
        (f"key-tok-{i}", "sent" if i < started else "unsent") for i in range(5)
    ]
    assert all(r.message_id is None and r.error is None for r in results[started:])
    assert [m["token"] for m in standin.messages()] == [f"tok-{i}" for i in range(started)]
    assert max(r.at for r in standin.received()) < wall
    assert finished < wall + 0.5 + 0.25  # the last one started had its answer, no more waited


def test_a_batch_past_its_deadline_reaches_nothing_not_even_the_token_endpoint(
    backend: FcmBackend, standin: FcmStandIn
) -> None:
    results = backend.send_batch([push("tok-1"), push("big", data={"x": "y" * 4100})], 0.0)

    assert [r.outcome for r in results] == ["unsent", "invalid"]  # invalid needs no network
    assert standin.received(kind=None) == []


def test_an_access_token_that_would_go_stale_before_the_last_answer_is_replaced_first(
    backend: FcmBackend, standin: FcmStandIn
) -> None:
    """google-auth fetches a new token inside a send from 3 min 45 s before expiry, which
    would make that send longer than its bound: the batch fetches it first instead."""
    standin.token_seconds = 330  # stale in 105 s
    assert backend.send_batch([push("tok-1")])[0].outcome == "sent"
    assert len(standin.received("token")) == 1

    # Its last answer can come 25 s from now, when the token is still 5 minutes from expiry.
    assert backend.send_batch([push("tok-2")], time.monotonic() + 10)[0].outcome == "sent"
    assert len(standin.received("token")) == 1
    # 95 s from now, the token is less than 5 minutes from expiry: a new one first.
    assert backend.send_batch([push("tok-3")], time.monotonic() + 80)[0].outcome == "sent"
    assert len(standin.received("token")) == 2
    assert len(standin.received()) == 3


def test_credentials_can_be_the_json_itself(standin: FcmStandIn) -> None:
    sender = FcmBackend(json.dumps(standin.service_account()), standin.url)
    try:
        [result] = sender.send_batch([push()])
    finally:
        sender.close()
    assert result.outcome == "sent"


def test_the_private_fcm_url_hook_still_exists(
    backend: FcmBackend, standin: FcmStandIn, credentials_file: Path
) -> None:
    """firebase-admin internals we rely on; if this fails, re-read messaging.py before bumping."""
    assert firebase_admin.__version__ == PINNED_VERSION
    service_class = messaging._MessagingService
    assert service_class.FCM_URL == "https://fcm.googleapis.com/v1/projects/{0}/messages:send"
    assert "url=self._fcm_url" in inspect.getsource(service_class.send)
    assert "url=self._fcm_url" in inspect.getsource(service_class.send_each)
    assert "_MessagingService.FCM_URL.format(project_id)" in inspect.getsource(
        service_class.__init__
    )
    # google-auth's session fetches a token and sends again on a 401 while below this.
    assert "< self._max_refresh_attempts" in inspect.getsource(AuthorizedSession.request)
    assert backend.url == standin.url + SEND_PATH
    other = firebase_admin.initialize_app(
        credentials.Certificate(str(credentials_file)), name=f"other-{uuid.uuid4().hex}"
    )
    try:
        service = messaging._get_messaging_service(other)
        assert service._fcm_url == service_class.FCM_URL.format("reach-test")  # not ours
        assert isinstance(service._client.session, requests.Session)
    finally:
        firebase_admin.delete_app(other)


def test_without_an_endpoint_it_aims_at_google_with_sdk_retries_off(
    credentials_file: Path,
) -> None:
    sender = FcmBackend(str(credentials_file))  # nothing is sent: no network in tests
    try:
        assert sender.url == "https://fcm.googleapis.com" + SEND_PATH
        retries = sender._session.get_adapter(sender.url).max_retries
        assert (retries.total, retries.status, retries.read) == (1, 0, 0)
    finally:
        sender.close()


def test_left_alone_the_sdk_resends_on_503(standin: FcmStandIn, credentials_file: Path) -> None:
    """PITFALLS 9, why FcmBackend switches the SDK's retries off."""
    app = firebase_admin.initialize_app(
        credentials.Certificate(str(credentials_file)), name=f"plain-{uuid.uuid4().hex}"
    )
    try:
        messaging._get_messaging_service(app)._fcm_url = standin.url + SEND_PATH
        standin.script("tok-1", fcm.unavailable(), fcm.SUCCESS)
        messaging.send(build_message(push("tok-1")), app=app)
    finally:
        firebase_admin.delete_app(app)
    assert len(standin.received()) == 2


def test_apns_collapse_id_fits_in_64_bytes() -> None:
    assert apns_collapse_id("bid-1") == "bid-1"
    assert len(apns_collapse_id("é" * 40).encode()) == 64


def test_build_backend_chooses_and_explains(standin: FcmStandIn, credentials_file: Path) -> None:
    assert isinstance(build_backend("log", "", ""), LogBackend)
    with pytest.raises(ValueError, match="needs FIREBASE_CREDENTIALS"):
        build_backend("fcm", "", "")
    with pytest.raises(ValueError, match="one of log, fcm"):
        build_backend("apns", "", "")
    with pytest.raises(ValueError, match="not a file"):
        build_backend("fcm", "/nonexistent/sa.json", "")
    with pytest.raises(ValueError, match="does not parse"):
        build_backend("fcm", "{oops", "")
    sender = build_backend("FCM", str(credentials_file), standin.url, max_concurrency=2)
    assert isinstance(sender, FcmBackend)
    try:
        assert sender.max_concurrency == 2
    finally:
        sender.close()


def test_log_backend_starts_nothing_after_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    messages = [push("tok-1"), push("tok-2")]
    with caplog.at_level(logging.INFO, logger="reach.push"):
        results = LogBackend().send_batch(messages, time.monotonic() - 1)

    assert [(r.key, r.outcome, r.message_id) for r in results] == [
        ("key-tok-1", "unsent", None),
        ("key-tok-2", "unsent", None),
    ]
    assert [r for r in caplog.records if r.name == "reach.push"] == []
    assert LogBackend.longest_send == 0


def test_log_backend_logs_one_line_per_push(caplog: pytest.LogCaptureFixture) -> None:
    message = push("secret-token", "android", body="the private note")
    with caplog.at_level(logging.INFO, logger="reach.push"):
        [result] = LogBackend().send_batch([message])

    assert (result.outcome, result.key) == ("sent", "key-secret-token")
    assert result.message_id
    [record] = [r for r in caplog.records if r.name == "reach.push"]
    text = record.getMessage()
    assert text.startswith("push high visible to android device")
    assert "Alex" not in JsonFormatter().format(record), "the title names the sender"
    assert "secret-token" not in text
    assert "private note" not in text
    named = ("platform", "notification", "device_id", "collapse_key")
    fields = {name: record.__dict__[name] for name in named}
    assert fields == {
        "platform": "android",
        "notification": "visible",
        "device_id": str(message.device_id),
        "collapse_key": "bid-b-1",
    }
    assert record.__dict__["data"] == DATA


def timed_batch(
    standin: FcmStandIn, credentials_file: Path
) -> tuple[FcmBackend, list[PushResult], float]:
    """Two pushes (tok-1, tok-2) sent by a backend with a 0.5 s read timeout, closed after
    them: the backend, its results and how long the batch took."""
    sender = FcmBackend(str(credentials_file), standin.url, timeout_seconds=0.5)
    try:
        began = time.monotonic()
        results = sender.send_batch([push("tok-1"), push("tok-2")])
        return sender, results, time.monotonic() - began
    finally:
        sender.close()


@pytest.mark.parametrize(
    ("answer", "outcome", "error"),
    [
        # FCM's 200 had come: it took the message, whatever became of the rest.
        (fcm.trickling(0.2, body_only=True), "sent", "ANSWER_CUT_OFF"),
        # Not even the status line: unknown, tried again as after a timeout.
        (fcm.trickling(0.2), "retry", "DEADLINE_EXCEEDED"),
        (fcm.trickling(0.2, body_only=True, answer=fcm.unavailable()), "retry", "ANSWER_CUT_OFF"),
    ],
)
def test_an_answer_trickling_in_is_cut_off_when_the_send_has_had_its_time(
    standin: FcmStandIn,
    credentials_file: Path,
    answer: fcm.Answer,
    outcome: str,
    error: str,
) -> None:
    """A byte every 0.2 s: each within the 0.5 s timeout, the answer far longer than the 1.5 s
    a send may take (`longest_send`). Cut off then, its connection shut."""
    standin.script("tok-1", answer)
    sender, results, took = timed_batch(standin, credentials_file)

    assert [(r.outcome, r.error) for r in results] == [(outcome, error), ("sent", None)]
    assert sender.longest_send <= took < sender.longest_send + 1
    assert len(standin.received()) == 2  # asked once
    wait_until(lambda: standin.answers_cut == 1, 5, "the stand-in to see the hang-up")


def test_a_trickling_answer_is_cut_off_in_a_process_patched_for_gevent() -> None:
    """`reach worker` runs on gevent's patches: the cut ends a greenlet's read as a thread's."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.cutoff_child"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["outcomes"] == [
        ["sent", "ANSWER_CUT_OFF"],
        ["retry", "DEADLINE_EXCEEDED"],
        ["sent", None],
    ]
    assert 1.5 <= report["seconds"] < 2.5


def test_a_trickling_token_endpoint_is_cut_off_and_nothing_is_sent(
    standin: FcmStandIn, credentials_file: Path
) -> None:
    """The OAuth exchange before a batch is cut off the same way: every push is tried again."""
    standin.token_trickle = 0.2
    sender, results, took = timed_batch(standin, credentials_file)

    assert [r.outcome for r in results] == ["retry", "retry"]
    assert took < sender.longest_send + 1
    assert standin.received() == []


def test_an_error_longer_than_the_outbox_keeps_is_cut_to_fit() -> None:
    """firebase-admin's text for a message it refuses to build is as long as it likes; the
    outbox keeps ERROR_MAX characters of it (a longer one failed the write of the results)."""
    long = PushResult("key", "invalid", error="INVALID_MESSAGE: " + "x" * 200)
    assert long.error is not None and len(long.error) == ERROR_MAX
    assert long.error.startswith("INVALID_MESSAGE: x") and long.error.endswith("...")
    assert PushResult("key", "retry", error="UNAVAILABLE").error == "UNAVAILABLE"
