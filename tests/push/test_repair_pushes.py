"""Repair pushes: a message tells the partner without its words; breaks end with a reminder to
both phones at the promised time, and never after the conversation was resumed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from service.clock import clock
from service.extensions import db
from service.models import PushJob
from service.worker.runner import Worker
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn
from tests.support.phones import Phone
from tests.support.repairs import start

T0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)


def device(client: ApiClient, who: Person, token: str, platform: str = "android") -> None:
    response = client.post(
        "/api/v1/devices", as_=who, json={"platform": platform, "push_token": token}
    )
    assert response.status_code == 201, response.text


def write(client: ApiClient, who: Person, repair_id: str, body: str, **extra: Any) -> Any:
    payload = {"client_id": str(uuid.uuid4()), "body": body, **extra}
    return client.post(f"/api/v1/repairs/{repair_id}/messages", as_=who, json=payload)


def pause(client: ApiClient, who: Person, repair_id: str, minutes: int) -> dict[str, Any]:
    response = client.post(f"/api/v1/repairs/{repair_id}/pause", as_=who, json={"minutes": minutes})
    assert response.status_code == 200, response.text
    return dict(response.json())


def jobs(worker: Worker, kind: str | None = None) -> list[PushJob]:
    with worker.app.app_context(), db.scope() as session:
        query = select(PushJob).order_by(PushJob.id)
        if kind:
            query = query.where(PushJob.kind == kind)
        return list(session.scalars(query))


def paired_with_devices(client: ApiClient) -> tuple[Person, Person]:
    ana, ben = client.couple("Ana", "Ben")
    device(client, ana, "ana-token")
    device(client, ben, "ben-android-token")
    device(client, ben, "ben-iphone-token", "ios")
    return ana, ben


def test_a_message_tells_the_partner_without_its_words(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = paired_with_devices(client)
    client.patch("/api/v1/me", as_=ben, json={"notes_on_lock_screen": True})
    repair = start(client, ana)
    client_id = str(uuid.uuid4())
    payload = {"client_id": client_id, "body": "my secret words"}
    sent = client.post(f"/api/v1/repairs/{repair['id']}/messages", as_=ana, json=payload)
    retry = client.post(f"/api/v1/repairs/{repair['id']}/messages", as_=ana, json=payload)
    assert sent.status_code == 201 and retry.status_code == 200
    assert fcm_worker.run_once().pushes == 2

    messages = {m["token"]: m for m in standin.messages()}
    assert set(messages) == {"ben-android-token", "ben-iphone-token"}
    events = client.get("/api/v1/sync", as_=ben).json()["events"]
    cursor = next(e["cursor"] for e in events if e["type"] == "repair.message")
    for message in messages.values():
        assert "secret" not in str(message)
        assert message["notification"]["title"] == "Ana wrote in your repair conversation"
        assert message["data"] == {
            "type": "repair.message",
            "repair_id": repair["id"],
            "seq": "1",
            "cursor": str(cursor),
        }
    android = messages["ben-android-token"]["android"]
    assert android["collapse_key"] == f"repair:{repair['id']}"
    assert android["priority"] == "normal"
    assert android["notification"]["channel_id"] == "repairs"
    apns = messages["ben-iphone-token"]["apns"]["headers"]
    assert apns["apns-collapse-id"] == f"repair:{repair['id']}"

    # The next message collapses onto the same notification; the author is never pushed.
    assert write(client, ben, repair["id"], "me too").status_code == 201
    assert fcm_worker.run_once().pushes == 1
    last = standin.messages()[-1]
    assert last["token"] == "ana-token"
    assert last["android"]["collapse_key"] == f"repair:{repair['id']}"
    assert [j.state for j in jobs(fcm_worker)] == ["done", "done"]


def test_message_pushes_wait_out_quiet_hours(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = paired_with_devices(client)
    # Ben sleeps 22:00-07:00 in Berlin (UTC+2 in May): until 05:00Z.
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    clock.freeze(datetime(2031, 5, 1, 23, 0, tzinfo=UTC))
    repair = start(client, client.fresh(ana))
    assert write(client, ana, repair["id"], "are you awake?").status_code == 201
    assert fcm_worker.run_once().pushes == 0
    (job,) = jobs(fcm_worker, "repair.message")
    assert job.available_at == datetime(2031, 5, 2, 5, 0, tzinfo=UTC)
    clock.freeze(job.available_at)
    assert fcm_worker.run_once().pushes == 2


def test_pause_reminders_reach_both_phones_at_the_promised_time(
    client: ApiClient,
    fcm_worker: Worker,
    standin: FcmStandIn,
    phone: Callable[[str | None], Phone],
) -> None:
    ana, ben = paired_with_devices(client)
    clock.freeze(T0)
    repair = start(client, client.fresh(ana))
    paused = pause(client, client.fresh(ben), repair["id"], 45)
    promised = T0 + timedelta(minutes=45)
    assert paused["paused_until"] == "2031-05-01T12:45:00.000000Z"
    reminders = jobs(fcm_worker, "repair.reminder")
    assert [j.available_at for j in reminders] == [promised, promised]

    clock.freeze(promised - timedelta(seconds=1))
    tick = fcm_worker.run_once()
    assert (tick.resumed_repairs, tick.pushes) == (0, 0)
    assert standin.messages() == []

    clock.freeze(promised)
    ana_phone = phone(client.fresh(ana).access_token)
    tick = fcm_worker.run_once()
    assert (tick.resumed_repairs, tick.pushes) == (1, 3)
    resumed = ana_phone.wait_for("repair.resumed")["data"]
    assert resumed["id"] == repair["id"] and resumed["paused_until"] is None
    sent = {m["token"]: m for m in standin.messages()}
    assert set(sent) == {"ana-token", "ben-android-token", "ben-iphone-token"}
    assert sent["ana-token"]["notification"]["title"] == "Ben's break is over"
    assert sent["ben-android-token"]["notification"]["title"] == "Your break is over"
    assert sent["ana-token"]["data"]["type"] == "repair.reminder"
    assert sent["ana-token"]["data"]["repair_id"] == repair["id"]
    assert client.get(f"/api/v1/repairs/{repair['id']}", as_=client.fresh(ben)).json() == resumed
    # Each happens once.
    tick = fcm_worker.run_once()
    assert (tick.resumed_repairs, tick.pushes) == (0, 0)


def test_a_break_ended_early_sends_no_reminder(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = paired_with_devices(client)
    clock.freeze(T0)
    repair = start(client, client.fresh(ana))
    pause(client, client.fresh(ben), repair["id"], 30)
    clock.freeze(T0 + timedelta(minutes=10))
    resumed = client.post(f"/api/v1/repairs/{repair['id']}/resume", as_=client.fresh(ana))
    assert resumed.status_code == 200 and resumed.json()["paused_until"] is None
    assert [j.state for j in jobs(fcm_worker, "repair.reminder")] == ["cancelled", "cancelled"]
    clock.freeze(T0 + timedelta(minutes=30))
    tick = fcm_worker.run_once()
    assert (tick.resumed_repairs, tick.pushes) == (0, 0)
    assert standin.messages() == []
    types = [e["type"] for e in client.get("/api/v1/sync", as_=client.fresh(ana)).json()["events"]]
    assert types.count("repair.resumed") == 1


def test_a_resume_after_the_break_ended_keeps_its_reminders(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """The break ended on time and the worker has not ended it yet: the reminders were owed."""
    ana, ben = paired_with_devices(client)
    clock.freeze(T0)
    repair = start(client, client.fresh(ana))
    pause(client, client.fresh(ben), repair["id"], 30)
    clock.freeze(T0 + timedelta(minutes=30, seconds=2))
    resumed = client.post(f"/api/v1/repairs/{repair['id']}/resume", as_=client.fresh(ana))
    assert resumed.status_code == 200 and resumed.json()["paused_until"] is None
    tick = fcm_worker.run_once()
    assert (tick.resumed_repairs, tick.pushes) == (0, 3)
    assert {m["data"]["type"] for m in standin.messages()} == {"repair.reminder"}
    types = [e["type"] for e in client.get("/api/v1/sync", as_=client.fresh(ana)).json()["events"]]
    assert types.count("repair.resumed") == 1


def test_a_new_break_replaces_the_reminders_of_the_last(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = paired_with_devices(client)
    clock.freeze(T0)
    repair = start(client, client.fresh(ana))
    pause(client, client.fresh(ben), repair["id"], 30)
    clock.freeze(T0 + timedelta(minutes=20))
    pause(client, client.fresh(ben), repair["id"], 60)
    states = [(j.state, j.available_at) for j in jobs(fcm_worker, "repair.reminder")]
    later = T0 + timedelta(minutes=80)
    assert states == [("cancelled", T0 + timedelta(minutes=30))] * 2 + [("pending", later)] * 2
    clock.freeze(T0 + timedelta(minutes=30))
    assert fcm_worker.run_once().pushes == 0
    clock.freeze(later)
    assert fcm_worker.run_once().pushes == 3


def test_a_new_break_leaves_the_reminders_of_a_break_that_ended(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """Ben's break ended at T0 + 30 min; before the worker came round, Ana took a break of her
    own. Ben's break ended on time, so its reminders are owed, as they are when someone
    resumes after the end (only a break still running has its reminders replaced)."""
    ana, ben = paired_with_devices(client)
    clock.freeze(T0)
    repair = start(client, client.fresh(ana))
    pause(client, client.fresh(ben), repair["id"], 30)
    clock.freeze(T0 + timedelta(minutes=31))
    pause(client, client.fresh(ana), repair["id"], 20)
    tick = fcm_worker.run_once()
    assert tick.pushes == 3
    titles = {m["token"]: m["notification"]["title"] for m in standin.messages()}
    assert titles["ana-token"] == "Ben's break is over"
    assert titles["ben-android-token"] == "Your break is over"
    clock.freeze(T0 + timedelta(minutes=51))
    assert fcm_worker.run_once().pushes == 3
    titles = {m["token"]: m["notification"]["title"] for m in standin.messages()[3:]}
    assert titles["ana-token"] == "Your break is over"
    assert titles["ben-android-token"] == "Ana's break is over"


def break_ended_in_bens_night(
    client: ApiClient, fcm_worker: Worker
) -> tuple[Person, Person, dict[str, Any]]:
    """Ana's hour-long break ends at 20:30Z, 22:30 in Ben's Berlin: the worker ends it and
    sends her reminder; his waits for his quiet hours (22:00-07:00) to end. Ana, Ben, the talk."""
    ana, ben = paired_with_devices(client)
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    clock.freeze(datetime(2031, 5, 1, 19, 30, tzinfo=UTC))
    repair = start(client, client.fresh(ana))
    pause(client, client.fresh(ana), repair["id"], 60)
    clock.freeze(datetime(2031, 5, 1, 20, 30, tzinfo=UTC))
    tick = fcm_worker.run_once()
    assert (tick.resumed_repairs, tick.pushes) == (1, 1)
    return ana, ben, repair


def test_a_reminder_waiting_for_the_morning_stays_with_its_break(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """Ana's break ended at night; Ben's reminder of it waits for his morning. Ana's new day-long
    break neither withdraws it nor makes it wait for the new break, even once Ben's quiet
    hours change and his held pushes are timed again."""
    ana, ben, repair = break_ended_in_bens_night(client, fcm_worker)
    clock.freeze(datetime(2031, 5, 1, 21, 0, tzinfo=UTC))
    pause(client, client.fresh(ana), repair["id"], 1440)
    quiet = {"quiet_hours": {"start": "23:00", "end": "06:00"}}
    assert client.patch("/api/v1/me", as_=client.fresh(ben), json=quiet).status_code == 200
    clock.freeze(datetime(2031, 5, 2, 4, 0, tzinfo=UTC))  # 06:00 in Berlin
    assert fcm_worker.run_once().pushes == 2
    assert {m["data"]["type"] for m in standin.messages()} == {"repair.reminder"}


def test_a_reminder_waiting_for_the_morning_outlasts_the_next_break(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """Ana's break ended at night; Ben's reminder of it waits for his morning. Ana's next break
    is replaced, and the one after it ended early: each withdraws its own reminders, never the
    one owed for the break that ended on time."""
    ana, ben, repair = break_ended_in_bens_night(client, fcm_worker)
    clock.freeze(datetime(2031, 5, 1, 21, 0, tzinfo=UTC))
    pause(client, client.fresh(ana), repair["id"], 1440)
    clock.freeze(datetime(2031, 5, 1, 21, 5, tzinfo=UTC))
    pause(client, client.fresh(ana), repair["id"], 1440)  # replaces the break of 21:00
    clock.freeze(datetime(2031, 5, 1, 21, 10, tzinfo=UTC))
    resumed = client.post(f"/api/v1/repairs/{repair['id']}/resume", as_=client.fresh(ben))
    assert resumed.status_code == 200 and resumed.json()["paused_until"] is None
    owed = [j for j in jobs(fcm_worker, "repair.reminder") if j.state == "pending"]
    assert [str(j.recipient_id) for j in owed] == [ben.id]
    clock.freeze(datetime(2031, 5, 2, 5, 0, tzinfo=UTC))  # 07:00 in Berlin
    assert fcm_worker.run_once().pushes == 2  # Ben's two phones
    titles = {m["notification"]["title"] for m in standin.messages()[1:]}
    assert titles == {"Ana's break is over"}


def written_in_a_break(
    client: ApiClient, minutes: int, body: str
) -> tuple[Person, Person, dict[str, Any]]:
    """Ana starts a conversation at T0 and pauses it for `minutes`; at T0 + 5 min she writes
    `body`. Returns Ana, Ben and the conversation."""
    ana, ben = paired_with_devices(client)
    clock.freeze(T0)
    repair = start(client, client.fresh(ana))
    pause(client, client.fresh(ana), repair["id"], minutes)
    clock.freeze(T0 + timedelta(minutes=5))
    assert write(client, client.fresh(ana), repair["id"], body).status_code == 201
    return ana, ben, repair


def test_messages_during_a_break_are_held_until_it_ends(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    _ana, ben, repair = written_in_a_break(client, 60, "writing it down")
    (held,) = jobs(fcm_worker, "repair.message")
    assert held.available_at == T0 + timedelta(minutes=60)
    assert fcm_worker.run_once().pushes == 0
    # Ben comes back early: no reminders, and the held message goes now.
    clock.freeze(T0 + timedelta(minutes=25))
    client.post(f"/api/v1/repairs/{repair['id']}/resume", as_=client.fresh(ben))
    assert fcm_worker.run_once().pushes == 2
    assert {m["data"]["type"] for m in standin.messages()} == {"repair.message"}


def test_a_message_push_fcm_asked_to_retry_waits_for_a_break_taken_meanwhile(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """FCM could not take the push of Ana's message and asked to come back in a minute; Ben
    takes a break meanwhile. The retry waits for the break, as the pushes of messages written in
    it do, and goes when he comes back early."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-busy-token")
    clock.freeze(T0)
    repair = start(client, client.fresh(ana))
    assert write(client, client.fresh(ana), repair["id"], "are you there?").status_code == 201
    standin.script("ben-busy-token", fcm.quota_exceeded("60"))
    assert fcm_worker.run_once().pushes == 1
    (job,) = jobs(fcm_worker, "repair.message")
    assert job.state == "pending" and job.attempts == 1
    assert job.available_at >= T0 + timedelta(seconds=60)

    clock.freeze(T0 + timedelta(seconds=30))
    pause(client, client.fresh(ben), repair["id"], 30)
    clock.freeze(T0 + timedelta(minutes=2))  # the retry's time, in the break
    fcm_worker.run_once()
    assert len(standin.messages()) == 1, "a message push went out during the break"

    clock.freeze(T0 + timedelta(minutes=10))
    resumed = client.post(f"/api/v1/repairs/{repair['id']}/resume", as_=client.fresh(ben))
    assert resumed.status_code == 200, resumed.text
    assert fcm_worker.run_once().pushes == 1
    assert [m["data"]["type"] for m in standin.messages()] == ["repair.message"] * 2
    assert [j.state for j in jobs(fcm_worker, "repair.message")] == ["done"]


def test_a_new_break_holds_the_message_pushes_until_it_ends(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """A pause replaces the break before it: a message written in the long break goes when the
    short one that replaced it ends, and one written in a short break waits for the long one."""
    ana, ben, repair = written_in_a_break(client, 1440, "in the long one")
    clock.freeze(T0 + timedelta(minutes=10))
    pause(client, client.fresh(ben), repair["id"], 20)  # ends at T0 + 30 min
    (held,) = jobs(fcm_worker, "repair.message")
    assert held.available_at == T0 + timedelta(minutes=30)
    clock.freeze(T0 + timedelta(minutes=30))
    fcm_worker.run_once()
    sent = [m["data"]["type"] for m in standin.messages()]
    assert sent.count("repair.message") == 2  # Ben's two phones

    clock.freeze(T0 + timedelta(minutes=40))
    pause(client, client.fresh(ana), repair["id"], 20)  # ends at T0 + 60 min
    clock.freeze(T0 + timedelta(minutes=45))
    assert write(client, client.fresh(ana), repair["id"], "in the short one").status_code == 201
    clock.freeze(T0 + timedelta(minutes=50))
    pause(client, client.fresh(ben), repair["id"], 1440)
    later = jobs(fcm_worker, "repair.message")[-1]
    assert later.available_at == T0 + timedelta(minutes=50 + 1440)
    clock.freeze(T0 + timedelta(minutes=61))
    fcm_worker.run_once()
    assert [m["data"]["type"] for m in standin.messages()].count("repair.message") == 2


def test_a_reminder_that_falls_in_quiet_hours_waits_for_the_morning(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = paired_with_devices(client)
    # Ben sleeps 22:00-07:00 in Berlin (05:00Z); Ana has no quiet hours.
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    clock.freeze(datetime(2031, 5, 1, 19, 30, tzinfo=UTC))
    repair = start(client, client.fresh(ana))
    pause(client, client.fresh(ana), repair["id"], 60)  # ends 20:30Z = 22:30 for Ben
    by_person = {str(j.recipient_id): j.available_at for j in jobs(fcm_worker, "repair.reminder")}
    assert by_person == {
        ana.id: datetime(2031, 5, 1, 20, 30, tzinfo=UTC),
        ben.id: datetime(2031, 5, 2, 5, 0, tzinfo=UTC),
    }
    clock.freeze(datetime(2031, 5, 1, 20, 30, tzinfo=UTC))
    tick = fcm_worker.run_once()
    assert (tick.resumed_repairs, tick.pushes) == (1, 1)
    clock.freeze(datetime(2031, 5, 2, 5, 0, tzinfo=UTC))
    assert fcm_worker.run_once().pushes == 2


def test_a_reminder_waiting_for_the_morning_is_withdrawn_once_the_conversation_is_resolved(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """The break ended at night, Ben's reminder waits for his morning, and they resolve the
    conversation meanwhile: nothing is left to come back to, so no reminder wakes him."""
    ana, ben, repair = break_ended_in_bens_night(client, fcm_worker)
    clock.freeze(datetime(2031, 5, 1, 21, 0, tzinfo=UTC))
    for who in (ana, ben):
        heard = client.post(f"/api/v1/repairs/{repair['id']}/resolve", as_=client.fresh(who))
        assert heard.status_code == 200, heard.text
    assert heard.json()["status"] == "resolved"
    clock.freeze(datetime(2031, 5, 2, 5, 0, tzinfo=UTC))
    assert fcm_worker.run_once().pushes == 0
    states = {str(j.recipient_id): j.state for j in jobs(fcm_worker, "repair.reminder")}
    assert states == {ana.id: "done", ben.id: "cancelled"}


def test_after_an_unpair_the_break_ends_quietly(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = paired_with_devices(client)
    clock.freeze(T0)
    repair = start(client, client.fresh(ana))
    pause(client, client.fresh(ben), repair["id"], 30)
    assert client.delete("/api/v1/couple", as_=client.fresh(ana)).status_code == 204
    clock.freeze(T0 + timedelta(minutes=30))
    tick = fcm_worker.run_once()
    assert (tick.resumed_repairs, tick.pushes) == (1, 0)
    assert [j.state for j in jobs(fcm_worker, "repair.reminder")] == ["cancelled", "cancelled"]


def test_messages_read_before_their_push_goes_are_not_pushed(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = paired_with_devices(client)
    clock.freeze(T0)
    repair = start(client, client.fresh(ana))
    pause(client, client.fresh(ana), repair["id"], 60)
    clock.freeze(T0 + timedelta(minutes=5))
    for words in ("first", "second", "third"):
        assert write(client, client.fresh(ana), repair["id"], words).status_code == 201
    # Ben opens the conversation during the break and reads up to the second message.
    read = client.post(
        f"/api/v1/repairs/{repair['id']}/read", as_=client.fresh(ben), json={"seq": 2}
    )
    assert read.status_code == 200, read.text
    states = {j.dedupe_key.rsplit(":", 1)[1]: j.state for j in jobs(fcm_worker, "repair.message")}
    assert states == {"1": "cancelled", "2": "cancelled", "3": "pending"}
    # Ana's own read receipt withdraws nothing of Ben's.
    client.post(f"/api/v1/repairs/{repair['id']}/read", as_=client.fresh(ana), json={"seq": 3})
    clock.freeze(T0 + timedelta(minutes=60))
    fcm_worker.run_once()
    pushed = [m for m in standin.messages() if m["data"]["type"] == "repair.message"]
    assert {(m["token"], m["data"]["seq"]) for m in pushed} == {
        ("ben-android-token", "3"),
        ("ben-iphone-token", "3"),
    }
