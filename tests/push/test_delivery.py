"""Pushes from the outbox: the worker sends a bid to every active device of the partner
through firebase-admin, retries what FCM asks it to, drops dead tokens, dead-letters the rest."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from service.clock import clock
from service.extensions import db
from service.models import Device, PushAttempt, PushDelivery, PushJob
from service.services import push_outbox
from service.worker.runner import Worker
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn


def device(client: ApiClient, who: Person, token: str, platform: str = "android") -> dict:  # type: ignore[type-arg]
    response = client.post(
        "/api/v1/devices", as_=who, json={"platform": platform, "push_token": token}
    )
    assert response.status_code == 201
    return dict(response.json())


def bid(client: ApiClient, sender: Person, note: str | None = None) -> dict:  # type: ignore[type-arg]
    body: dict[str, object] = {"client_id": str(uuid.uuid4()), "kind": "comfort"}
    if note:
        body["note"] = note
    response = client.post("/api/v1/bids", as_=sender, json=body)
    assert response.status_code == 201
    return dict(response.json())


def jobs(worker: Worker) -> list[PushJob]:
    with worker.app.app_context(), db.scope() as session:
        return list(session.scalars(select(PushJob).order_by(PushJob.id)))


def test_a_bid_reaches_every_active_device_of_the_partner_and_none_of_the_sender(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple("Ana", "Ben")
    device(client, ana, "ana-phone-token")
    device(client, ben, "ben-android-token")
    device(client, ben, "ben-iphone-token", "ios")
    gone = device(client, ben, "ben-old-tablet")
    client.delete(f"/api/v1/devices/{gone['id']}", as_=ben)

    sent = bid(client, ana, note="I miss you, secret words")
    assert fcm_worker.run_once().pushes == 2

    messages = {m["token"]: m for m in standin.messages()}
    assert set(messages) == {"ben-android-token", "ben-iphone-token"}
    events = client.get("/api/v1/sync", as_=ben).json()["events"]
    cursor = next(e["cursor"] for e in events if e["type"] == "bid.created")
    for message in messages.values():
        assert message["data"] == {
            "type": "bid.created",
            "bid_id": sent["id"],
            "cursor": str(cursor),
        }
        assert message["notification"]["title"] == "Ana is reaching for you"
        # No note on the lock screen unless Ben opted in.
        assert "secret words" not in str(message)
    android = messages["ben-android-token"]["android"]
    assert android["priority"] == "high"
    assert android["collapse_key"] == f"bid:{sent['id']}"
    assert 86390 <= int(android["ttl"].rstrip("s")) <= 86400
    apns = messages["ben-iphone-token"]["apns"]["headers"]
    assert apns["apns-priority"] == "10" and apns["apns-collapse-id"] == f"bid:{sent['id']}"
    # Everything is recorded, and nothing is sent twice.
    assert [j.state for j in jobs(fcm_worker)] == ["done"]
    assert fcm_worker.run_once().pushes == 0
    assert len(standin.messages()) == 2


def test_the_note_shows_only_when_the_partner_opted_in(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    client.patch("/api/v1/me", as_=ben, json={"notes_on_lock_screen": True})
    device(client, ben, "ben-token-opted-in")
    bid(client, ana, note="dinner at 8?")
    fcm_worker.run_once()
    assert standin.messages()[0]["notification"]["body"] == "dinner at 8?"


def test_a_note_waiting_for_the_morning_stays_off_the_lock_screen_once_hidden(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """Ben showed notes when the bid came, in his quiet hours; he stopped before it went out."""
    ana = client.register("Ana", "Asia/Tokyo")
    ben = client.register("Ben", "Asia/Tokyo")
    client.pair(ana, ben)
    settings = {"notes_on_lock_screen": True, "quiet_hours": {"start": "23:00", "end": "07:30"}}
    client.patch("/api/v1/me", as_=ben, json=settings)
    device(client, ben, "ben-night-token")
    # 16:00 UTC is 01:00 in Tokyo; the push waits until 07:30 there (22:30 UTC).
    clock.freeze(datetime(2031, 5, 1, 16, 0, tzinfo=UTC))
    ana = client.fresh(ana)
    bid(client, ana, note="secret plans for tonight")
    other = bid(client, ana, note="secret plans, take two")
    assert fcm_worker.run_once().pushes == 0
    hidden = client.patch("/api/v1/me", as_=client.fresh(ben), json={"notes_on_lock_screen": False})
    assert hidden.status_code == 200, hidden.text
    clock.freeze(datetime(2031, 5, 1, 22, 30, tzinfo=UTC))
    assert fcm_worker.run_once().pushes == 2
    bodies = [m["notification"]["body"] for m in standin.messages()]
    assert bodies == [push_outbox.BID_BODIES["comfort"]] * 2
    # The bids themselves keep their notes for the couple.
    shown = client.get(f"/api/v1/bids/{other['id']}", as_=client.fresh(ben)).json()
    assert shown["note"] == "secret plans, take two"


def test_a_dead_token_is_disabled_at_once_and_never_tried_again(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    device(client, ben, "ben-dead-token")
    device(client, ben, "ben-live-token")
    standin.script("ben-dead-token", fcm.UNREGISTERED)
    bid(client, ana)
    fcm_worker.run_once()
    listed = {d["id"]: d for d in client.get("/api/v1/devices", as_=ben).json()["items"]}
    states = sorted((d["active"], d["disabled_reason"]) for d in listed.values())
    assert states == [(False, "unregistered"), (True, None)]
    bid(client, ana)
    fcm_worker.run_once()
    tokens = [m["token"] for m in standin.messages()]
    assert tokens.count("ben-dead-token") == 1
    assert tokens.count("ben-live-token") == 2
    assert [j.state for j in jobs(fcm_worker)] == ["done", "done"]


def test_a_dead_tokens_refusal_is_forgotten_after_the_retention_operators_set(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SHA-256 of a token FCM declared dead was kept for ever. It goes with the worker's
    prune once DEAD_PUSH_TOKEN_RETENTION_DAYS have passed: until then registering the token
    again is refused, its device deleted or not; after, it is taken as any new token."""
    settings = fcm_worker.app.extensions["reach.settings"]
    monkeypatch.setitem(
        fcm_worker.app.extensions,
        "reach.settings",
        settings.with_overrides(DEAD_PUSH_TOKEN_RETENTION_DAYS=90),
    )
    t0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    clock.freeze(t0)
    ana, ben = client.couple()
    dead = device(client, ben, "ben-dead-token")
    standin.script("ben-dead-token", fcm.UNREGISTERED)
    bid(client, ana)
    fcm_worker.run_once()
    assert client.delete(f"/api/v1/devices/{dead['id']}", as_=ben).status_code == 204
    body = {"platform": "android", "push_token": "ben-dead-token"}

    def register() -> int:
        return client.post("/api/v1/devices", as_=client.fresh(ben), json=body).status_code

    assert register() == 422
    clock.freeze(t0 + timedelta(days=89))
    fcm_worker.prune()
    assert register() == 422
    clock.freeze(t0 + timedelta(days=91))
    fcm_worker.prune()
    assert register() == 201
    listed = client.get("/api/v1/devices", as_=ben).json()["items"]
    assert [(d["active"], d["disabled_reason"]) for d in listed] == [(True, None)]


def test_sender_id_mismatch_also_disables_the_token(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    device(client, ben, "ben-other-project")
    standin.script("ben-other-project", fcm.SENDER_ID_MISMATCH)
    bid(client, ana)
    fcm_worker.run_once()
    (listed,) = client.get("/api/v1/devices", as_=ben).json()["items"]
    assert (listed["active"], listed["disabled_reason"]) == (False, "sender_id_mismatch")
    # Usually the credentials were of another project: once they are mended, the phone's next
    # registration of the same token turns it on again (an unregistered token stays off).
    again = client.post(
        "/api/v1/devices", as_=ben, json={"platform": "android", "push_token": "ben-other-project"}
    )
    assert again.status_code == 201 and again.json()["active"] is True


def test_a_token_fcm_calls_malformed_is_disabled_and_refused_but_a_bad_message_is_not(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """FCM answers INVALID_ARGUMENT both for a registration token that is not one and for a
    message it will not take. Only the first says anything about the device."""
    ana, ben = client.couple()
    device(client, ben, "ben-mangled-token")
    device(client, ben, "ben-good-token")
    standin.script("ben-mangled-token", fcm.INVALID_TOKEN)
    standin.script("ben-good-token", fcm.INVALID_DATA)
    bid(client, ana)
    fcm_worker.run_once()

    listed = {d["id"]: d for d in client.get("/api/v1/devices", as_=ben).json()["items"]}
    states = sorted((d["active"], d["disabled_reason"]) for d in listed.values())
    assert states == [(False, "invalid_token"), (True, None)]
    bid(client, ana)
    fcm_worker.run_once()
    tokens = [m["token"] for m in standin.messages()]
    assert (tokens.count("ben-mangled-token"), tokens.count("ben-good-token")) == (1, 2)
    # A token that is not one never becomes one: the phone must register the one it has.
    again = client.post(
        "/api/v1/devices", as_=ben, json={"platform": "android", "push_token": "ben-mangled-token"}
    )
    assert again.status_code == 422, again.text
    assert "push_token" in again.json()["errors"]


def test_429_is_retried_no_sooner_than_fcm_asked(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    device(client, ben, "ben-quota-token")
    standin.script("ben-quota-token", fcm.quota_exceeded("30"))
    clock.freeze(datetime(2031, 5, 1, 12, 0, tzinfo=UTC))
    bid(client, client.fresh(ana))
    fcm_worker.run_once()
    (job,) = jobs(fcm_worker)
    assert job.state == "pending"
    assert job.available_at >= datetime(2031, 5, 1, 12, 0, 30, tzinfo=UTC)
    clock.freeze(datetime(2031, 5, 1, 12, 0, 29, tzinfo=UTC))
    assert fcm_worker.run_once().pushes == 0
    clock.freeze(job.available_at)
    assert fcm_worker.run_once().pushes == 1
    answers = [r.answer.status if r.answer else None for r in standin.received()]
    assert answers == [429, 200]
    assert [j.state for j in jobs(fcm_worker)] == ["done"]


def test_a_retry_that_would_fall_in_quiet_hours_waits_until_they_end(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """FCM asks to come back in 30 minutes at 21:50 in Berlin; Ben's quiet hours start at
    22:00, so the push goes at 07:00, not at 22:20."""
    ana, ben = client.couple("Ana", "Ben")
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    device(client, ben, "ben-bedtime-token")
    standin.script("ben-bedtime-token", fcm.quota_exceeded("1800"))
    clock.freeze(datetime(2031, 5, 1, 19, 50, tzinfo=UTC))  # 21:50 in Berlin
    bid(client, client.fresh(ana))
    assert fcm_worker.run_once().pushes == 1
    (job,) = jobs(fcm_worker)
    assert (job.state, job.available_at) == ("pending", datetime(2031, 5, 2, 5, 0, tzinfo=UTC))
    clock.freeze(datetime(2031, 5, 1, 20, 25, tzinfo=UTC))  # 22:25 in Berlin
    assert fcm_worker.run_once().pushes == 0
    clock.freeze(datetime(2031, 5, 2, 5, 0, tzinfo=UTC))  # 07:00 in Berlin
    assert fcm_worker.run_once().pushes == 1
    assert [j.state for j in jobs(fcm_worker)] == ["done"]
    assert len(standin.messages()) == 2


def test_503_is_retried_with_backoff(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    device(client, ben, "ben-flaky-token")
    standin.script("ben-flaky-token", fcm.unavailable(), fcm.unavailable("5"))
    start = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    clock.freeze(start)
    bid(client, client.fresh(ana))
    fcm_worker.run_once()
    first_retry = jobs(fcm_worker)[0].available_at
    # Backoff base 2 s with jitter: between 1 and 2 seconds after the first try.
    assert start + timedelta(seconds=1) <= first_retry <= start + timedelta(seconds=2)
    clock.freeze(first_retry)
    fcm_worker.run_once()
    second_retry = jobs(fcm_worker)[0].available_at
    assert second_retry >= first_retry + timedelta(seconds=5)  # Retry-After: 5 wins
    clock.freeze(second_retry)
    fcm_worker.run_once()
    assert [j.state for j in jobs(fcm_worker)] == ["done"]
    assert len(standin.messages()) == 3


def test_fcm_overloaded_holds_every_push_until_its_retry_after_not_only_the_refused_one(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """A 503 with Retry-After is FCM saying it is overloaded: until then the worker sends
    nothing, rather than spend an attempt of every push queued meanwhile on a refusal."""
    ana, ben = client.couple("Ana", "Ben")
    cat, dan = client.couple("Cat", "Dan")
    device(client, ben, "ben-token")
    device(client, dan, "dan-token")
    standin.script("ben-token", fcm.unavailable("30"))
    start = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    clock.freeze(start)
    bid(client, client.fresh(ana))
    assert fcm_worker.run_once().pushes == 1
    bid(client, client.fresh(cat))  # queued while FCM is overloaded

    clock.freeze(start + timedelta(seconds=29))
    assert fcm_worker.run_once().pushes == 0
    assert [m["token"] for m in standin.messages()] == ["ben-token"]
    assert [(j.state, j.attempts) for j in jobs(fcm_worker)] == [("pending", 1), ("pending", 0)]

    clock.freeze(start + timedelta(seconds=31))
    assert fcm_worker.run_once().pushes == 2
    assert sorted(m["token"] for m in standin.messages()) == ["ben-token", "ben-token", "dan-token"]
    assert [(j.state, j.attempts) for j in jobs(fcm_worker)] == [("done", 2), ("done", 1)]


def test_a_retry_for_a_device_that_moved_meanwhile_ends_with_it(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """The tablet was to be tried again, then Cat signed in on it (its token is hers now): Ben's
    push never goes to her, and the job is done instead of waiting for that device forever."""
    ana, ben = client.couple()
    cat = client.register("Cat")
    device(client, ben, "ben-phone-token")
    device(client, ben, "shared-tablet-token")
    standin.script("shared-tablet-token", fcm.unavailable())
    clock.freeze(datetime(2031, 5, 1, 12, 0, tzinfo=UTC))
    ana, cat = client.fresh(ana), client.fresh(cat)
    bid(client, ana)
    fcm_worker.run_once()  # the phone has it; the tablet is to be tried again
    assert [j.state for j in jobs(fcm_worker)] == ["pending"]
    tablet = {"platform": "android", "push_token": "shared-tablet-token"}
    moved = client.post("/api/v1/devices", as_=cat, json=tablet)
    assert moved.status_code == 201  # an upsert: the token existed, it is Cat's device now
    clock.advance(timedelta(minutes=5))
    assert fcm_worker.run_once().pushes == 0
    assert [j.state for j in jobs(fcm_worker)] == ["done"]
    with fcm_worker.app.app_context(), db.scope() as session:
        states = dict(
            session.execute(
                select(Device.push_token, PushDelivery.state).join(
                    PushDelivery, PushDelivery.device_id == Device.id
                )
            ).all()
        )
    assert states == {"ben-phone-token": "sent", "shared-tablet-token": "skipped"}
    tried = sorted(m["token"] for m in standin.messages())
    assert tried == ["ben-phone-token", "shared-tablet-token"]  # the tablet once, for Ben


def test_a_push_that_keeps_failing_is_dead_lettered_with_every_attempt_recorded(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    device(client, ben, "ben-broken-token")
    standin.script("ben-broken-token", *[fcm.internal()] * 10)
    clock.freeze(datetime(2031, 5, 1, 12, 0, tzinfo=UTC))
    bid(client, client.fresh(ana))
    for _ in range(6):
        fcm_worker.run_once()
        clock.advance(timedelta(minutes=5))
    (job,) = jobs(fcm_worker)
    assert job.state == "dead"
    assert job.attempts == 4
    with fcm_worker.app.app_context(), db.scope() as session:
        attempts = list(session.scalars(select(PushAttempt.outcome)))
    assert attempts == ["retry"] * 4
    assert len(standin.messages()) == 4


def test_pushes_wait_out_quiet_hours_but_the_socket_does_not(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "Asia/Tokyo")
    client.pair(ana, ben)
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "23:00", "end": "07:30"}})
    device(client, ben, "ben-sleeping-token")
    # 16:00 UTC is 01:00 in Tokyo; quiet hours end at 07:30 there = 22:30 UTC.
    clock.freeze(datetime(2031, 5, 1, 16, 0, tzinfo=UTC))
    bid(client, client.fresh(ana))
    assert fcm_worker.run_once().pushes == 0
    (job,) = jobs(fcm_worker)
    assert job.available_at == datetime(2031, 5, 1, 22, 30, tzinfo=UTC)
    clock.freeze(datetime(2031, 5, 1, 22, 30, tzinfo=UTC))
    assert fcm_worker.run_once().pushes == 1


def test_one_devices_failure_neither_holds_up_nor_resends_the_others(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """Every answer FCM can give, in one pass: each device's push is recorded by its own
    outcome, another couple's push in the same batch is done, and the retry sends again only
    to the devices FCM asked for it."""
    ana, ben = client.couple("Ana", "Ben")
    cat, dan = client.couple("Cat", "Dan")
    answers = {
        "ben-good-one": fcm.SUCCESS,
        "ben-dead-one": fcm.UNREGISTERED,
        "ben-quota-one": fcm.quota_exceeded("30"),
        "ben-cut-off": fcm.HANG_UP,
        "ben-apns-key": fcm.THIRD_PARTY_AUTH_ERROR,
    }
    for token, answer in answers.items():
        device(client, ben, token, "ios")
        standin.script(token, answer)
    device(client, dan, "dan-good-one")
    start = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    clock.freeze(start)
    bid(client, client.fresh(ana))
    bid(client, client.fresh(cat))

    assert fcm_worker.run_once().pushes == 6

    for_ben, for_dan = jobs(fcm_worker)
    assert for_dan.state == "done"
    assert for_ben.state == "pending"
    assert for_ben.available_at >= start + timedelta(seconds=30)
    with fcm_worker.app.app_context(), db.scope() as session:
        rows = session.execute(
            select(Device.push_token, PushDelivery.state, PushDelivery.attempts)
            .join(Device, Device.id == PushDelivery.device_id)
            .where(PushDelivery.job_id == for_ben.id)
        ).all()
        tried = session.scalar(select(func.count()).select_from(PushAttempt))
    assert sorted(rows) == [
        ("ben-apns-key", "failed", 1),
        ("ben-cut-off", "pending", 1),
        ("ben-dead-one", "unregistered", 1),
        ("ben-good-one", "sent", 1),
        ("ben-quota-one", "pending", 1),
    ]
    assert tried == 6

    clock.freeze(for_ben.available_at)
    assert fcm_worker.run_once().pushes == 2
    tokens = sorted(m["token"] for m in standin.messages())
    assert tokens == sorted([*answers, "dan-good-one", "ben-quota-one", "ben-cut-off"])
    # Two devices got it on the second try; one cannot be reached: dead-lettered for operators.
    assert [j.state for j in jobs(fcm_worker)] == ["dead", "done"]


def test_an_absurd_retry_after_neither_fails_the_pass_nor_parks_the_push_for_ever(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """A Retry-After past the calendar's end (a broken proxy's, or a misread header) would make
    the retry's time overflow: the whole pass would fail after its pushes went out, and every
    one of them go out again once its lease ran out. FCM is asked again within a day."""
    ana, ben = client.couple("Ana", "Ben")
    cat, dan = client.couple("Cat", "Dan")
    device(client, ben, "ben-throttled")
    device(client, dan, "dan-good-one")
    standin.script("ben-throttled", fcm.quota_exceeded("99999999999999"))
    start = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    clock.freeze(start)
    bid(client, client.fresh(ana))
    bid(client, client.fresh(cat))

    assert fcm_worker.run_once().pushes == 2

    for_ben, for_dan = jobs(fcm_worker)
    assert (for_ben.state, for_dan.state) == ("pending", "done")
    assert start < for_ben.available_at <= start + timedelta(days=1)
    clock.freeze(start + timedelta(minutes=10))
    assert fcm_worker.run_once().pushes == 0  # nothing sent twice
