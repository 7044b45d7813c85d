"""Repair conversations in real time: two phones, socket writes with acks, offline and back."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.client import ApiClient
from tests.support.phones import Phone
from tests.support.repairs import iso, start

Connect = Callable[[str | None], Phone]


def say(device: Phone, repair_id: str, body: str, **extra: Any) -> dict[str, Any]:
    payload = {"repair_id": repair_id, "client_id": str(uuid.uuid4()), "body": body, **extra}
    ack = device.call("repair.message", payload)
    assert "seq" in ack, ack
    return dict(ack)


def has_seq(seq: int) -> Callable[[Any], bool]:
    return lambda envelope: envelope["data"].get("seq") == seq


def stream(device: Phone) -> list[dict[str, Any]]:
    """Every couple event the phone received, in arrival order."""
    return [data for name, data in device.events if name.startswith(("repair.", "bid."))]


def test_two_phones_talk_over_the_socket(client: ApiClient, phone: Connect) -> None:
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    repair = start(client, ana)
    assert ben_phone.wait_for("repair.started")["data"] == repair

    client_id = str(uuid.uuid4())
    payload = {
        "repair_id": repair["id"],
        "client_id": client_id,
        "body": "I felt alone when you walked out.",
        "step": "what_i_felt",
        "emotions": ["loneliness", "hurt"],
    }
    first = ana_phone.call("repair.message", payload)
    assert first["seq"] == 1 and first["author_id"] == ana.id
    assert ben_phone.wait_for("repair.message", has_seq(1))["data"] == first
    # A retry over the socket returns the original and emits nothing new.
    assert ana_phone.call("repair.message", payload) == first
    reply = say(ben_phone, repair["id"], "I left because I was flooded, not because of you.")
    assert reply["seq"] == 2
    assert ana_phone.wait_for("repair.message", has_seq(2))["data"] == reply
    assert len(ben_phone.named("repair.message")) == 2
    listed = client.get(f"/api/v1/repairs/{repair['id']}/messages", as_=ben).json()
    assert listed["items"] == [first, reply]


def test_socket_writes_refuse_bad_payloads_and_strangers(client: ApiClient, phone: Connect) -> None:
    ana, ben = client.couple()
    stranger = client.register("Sol")
    ana_phone, sol_phone = phone(ana.access_token), phone(stranger.access_token)
    repair = start(client, ben)
    bad = ana_phone.call(
        "repair.message", {"repair_id": repair["id"], "body": "", "emotions": ["bliss"]}
    )
    assert bad["status"] == 422 and {"client_id", "body", "emotions.0"} <= set(bad["errors"])
    assert ana_phone.call("repair.message", ["not", "an", "object"])["status"] == 422
    future = iso(datetime.now(UTC) + timedelta(hours=1))
    late = ana_phone.call(
        "repair.message",
        {
            "repair_id": repair["id"],
            "client_id": str(uuid.uuid4()),
            "body": "x",
            "written_at": future,
        },
    )
    assert late["written_at"] == late["created_at"], late  # a fast clock's message arrives
    intruder = sol_phone.call(
        "repair.message",
        {"repair_id": repair["id"], "client_id": str(uuid.uuid4()), "body": "let me in"},
    )
    assert intruder["status"] == 404 and intruder["code"] == "not_found"
    unknown = ana_phone.call(
        "repair.message",
        {"repair_id": str(uuid.uuid4()), "client_id": str(uuid.uuid4()), "body": "?"},
    )
    assert unknown["status"] == 404
    assert client.get(f"/api/v1/repairs/{repair['id']}", as_=ben).json()["last_seq"] == 1
    assert sol_phone.events == []


def test_a_phone_that_was_offline_catches_up_with_every_message_exactly_once(
    client: ApiClient, phone: Connect
) -> None:
    ana, ben = client.couple()
    ana_phone, ben_phone = phone(ana.access_token), phone(ben.access_token)
    repair = start(client, ana)
    rid = repair["id"]
    say(ana_phone, rid, "Can we talk about last night?", step="what_happened")
    say(ben_phone, rid, "Yes. I want to understand.")
    ben_phone.wait_for("repair.message", has_seq(2))
    last_cursor = max(event["cursor"] for event in stream(ben_phone))

    # Ben's phone loses its connection; Ana keeps writing over her socket.
    ben_phone.disconnect()
    say(ana_phone, rid, "I felt scared when the door closed.", emotions=["fear"])
    # Ben writes three messages offline; his phone sends them by REST when it can, with
    # the time he wrote them, and retries two of them twice (their answers got lost).
    now = datetime.now(UTC)
    drafts = [
        {
            "client_id": str(uuid.uuid4()),
            "body": f"offline thought {n}",
            "written_at": iso(now - timedelta(minutes=30 - n)),
        }
        for n in range(3)
    ]
    sent = []
    for draft in drafts:
        response = client.post(f"/api/v1/repairs/{rid}/messages", as_=ben, json=draft)
        assert response.status_code == 201, response.text
        sent.append(response.json())
    for draft, original in [(drafts[0], sent[0]), (drafts[2], sent[2])] * 2:
        retry = client.post(f"/api/v1/repairs/{rid}/messages", as_=ben, json=draft)
        assert retry.status_code == 200 and retry.json() == original
    assert [m["seq"] for m in sent] == [4, 5, 6]
    assert [m["written_at"] for m in sent] == [d["written_at"] for d in drafts]

    # Back online: a new connection, then sync from the last cursor the phone applied.
    phone(client.fresh(ben).access_token)
    page = client.get("/api/v1/sync", as_=ben, params={"since": last_cursor}).json()
    assert page["has_more"] is False
    synced = page["events"]
    assert [e["cursor"] for e in synced] == list(range(last_cursor + 1, page["next"] + 1))
    assert [e["type"] for e in synced] == ["repair.message"] * 4

    ana_phone.wait_for("repair.message", has_seq(6))
    ben_stream = stream(ben_phone) + synced
    for events in (stream(ana_phone), ben_stream):
        cursors = [e["cursor"] for e in events]
        assert cursors == list(range(cursors[0], cursors[-1] + 1))  # no gaps, no repeats
        said = [e["data"] for e in events if e["type"] == "repair.message"]
        assert len({m["id"] for m in said}) == len(said) == 6
        assert [m["seq"] for m in said] == [1, 2, 3, 4, 5, 6]
    ana_said = [e["data"] for e in stream(ana_phone) if e["type"] == "repair.message"]
    ben_said = [e["data"] for e in ben_stream if e["type"] == "repair.message"]
    assert ana_said == ben_said
    everything = client.get(f"/api/v1/repairs/{rid}/messages", as_=ana).json()["items"]
    assert everything == ana_said
    assert [m["body"] for m in everything[3:]] == [
        "offline thought 0",
        "offline thought 1",
        "offline thought 2",
    ]
