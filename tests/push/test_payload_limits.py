"""The largest pushes Reach can make still fit FCM's 4096-byte limit, which the stand-in enforces
as FCM does; and what a push shows on a lock screen."""

from __future__ import annotations

import uuid
from pathlib import Path

from service.push import PushMessage
from service.push.fcm import FcmBackend
from service.worker.runner import Worker
from tests.push.test_delivery import device
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn

# Four bytes of UTF-8 each (and a surrogate pair each, escaped as JSON text): the most bytes a
# character can take. A display name has at most 60 characters, a note 280, a message body 4000.
WIDE = "\U0001f62d"
NAME, NOTE, BODY = WIDE * 60, WIDE * 279 + '"', (WIDE + "\\") * 2000
PLATFORMS = {"ben-iphone": "ios", "ben-android": "android", "ben-browser": "web"}


def wide_couple(client: ApiClient) -> tuple[Person, Person]:
    """Ana and Ben with the longest names; Ben shows notes on his lock screen and has a device
    of each platform."""
    ana, ben = client.couple("Ana", "Ben")
    for person in (ana, ben):
        answer = client.patch("/api/v1/me", as_=person, json={"display_name": NAME})
        assert answer.status_code == 200, answer.text
    answer = client.patch("/api/v1/me", as_=ben, json={"notes_on_lock_screen": True})
    assert answer.status_code == 200, answer.text
    for token, platform in PLATFORMS.items():
        device(client, ben, token, platform)
    return ana, ben


def sent_to_ben(standin: FcmStandIn) -> dict[str, dict]:  # type: ignore[type-arg]
    received = standin.received()
    assert [r.answer for r in received] == [fcm.SUCCESS] * len(received)
    return {r.body["message"]["token"]: r.body["message"] for r in received}


def test_a_bid_with_the_longest_name_and_note_reaches_every_platform(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, _ben = wide_couple(client)
    body = {"client_id": str(uuid.uuid4()), "kind": "comfort", "note": NOTE}
    assert client.post("/api/v1/bids", as_=ana, json=body).status_code == 201

    assert fcm_worker.run_once().pushes == 3

    messages = sent_to_ben(standin)
    assert set(messages) == set(PLATFORMS)
    for message in messages.values():
        assert fcm.payload_bytes(message) <= fcm.MAX_PAYLOAD_BYTES
        assert message["notification"] == {"title": f"{NAME} is reaching for you", "body": NOTE}


def test_a_repair_message_of_the_longest_body_pushes_without_its_words(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, _ben = wide_couple(client)
    repair = client.post("/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4())})
    assert repair.status_code == 201, repair.text
    written = client.post(
        f"/api/v1/repairs/{repair.json()['id']}/messages",
        as_=ana,
        json={"client_id": str(uuid.uuid4()), "body": BODY},
    )
    assert written.status_code == 201, written.text

    assert fcm_worker.run_once().pushes == 3

    messages = sent_to_ben(standin)
    assert set(messages) == set(PLATFORMS)
    for message in messages.values():
        assert message["notification"] == {
            "title": f"{NAME} wrote in your repair conversation",
            "body": "Open Reach to read it.",
        }
        assert WIDE + "\\" not in str(message)  # never the words, whatever the opt-in says


def test_the_stand_in_refuses_what_fcm_would_refuse(
    standin: FcmStandIn, credentials_file: Path
) -> None:
    """Data and notification just under 4096 bytes: Android's fits; an iPhone's does not once
    FCM puts its `aps` dictionary beside the data."""
    note = "n" * 4000
    sender = FcmBackend(str(credentials_file), standin.url, timeout_seconds=5)
    try:
        results = sender.send_batch(
            [
                PushMessage(
                    key=f"big-{platform}",
                    device_id=uuid.uuid4(),
                    platform=platform,  # type: ignore[arg-type]
                    token=f"{platform}-token",
                    data={"type": "bid.created"},
                    collapse_key="bid:1",
                    title="Ana is reaching for you",
                    body=note,
                )
                for platform in ("android", "ios")
            ]
        )
    finally:
        sender.close()

    assert [(r.outcome, r.error) for r in results] == [
        ("sent", None),
        ("invalid", "INVALID_ARGUMENT"),
    ]
    answers = {r.body["message"]["token"]: r.answer for r in standin.received()}
    assert answers == {"android-token": fcm.SUCCESS, "ios-token": fcm.TOO_BIG}
