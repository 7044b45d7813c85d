"""The FCM messages docs/mobile.md §9 shows, key for key: what a phone's notification code
(channels, categories, thread ids, collapse ids, data keys) is written against."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service.clock import clock
from service.push.fcm import FcmBackend
from service.services.push_outbox import BID_BODIES
from service.worker.dispatch import Dispatcher
from service.worker.runner import Worker
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn
from tests.support.repairs import start, write

PLATFORMS = ("android", "ios", "web")


def devices_of(client: ApiClient, who: Person, name: str) -> None:
    for platform in PLATFORMS:
        token = f"{name}-{platform}-token"
        body = {"platform": platform, "push_token": token}
        assert client.post("/api/v1/devices", as_=who, json=body).status_code == 201


def by_platform(standin: FcmStandIn, name: str) -> dict[str, dict[str, Any]]:
    sent = {m["token"]: m for m in standin.messages()}
    return {platform: sent[f"{name}-{platform}-token"] for platform in PLATFORMS}


def cursor_of(client: ApiClient, who: Person, event_type: str) -> int:
    events = client.get("/api/v1/sync", as_=who).json()["events"]
    return int(next(e["cursor"] for e in events if e["type"] == event_type))


def seconds_until(moment: str) -> float:
    return datetime.fromisoformat(moment).timestamp() - time.time()


def test_a_bid_push_is_the_message_the_guide_shows_on_each_platform(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    maya, sam = client.couple("Maya", "Sam")
    devices_of(client, sam, "sam")
    body = {"client_id": str(uuid.uuid4()), "kind": "comfort", "note": "Rough meeting."}
    bid = client.post("/api/v1/bids", as_=maya, json=body).json()
    assert fcm_worker.run_once().pushes == 3
    couple_id = client.get("/api/v1/me", as_=sam).json()["couple_id"]
    data = {
        "type": "bid.created",
        "bid_id": bid["id"],
        "cursor": str(cursor_of(client, sam, "bid.created")),
    }
    notification = {
        "title": "Maya is reaching for you",
        "body": "They're having a hard time and would like you close.",
    }
    sent = by_platform(standin, "sam")
    # The time to live is what is left of the bid's when the push is sent.
    left = seconds_until(bid["expires_at"])
    android, ios, web = sent["android"], sent["ios"], sent["web"]
    assert left - 5 <= int(android["android"].pop("ttl").removesuffix("s")) <= left
    assert left - 5 <= int(web["webpush"]["headers"].pop("TTL")) <= left
    expiry = int(ios["apns"]["headers"].pop("apns-expiration"))
    assert abs(expiry - datetime.fromisoformat(bid["expires_at"]).timestamp()) <= 2
    topic = web["webpush"]["headers"].pop("Topic")
    assert len(topic) <= 32
    assert android == {
        "token": "sam-android-token",
        "data": data,
        "notification": notification,
        "android": {
            "collapse_key": f"bid:{bid['id']}",
            "notification": {"channel_id": "bids", "tag": f"bid:{bid['id']}"},
            "priority": "high",
        },
    }
    assert ios == {
        "token": "sam-ios-token",
        "data": data,
        "notification": notification,
        "apns": {
            "headers": {
                "apns-collapse-id": f"bid:{bid['id']}",
                "apns-priority": "10",
                "apns-push-type": "alert",
            },
            "payload": {
                "aps": {
                    "alert": notification,
                    "category": "BID",
                    "mutable-content": 1,
                    "sound": "default",
                    "thread-id": f"couple:{couple_id}",
                }
            },
        },
    }
    assert web == {
        "token": "sam-web-token",
        "data": data,
        "notification": notification,
        "webpush": {"headers": {"Urgency": "high"}, "notification": {"tag": f"bid:{bid['id']}"}},
    }


@pytest.mark.parametrize("kind", ["comfort", "connect", "share", "help"])
def test_each_kind_of_bid_has_the_body_the_guide_lists(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn, kind: str
) -> None:
    listed = {
        "comfort": "They're having a hard time and would like you close.",
        "connect": "They're thinking of you.",
        "share": "They have something to tell you.",
        "help": "They could use a hand.",
    }
    assert listed == BID_BODIES
    maya, sam = client.couple("Maya", "Sam")
    assert (
        client.post(
            "/api/v1/devices", as_=sam, json={"platform": "android", "push_token": "sam-token"}
        ).status_code
        == 201
    )
    body = {"client_id": str(uuid.uuid4()), "kind": kind, "note": "not on the lock screen"}
    assert client.post("/api/v1/bids", as_=maya, json=body).status_code == 201
    fcm_worker.run_once()
    (message,) = standin.messages()
    assert message["notification"]["body"] == listed[kind]


def test_a_repair_message_push_is_the_message_the_guide_shows(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    maya, sam = client.couple("Maya", "Sam")
    devices_of(client, sam, "sam")
    repair = start(client, maya)
    write(client, maya, repair["id"], body="When you left the table I felt alone.")
    assert fcm_worker.run_once().pushes == 3
    data = {
        "type": "repair.message",
        "repair_id": repair["id"],
        "seq": "1",
        "cursor": str(cursor_of(client, sam, "repair.message")),
    }
    notification = {
        "title": "Maya wrote in your repair conversation",
        "body": "Open Reach to read it.",
    }
    sent = by_platform(standin, "sam")
    android, ios, web = sent["android"], sent["ios"], sent["web"]
    expiry = int(ios["apns"]["headers"].pop("apns-expiration"))
    assert abs(expiry - (time.time() + 86400)) <= 5
    web["webpush"]["headers"].pop("Topic")
    assert android == {
        "token": "sam-android-token",
        "data": data,
        "notification": notification,
        "android": {
            "collapse_key": f"repair:{repair['id']}",
            "notification": {"channel_id": "repairs", "tag": f"repair:{repair['id']}"},
            "priority": "normal",
            "ttl": "86400s",
        },
    }
    assert ios == {
        "token": "sam-ios-token",
        "data": data,
        "notification": notification,
        "apns": {
            "headers": {
                "apns-collapse-id": f"repair:{repair['id']}",
                "apns-priority": "5",
                "apns-push-type": "alert",
            },
            "payload": {
                "aps": {
                    "alert": notification,
                    "category": "REPAIR",
                    "mutable-content": 1,
                    "sound": "default",
                    "thread-id": f"repair:{repair['id']}",
                }
            },
        },
    }
    assert web == {
        "token": "sam-web-token",
        "data": data,
        "notification": notification,
        "webpush": {
            "headers": {"TTL": "86400", "Urgency": "normal"},
            "notification": {"tag": f"repair:{repair['id']}"},
        },
    }


def test_a_break_reminder_carries_the_cursor_of_the_pause(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """The guide: data {type, repair_id, cursor}, the cursor that of `repair.paused`; the
    collapse key, priority and time to live of message pushes; a title for each partner."""
    maya, sam = client.couple("Maya", "Sam")
    devices_of(client, maya, "maya")
    devices_of(client, sam, "sam")
    repair = start(client, maya)
    clock.freeze(clock.now())
    paused = client.post(f"/api/v1/repairs/{repair['id']}/pause", as_=sam, json={"minutes": 20})
    assert paused.status_code == 200, paused.text
    cursor = str(cursor_of(client, maya, "repair.paused"))
    clock.freeze(datetime.fromisoformat(paused.json()["paused_until"]))
    assert fcm_worker.run_once().pushes == 6
    texts = {
        "maya": ("Sam's break is over", "You can come back to your repair conversation together."),
        "sam": ("Your break is over", "Come back to your repair conversation when ready."),
    }
    for name, (title, body) in texts.items():
        sent = by_platform(standin, name)
        for message in sent.values():
            assert message["data"] == {
                "type": "repair.reminder",
                "repair_id": repair["id"],
                "cursor": cursor,
            }
            assert message["notification"] == {"title": title, "body": body}
        assert sent["android"]["android"] == {
            "collapse_key": f"repair:{repair['id']}",
            "notification": {"channel_id": "repairs", "tag": f"repair:{repair['id']}"},
            "priority": "normal",
            "ttl": "86400s",
        }
        headers = sent["ios"]["apns"]["headers"]
        assert headers["apns-collapse-id"] == f"repair:{repair['id']}"
        assert headers["apns-priority"] == "5"
        assert sent["web"]["webpush"]["headers"]["Urgency"] == "normal"
    # The worker ended the break after the reminders' cursor: a phone syncs on a reminder.
    assert cursor_of(client, client.fresh(maya), "repair.resumed") > int(cursor)


def test_a_push_sent_again_replaces_its_android_notification_rather_than_adding_one(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """A collapse key only collapses what FCM still holds for an offline phone: one that is
    online shows every push it gets. The notification's tag is what replaces one already shown
    (a push sent again after FCM's answer was lost, a newer message of the same conversation),
    and what the app removes once sync says the bid or the messages are done with."""
    maya, sam = client.couple("Maya", "Sam")
    body = {"platform": "android", "push_token": "sam-android-token"}
    assert client.post("/api/v1/devices", as_=sam, json=body).status_code == 201
    standin.script("sam-android-token", fcm.internal())
    bid = client.post(
        "/api/v1/bids", as_=maya, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    ).json()
    fcm_worker.run_once()  # FCM's answer: 500, whether or not the phone got it
    clock.freeze(clock.now() + timedelta(seconds=5))
    assert fcm_worker.run_once().pushes == 1
    repair = start(client, maya)
    write(client, maya, repair["id"], body="First.")
    fcm_worker.run_once()
    write(client, maya, repair["id"], body="Second.")
    fcm_worker.run_once()

    tags = [m["android"]["notification"].get("tag") for m in standin.messages()]
    assert tags == [f"bid:{bid['id']}"] * 2 + [f"repair:{repair['id']}"] * 2


def test_a_bid_push_sent_late_in_its_pass_lives_no_longer_than_its_bid(
    app: Flask, client: ApiClient, standin: FcmStandIn, credentials_file: Path
) -> None:
    """The time to live is counted when the push is sent, not when its pass began: with FCM
    answering slowly a batch's last sends go out seconds after its first, and a push that
    outlived its bid would show the phone a bid that is over."""
    maya, sam = client.couple("Maya", "Sam")
    for index in range(3):
        body = {"platform": "android", "push_token": f"sam-android-{index}"}
        assert client.post("/api/v1/devices", as_=sam, json=body).status_code == 201
    body = {"client_id": str(uuid.uuid4()), "kind": "connect"}
    expires = datetime.fromisoformat(
        client.post("/api/v1/bids", as_=maya, json=body).json()["expires_at"]
    ).timestamp()
    standin.default_delay = 1.5
    backend = FcmBackend(str(credentials_file), standin.url, max_concurrency=1, timeout_seconds=5)
    try:
        worker = Worker(app, name="one-at-a-time", dispatcher=Dispatcher(backend))
        assert worker.run_once().pushes == 3
    finally:
        backend.close()

    received = standin.received()
    assert received[-1].at - received[0].at >= 2.5
    for send in received:
        ttl = int(send.body["message"]["android"]["ttl"].removesuffix("s"))
        assert ttl <= expires - send.at + 1


def test_a_bid_that_expires_while_its_pass_is_sending_is_not_pushed_after(
    app: Flask, client: ApiClient, standin: FcmStandIn, credentials_file: Path
) -> None:
    """A push whose bid expires while it waits for its turn in a slow pass does not leave:
    the phone would be told of a bid that is over. The next pass finds its job expired."""
    maya, sam = client.couple("Maya", "Sam")
    for token in ("sam-first", "sam-second"):
        body = {"platform": "android", "push_token": token}
        assert client.post("/api/v1/devices", as_=sam, json=body).status_code == 201
    body = {"client_id": str(uuid.uuid4()), "kind": "connect"}
    bid = client.post("/api/v1/bids", as_=maya, json=body).json()
    expires = datetime.fromisoformat(bid["expires_at"])
    clock.freeze(expires - timedelta(seconds=1))
    standin.script("sam-first", fcm.slow(1.5))
    # The bid's expiry comes while the first send waits for FCM's answer.
    timer = threading.Timer(0.5, clock.freeze, args=(expires + timedelta(seconds=1),))
    backend = FcmBackend(str(credentials_file), standin.url, max_concurrency=1, timeout_seconds=5)
    try:
        worker = Worker(app, name="one-at-a-time", dispatcher=Dispatcher(backend))
        timer.start()
        worker.run_once(housekeeping=False)
        timer.join()
        assert [m["token"] for m in standin.messages()] == ["sam-first"]
        assert worker.run_once().pushes == 0
    finally:
        backend.close()
    assert [m["token"] for m in standin.messages()] == ["sam-first"]
    answer = client.get(f"/api/v1/bids/{bid['id']}", as_=client.fresh(sam))
    assert answer.json()["status"] == "expired"


def test_a_push_sent_again_replaces_its_browser_notification_rather_than_adding_one(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """Web Push's Topic, like a collapse key, replaces only what the push service still holds:
    the notification's tag is what replaces one a browser shows already."""
    maya, sam = client.couple("Maya", "Sam")
    body = {"platform": "web", "push_token": "sam-web-token"}
    assert client.post("/api/v1/devices", as_=sam, json=body).status_code == 201
    standin.script("sam-web-token", fcm.internal())
    bid = client.post(
        "/api/v1/bids", as_=maya, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    ).json()
    fcm_worker.run_once()
    clock.freeze(clock.now() + timedelta(seconds=5))
    assert fcm_worker.run_once().pushes == 1

    tags = [m["webpush"].get("notification", {}).get("tag") for m in standin.messages()]
    assert tags == [f"bid:{bid['id']}"] * 2
