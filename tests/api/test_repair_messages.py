"""Messages of a repair conversation over REST: gapless seq, retries, validation, receipts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.support.client import ApiClient
from tests.support.phones import Phone
from tests.support.repairs import event_types, iso, messages, post_message, start, write
from tests.support.server import LiveServer


def test_messages_take_gapless_seqs_and_retries_return_the_original(client: ApiClient) -> None:
    ana, ben = client.couple()
    repair = start(client, ana)
    client_id = str(uuid.uuid4())
    first = write(
        client,
        ana,
        repair["id"],
        client_id=client_id,
        body="I shut down when you raised your voice.",
        step="the_cycle",
        emotions=["overwhelm", "fear"],
    )
    assert first["seq"] == 1 and first["author_id"] == ana.id
    assert first["step"] == "the_cycle" and first["emotions"] == ["overwhelm", "fear"]
    assert first["written_at"] is None and first["repair_id"] == repair["id"]
    retry = post_message(
        client,
        ana,
        repair["id"],
        client_id=client_id,
        body="I shut down when you raised your voice.",
        step="the_cycle",
        emotions=["fear", "overwhelm"],
    )
    assert retry.status_code == 200 and retry.json() == first
    second = write(client, ben, repair["id"], step="what_i_heard")
    third = write(client, ana, repair["id"])
    assert [second["seq"], third["seq"]] == [2, 3]
    assert second["emotions"] == [] and second["step"] == "what_i_heard"

    listed = messages(client, ben, repair["id"])
    assert listed == {"items": [first, second, third], "next": None}
    page = messages(client, ana, repair["id"], after_seq=1, limit=1)
    assert page == {"items": [second], "next": 2}
    assert messages(client, ana, repair["id"], after_seq=page["next"], limit=1)["items"] == [third]
    assert messages(client, ana, repair["id"], after_seq=3) == {"items": [], "next": None}
    assert client.get(f"/api/v1/repairs/{repair['id']}", as_=ana).json()["last_seq"] == 3
    assert event_types(client, ana).count("repair.message") == 3


def test_a_client_id_sent_again_with_other_words_is_refused(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    """A phone that sent a second message under the first one's client_id was answered 200
    with the first message: it took its words as sent and dropped them from its outbox, and
    they never reached the partner. Other words (body, step or emotions) under a client_id
    are another message: 409, nothing written, over REST and the socket alike."""
    ana, ben = client.couple()
    repair = start(client, ana)
    client_id = str(uuid.uuid4())
    first = write(client, ana, repair["id"], client_id=client_id, body="I felt alone.")
    for changed in (
        {"body": "I felt alone, and scared."},
        {"step": "what_i_felt"},
        {"emotions": ["hurt"]},
    ):
        sent = {"client_id": client_id, "body": "I felt alone.", **changed}
        refused = post_message(client, ana, repair["id"], **sent)
        assert refused.status_code == 409, (changed, refused.text)
        assert refused.json()["code"] == "conflict"
    ack = phone(ana.access_token).call(
        "repair.message",
        {"repair_id": repair["id"], "client_id": client_id, "body": "Something else."},
    )
    assert ack["status"] == 409, ack
    # The same words again, with a written_at the phone read again, are the same message.
    again = post_message(
        client,
        ana,
        repair["id"],
        client_id=client_id,
        body="I felt alone.",
        written_at="2026-01-01T00:00:00Z",
    )
    assert again.status_code == 200 and again.json() == first
    assert messages(client, ben, repair["id"])["items"] == [first]
    assert event_types(client, ben).count("repair.message") == 1


def test_the_phones_writing_time_is_kept_but_seq_decides_the_order(client: ApiClient) -> None:
    ana, ben = client.couple()
    repair = start(client, ana)
    now = datetime.now(UTC)
    late = write(client, ana, repair["id"], written_at=iso(now - timedelta(minutes=1)))
    early = write(client, ben, repair["id"], written_at=(now - timedelta(hours=2)).isoformat())
    soon = write(client, ben, repair["id"], written_at=iso(now + timedelta(minutes=4)))
    assert early["written_at"] == iso(now - timedelta(hours=2))
    assert [m["seq"] for m in (late, early, soon)] == [1, 2, 3]
    assert [m["id"] for m in messages(client, ana, repair["id"])["items"]] == [
        late["id"],
        early["id"],
        soon["id"],
    ]


def test_every_rfc_3339_spelling_of_a_time_is_read(client: ApiClient) -> None:
    """The OpenAPI document's `date-time` is RFC 3339's, which lets `T` and `Z` be lower case
    and the fraction have any number of digits: a lower-case `z` was refused with 422 (which
    an outbox never retries), while a lower-case `t` was read."""
    ana, _ben = client.couple()
    repair = start(client, ana)
    for sent in (
        "2021-06-01T10:00:00.25z",
        "2021-06-01t10:00:00.25Z",
        "2021-06-01t10:00:00.250000001z",
        "2021-06-01T12:00:00.25+02:00",
        "2021-06-01T10:00:00.25-00:00",
    ):
        written = write(client, ana, repair["id"], written_at=sent)
        assert written["written_at"] == "2021-06-01T10:00:00.250000Z", (sent, written)


def test_a_phone_whose_clock_runs_fast_still_gets_its_words_through(client: ApiClient) -> None:
    """A `written_at` ahead of the server's clock (beyond a little skew) cannot be when the
    phone wrote it: the message is stored, dated when the server received it. Refusing it
    would lock a phone with a wrong clock out of every conversation (its outbox takes
    `written_at` at each tap and never retries a 422)."""
    ana, ben = client.couple()
    repair = start(client, ana)
    before = datetime.now(UTC)
    sent = write(client, ana, repair["id"], written_at=iso(before + timedelta(hours=3)))
    assert sent["written_at"] == sent["created_at"], sent
    assert before <= datetime.fromisoformat(sent["written_at"]) <= datetime.now(UTC)
    again = post_message(
        client, ana, repair["id"], client_id=sent["client_id"], written_at=iso(before)
    )
    assert again.status_code == 200 and again.json() == sent
    assert [m["id"] for m in messages(client, ben, repair["id"])["items"]] == [sent["id"]]


def test_bad_messages_are_refused_and_nothing_is_stored(client: ApiClient) -> None:
    ana, ben = client.couple()
    repair = start(client, ana)
    for body, field in (
        ({"body": ""}, "body"),
        ({"body": "   \n"}, "body"),
        ({"body": "\u200b\u200d\ufeff"}, "body"),  # zero-width space and joiner, BOM
        ({"body": " \u3164\u2800 "}, "body"),  # Hangul filler, blank Braille pattern
        ({"body": "x" * 4001}, "body"),
        ({"step": "blame"}, "step"),
        ({"emotions": ["anger", "anger"]}, "emotions"),
        ({"emotions": ["bliss"]}, "emotions.0"),
        ({"emotions": "sadness"}, "emotions"),
        (
            {
                "emotions": [
                    "sadness",
                    "fear",
                    "hurt",
                    "loneliness",
                    "shame",
                    "anger",
                    "hope",
                    "love",
                    "relief",
                ]
            },
            "emotions",
        ),
        ({"written_at": "2031-01-01T10:00:00"}, "written_at"),
        ({"written_at": "0001-01-01T00:00:00+14:00"}, "written_at"),  # before year 1 in UTC
        ({"written_at": "9999-12-31T23:59:59-14:00"}, "written_at"),  # after 9999 in UTC
        ({"client_id": "not-a-uuid"}, "client_id"),
        ({"seq": 7}, "seq"),
    ):
        response = post_message(client, ana, repair["id"], **body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == "validation_error"
        assert field in response.json()["errors"], (body, response.json())
    missing = client.post(f"/api/v1/repairs/{repair['id']}/messages", as_=ana, json={})
    assert {"client_id", "body"} <= set(missing.json()["errors"])
    malformed = client.post(
        f"/api/v1/repairs/{repair['id']}/messages",
        as_=ana,
        data="{not json",
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status_code == 400

    assert messages(client, ben, repair["id"])["items"] == []
    assert client.get(f"/api/v1/repairs/{repair['id']}", as_=ben).json()["last_seq"] == 0
    assert event_types(client, ben) == ["couple.paired", "repair.started"]
    # The longest body and the most emotions still go through, and take seq 1: no gap.
    ok = write(
        client,
        ana,
        repair["id"],
        body="y" * 4000,
        emotions=["sadness", "fear", "hurt", "loneliness", "shame", "anger", "hope", "love"],
    )
    assert ok["seq"] == 1


def test_a_message_may_send_its_optional_fields_as_null(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    """An outbox sends every field it stored (docs/mobile.md, "Writing offline first"), and
    Kotlin or Swift models encode what is absent as null: null is none, as for a note."""
    ana, ben = client.couple()
    repair = start(client, ana)
    over_rest = write(client, ana, repair["id"], step=None, emotions=None, written_at=None)
    assert over_rest["emotions"] == [] and over_rest["step"] is None
    ack = phone(ben.access_token).call(
        "repair.message",
        {
            "repair_id": repair["id"],
            "client_id": str(uuid.uuid4()),
            "body": "I hear you.",
            "step": None,
            "emotions": None,
            "written_at": None,
        },
    )
    assert ack["seq"] == 2 and ack["emotions"] == [], ack
    assert [m["emotions"] for m in messages(client, ana, repair["id"])["items"]] == [[], []]


def test_read_receipts_only_move_forward(client: ApiClient) -> None:
    ana, ben = client.couple()
    repair = start(client, ana)
    for _ in range(3):
        write(client, ana, repair["id"])
    read = client.post(f"/api/v1/repairs/{repair['id']}/read", as_=ben, json={"seq": 2})
    assert read.status_code == 200
    places = {p["user_id"]: p["last_read_seq"] for p in read.json()["partners"]}
    assert places == {ana.id: 0, ben.id: 2}
    back = client.post(f"/api/v1/repairs/{repair['id']}/read", as_=ben, json={"seq": 1})
    assert back.status_code == 200 and back.json() == read.json()
    for seq in (4, 0, "two"):
        bad = client.post(f"/api/v1/repairs/{repair['id']}/read", as_=ben, json={"seq": seq})
        assert bad.status_code == 422 and "seq" in bad.json()["errors"], seq
    assert event_types(client, ana).count("repair.read") == 1
    assert client.get(f"/api/v1/repairs/{repair['id']}", as_=ana).json() == read.json()


def test_too_many_conversations_started_are_429(server_with: Callable[..., LiveServer]) -> None:
    server = server_with(RATELIMIT_REPAIRS="2 per minute")
    client = ApiClient(server.url)
    ana, ben = client.couple()
    for _ in range(2):
        start(client, ana)
    body = {"client_id": str(uuid.uuid4()), "topic": "one more"}
    limited = client.post("/api/v1/repairs", as_=ana, json=body)
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert len(client.get("/api/v1/repairs", as_=ben).json()["items"]) == 2
    assert start(client, ben)["status"] == "open"  # per account


def test_too_many_breaks_taken_or_ended_are_429(server_with: Callable[..., LiveServer]) -> None:
    """Each pause and resume writes to the couple's stream: an account cannot grow it without
    end by taking and ending breaks."""
    server = server_with(RATELIMIT_REPAIRS="2 per minute")
    client = ApiClient(server.url)
    ana, ben = client.couple()
    repair = start(client, ana)
    path = f"/api/v1/repairs/{repair['id']}"
    for _ in range(2):
        paused = client.post(f"{path}/pause", as_=ana, json={"minutes": 20})
        assert paused.status_code == 200, paused.text
        assert client.post(f"{path}/resume", as_=ana).status_code == 200
    for step, body in (("pause", {"minutes": 20}), ("resume", None)):
        limited = client.post(f"{path}/{step}", as_=ana, json=body)
        assert limited.status_code == 429, (step, limited.text)
        assert limited.json()["code"] == "rate_limited"
    streamed = event_types(client, ben)
    assert streamed.count("repair.paused") == 2 and streamed.count("repair.resumed") == 2
    # Per account: the partner can still take a break.
    assert client.post(f"{path}/pause", as_=ben, json={"minutes": 20}).status_code == 200


def test_too_many_messages_are_429_over_rest_and_socket(
    server_with: Callable[..., LiveServer],
) -> None:
    server = server_with(RATELIMIT_REPAIRS="2 per minute")
    client = ApiClient(server.url)
    ana, ben = client.couple()
    repair = start(client, ana)
    for _ in range(2):
        write(client, ana, repair["id"], body="I want us to be okay.")
    limited = post_message(client, ana, repair["id"], body="one more")
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    phone = Phone(server.url, ben.access_token).connect()
    ana_phone = Phone(server.url, ana.access_token).connect()
    try:
        for _ in range(2):
            ack = phone.call(
                "repair.message",
                {"repair_id": repair["id"], "client_id": str(uuid.uuid4()), "body": "me too"},
            )
            assert ack["seq"] > 0
        refused = phone.call(
            "repair.message",
            {"repair_id": repair["id"], "client_id": str(uuid.uuid4()), "body": "again"},
        )
        assert refused["code"] == "rate_limited"
        # One limit per account, whichever way the messages come: Ana's REST writes used hers.
        hers = ana_phone.call(
            "repair.message",
            {"repair_id": repair["id"], "client_id": str(uuid.uuid4()), "body": "and me"},
        )
        assert hers["code"] == "rate_limited", hers
    finally:
        phone.disconnect()
        ana_phone.disconnect()
    assert messages(client, ana, repair["id"])["items"][-1]["seq"] == 4


# Emoji outside the BMP (one with a skin tone), a variation selector, accents, a CJK word.
WORDS = "I felt \U0001f614 and then \u2764\ufe0f \U0001f44b\U0001f3fd caf\u00e9 \u5bc2\u3057\u3044"


def test_text_outside_ascii_goes_out_as_utf8_byte_for_byte(client: ApiClient) -> None:
    """A message sent as UTF-8 comes back in the same bytes from the write, the conversation's
    messages and sync: not escaped (an emoji's `\\ud83d\\ude14` is 12 bytes, its UTF-8 4)."""
    ana, ben = client.couple()
    topic = "\U0001f614 the dishes"
    repair = start(client, ana, topic=topic)
    body = {"client_id": str(uuid.uuid4()), "body": WORDS}
    sent = json.dumps(body, ensure_ascii=False).encode()
    written = client.post(
        f"/api/v1/repairs/{repair['id']}/messages",
        as_=ana,
        data=sent,
        headers={"Content-Type": "application/json"},
    )
    assert written.status_code == 201, written.text
    answers = {
        "write": written,
        "messages": client.get(f"/api/v1/repairs/{repair['id']}/messages", as_=ben),
        "sync": client.get("/api/v1/sync", as_=ben),
    }
    listed = client.get("/api/v1/repairs", as_=ben)
    assert listed.json()["items"][0]["topic"] == topic and topic.encode() in listed.content
    for name, answer in answers.items():
        assert answer.status_code == 200 or name == "write", (name, answer.text)
        kind, _, parameters = answer.headers["Content-Type"].partition(";")
        assert kind == "application/json", (name, answer.headers["Content-Type"])
        assert parameters.strip().lower() in ("", "charset=utf-8"), (name, parameters)
        text = answer.content.decode("utf-8")  # strictly: valid UTF-8
        assert json.loads(text) == answer.json()
        assert "\\u" not in text, (name, text)
        assert WORDS.encode() in answer.content, name
    assert answers["messages"].json()["items"][0]["body"] == WORDS
    page = answers["sync"].json()["events"]
    assert [e["data"]["body"] for e in page if e["type"] == "repair.message"] == [WORDS]
