"""Data custody: export your own words; unpair and delete without leaking the partner's."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import requests
from flask import Flask
from sqlalchemy import func, select, text

from service.clock import clock
from service.extensions import db
from service.models import CoupleEvent, PushJob
from service.worker.runner import Worker
from tests.support.client import ApiClient, Person
from tests.support.phones import Phone
from tests.support.server import LiveServer

ANA_WORDS = "ana-private-" + uuid.uuid4().hex
BEN_WORDS = "ben-private-" + uuid.uuid4().hex


def converse(client: ApiClient, ana: Person, ben: Person) -> dict[str, str]:
    """Both write: a bid with a note, a response with a note, repair messages, a check-in."""
    bid = client.post(
        "/api/v1/bids",
        as_=ana,
        json={"client_id": str(uuid.uuid4()), "kind": "share", "note": ANA_WORDS},
    ).json()
    client.post(
        f"/api/v1/bids/{bid['id']}/responses",
        as_=ben,
        json={"client_id": str(uuid.uuid4()), "kind": "toward", "note": BEN_WORDS},
    )
    repair = client.post(
        "/api/v1/repairs", as_=ben, json={"client_id": str(uuid.uuid4()), "topic": BEN_WORDS}
    ).json()
    for who, words in ((ana, ANA_WORDS), (ben, BEN_WORDS)):
        posted = client.post(
            f"/api/v1/repairs/{repair['id']}/messages",
            as_=who,
            json={"client_id": str(uuid.uuid4()), "body": f"I felt {words}"},
        )
        assert posted.status_code == 201, posted.text
        client.post(
            "/api/v1/checkins",
            as_=who,
            json={"client_id": str(uuid.uuid4()), "accessible": 3, "responsive": 4, "engaged": 5},
        )
    return {"bid": bid["id"], "repair": repair["id"]}


def test_export_holds_everything_i_wrote_and_nothing_my_partner_wrote(client: ApiClient) -> None:
    ana, ben = client.couple()
    token = f"ana-phone-{uuid.uuid4().hex}"
    device = client.post("/api/v1/devices", as_=ana, json={"platform": "ios", "push_token": token})
    assert device.status_code == 201, device.text
    converse(client, ana, ben)
    mine = client.get("/api/v1/me/export", as_=ana)
    assert mine.status_code == 200
    exported = mine.json()
    assert exported["profile"]["email"] == ana.email
    assert [b["note"] for b in exported["bids_sent"]] == [ANA_WORDS]
    assert [m["body"] for m in exported["repair_messages"]] == [f"I felt {ANA_WORDS}"]
    assert len(exported["checkins"]) == 1 and len(exported["couples"]) == 1
    assert [d["id"] for d in exported["devices"]] == [device.json()["id"]]
    # Ben's conversation: Ana was in it, its topic is his.
    assert exported["repairs_started"] == [] and len(exported["repairs_joined"]) == 1
    assert BEN_WORDS not in mine.text
    assert "password" not in mine.text and "push_token" not in mine.text and token not in mine.text
    theirs = client.get("/api/v1/me/export", as_=ben)
    assert [r["note"] for r in theirs.json()["bid_responses"]] == [BEN_WORDS]
    assert [r["topic"] for r in theirs.json()["repairs_started"]] == [BEN_WORDS]
    assert theirs.json()["devices"] == []
    assert ANA_WORDS not in theirs.text


def test_no_answer_of_the_api_is_kept_in_a_cache(client: ApiClient) -> None:
    """A phone's HTTP stack keeps answers it may cache on disk (iOS URLCache's Cache.db), and so
    may a proxy: the couple's words (notes, messages, the export, tokens) must not be kept.
    The answers said nothing about caching."""
    ana, ben = client.couple()
    ids = converse(client, ana, ben)
    answers = [
        client.get("/api/v1/me/export", as_=ana),
        client.get("/api/v1/bids", as_=ana),
        client.get(f"/api/v1/bids/{ids['bid']}", as_=ben),
        client.get(f"/api/v1/repairs/{ids['repair']}/messages", as_=ben),
        client.get("/api/v1/sync", as_=ben),
        client.get("/api/v1/insights", as_=ben),
        client.post("/api/v1/auth/login", json={"email": ana.email, "password": ana.password}),
        client.get("/api/v1/me"),
        client.get("/api/v1/no-such-thing", as_=ana),
    ]
    for answer in answers:
        assert answer.headers.get("Cache-Control") == "no-store", answer.request.url
    # The API's description is the same for everyone, and may be cached.
    assert client.get("/api/v1/openapi.json").headers.get("Cache-Control") != "no-store"


def test_the_export_lists_what_was_written_at_one_moment_in_one_order_on_every_database(
    client: ApiClient,
) -> None:
    """Rows of the same instant (a phone's outbox flushed at once) come out by id, not in
    whatever order each database happens to read them."""
    clock.freeze(datetime(2031, 6, 1, 9, 0, tzinfo=UTC))
    ana, _ = client.couple()
    sent = [
        client.post(
            "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
        ).json()["id"]
        for _ in range(6)
    ]
    exported = client.get("/api/v1/me/export", as_=ana).json()["bids_sent"]
    assert [bid["id"] for bid in exported] == sorted(sent)


def test_after_unpairing_nothing_of_the_other_is_served(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    ana, ben = client.couple()
    ids = converse(client, ana, ben)
    ben_phone = phone(ben.access_token)
    assert client.delete("/api/v1/couple", as_=ana).status_code == 204
    assert ben_phone.wait_for("couple.ended")["data"]["ended_by"] == ana.id
    for path in (
        "/api/v1/bids",
        f"/api/v1/bids/{ids['bid']}",
        "/api/v1/repairs",
        f"/api/v1/repairs/{ids['repair']}",
        f"/api/v1/repairs/{ids['repair']}/messages",
        "/api/v1/sync",
        "/api/v1/insights",
        "/api/v1/checkins/current",
    ):
        response = client.get(path, as_=ben)
        assert response.status_code == 404, (path, response.text)
        assert ANA_WORDS not in response.text
    # Each keeps their own words.
    export = client.get("/api/v1/me/export", as_=ben).text
    assert BEN_WORDS in export and ANA_WORDS not in export
    assert client.get("/api/v1/me/export", as_=ana).json()["couples"][0]["ended_at"]
    # A new partner sees nothing of the old couple.
    cat = client.register("Cat")
    client.pair(ben, cat)
    assert ANA_WORDS not in client.get("/api/v1/sync", as_=cat).text
    assert client.get("/api/v1/bids", as_=cat).json()["items"] == []


def test_a_bid_of_an_earlier_pairing_is_not_replayed_to_its_sender(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    """Sending again with the client_id of a bid to an ex-partner is a conflict: the answer
    would be that bid, with the ex-partner's answers in it."""
    ana, ben = client.couple()
    client_id = str(uuid.uuid4())
    sent = {"client_id": client_id, "kind": "share", "note": ANA_WORDS}
    bid = client.post("/api/v1/bids", as_=ana, json=sent).json()
    answered = client.post(
        f"/api/v1/bids/{bid['id']}/responses",
        as_=ben,
        json={"client_id": str(uuid.uuid4()), "kind": "toward", "note": BEN_WORDS},
    )
    assert answered.status_code == 201, answered.text
    assert client.delete("/api/v1/couple", as_=ben).status_code == 204
    client.pair(ana, client.register("Cat"))
    again = client.post("/api/v1/bids", as_=ana, json=sent)
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "conflict"
    assert BEN_WORDS not in again.text and bid["id"] not in again.text
    over_socket = phone(ana.access_token).call("bid.send", sent)
    assert over_socket["status"] == 409, over_socket
    assert BEN_WORDS not in str(over_socket)
    # A new client_id still reaches the new partner.
    fresh = client.post("/api/v1/bids", as_=ana, json={**sent, "client_id": str(uuid.uuid4())})
    assert fresh.status_code == 201, fresh.text


def test_deleting_the_account_removes_my_words_and_tells_the_partner(
    app: Flask, client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    ana, ben = client.couple()
    # Ben shows notes on his lock screen: her bid's push carries her words until she goes.
    client.patch("/api/v1/me", as_=ben, json={"notes_on_lock_screen": True})
    converse(client, ana, ben)
    ben_phone, ana_phone = phone(ben.access_token), phone(ana.access_token)
    assert client.delete("/api/v1/me", as_=ana).status_code == 204
    ended = ben_phone.wait_for("couple.ended")["data"]
    ana_phone.wait_for("disconnect")  # the deleted account's sockets are closed
    assert ended["reason"] == "account_deleted"
    assert client.get("/api/v1/me", as_=ana).status_code == 401
    login = client.post("/api/v1/auth/login", json={"email": ana.email, "password": ana.password})
    assert login.status_code == 401
    assert client.get("/api/v1/couple", as_=ben).status_code == 404
    export = client.get("/api/v1/me/export", as_=ben).text
    assert BEN_WORDS in export and ANA_WORDS not in export
    with app.app_context():
        session = db.session
        for table, column in (
            ("bids", "note"),
            ("bid_responses", "note"),
            ("repair_messages", "body"),
            ("repairs", "topic"),
            ("couple_events", "data"),
            ("push_jobs", "payload"),
        ):
            found = session.execute(
                text(f"SELECT count(*) FROM {table} WHERE CAST({column} AS TEXT) LIKE :words"),
                {"words": f"%{ANA_WORDS}%"},
            ).scalar_one()
            assert found == 0, table


def test_a_held_back_push_is_withdrawn_once_it_has_nothing_left_to_say(
    app: Flask, client: ApiClient, worker: Worker
) -> None:
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "Asia/Tokyo")
    client.pair(ana, ben)
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "23:00", "end": "07:30"}})
    client.post("/api/v1/devices", as_=ben, json={"platform": "ios", "push_token": "ben-asleep"})
    clock.freeze(datetime(2031, 5, 1, 16, 0, tzinfo=UTC))  # 01:00 in Tokyo
    answered = client.post(
        "/api/v1/bids",
        as_=client.fresh(ana),
        json={"client_id": str(uuid.uuid4()), "kind": "connect"},
    ).json()
    unpaired = client.post(
        "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "share"}
    ).json()
    # Ben wakes in the night, opens the app and answers the first at once.
    client.post(
        f"/api/v1/bids/{answered['id']}/responses",
        as_=client.fresh(ben),
        json={"client_id": str(uuid.uuid4()), "kind": "toward"},
    )
    client.delete("/api/v1/couple", as_=ana)
    with app.app_context():
        states = {j.dedupe_key: j.state for j in db.session.scalars(select(PushJob))}
    assert states == {
        f"bid.created:{answered['id']}": "cancelled",
        f"bid.created:{unpaired['id']}": "cancelled",
    }
    clock.freeze(datetime(2031, 5, 1, 22, 30, tzinfo=UTC))
    assert worker.run_once().pushes == 0


def test_a_bid_left_open_by_an_unpair_expires_without_telling_either_of_them(
    client: ApiClient, app: Flask, worker: Worker, phone: Callable[[str | None], Phone]
) -> None:
    """They pair again before the old bid's time runs out: its expiry goes into no stream and
    to no phone, so their new stream's cursors stay theirs."""
    ana, ben = client.couple()
    clock.freeze(datetime(2031, 3, 1, 10, 0, tzinfo=UTC))
    ana, ben = client.fresh(ana), client.fresh(ben)
    old_couple = client.get("/api/v1/couple", as_=ana).json()["id"]
    left_open = client.post(
        "/api/v1/bids",
        as_=ana,
        json={"client_id": str(uuid.uuid4()), "kind": "share", "note": ANA_WORDS},
    )
    assert left_open.status_code == 201
    assert client.delete("/api/v1/couple", as_=ben).status_code == 204
    client.pair(ana, ben)

    clock.freeze(datetime(2031, 3, 2, 10, 0, 1, tzinfo=UTC))  # past the bid's 24 hours
    ana, ben = client.fresh(ana), client.fresh(ben)
    ben_phone = phone(ben.access_token)
    assert worker.run_once().expired_bids == 1
    sent = client.post(
        "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    )
    assert sent.status_code == 201
    ben_phone.wait_for("bid.created")
    assert [name for name, _ in ben_phone.events] == ["bid.created"]
    events = client.get("/api/v1/sync", as_=ben).json()["events"]
    assert [(e["cursor"], e["type"]) for e in events] == [(1, "couple.paired"), (2, "bid.created")]
    with app.app_context():
        old_stream = select(func.count()).where(CoupleEvent.couple_id == uuid.UUID(old_couple))
        assert db.session.scalar(old_stream) == 0


def test_everything_i_did_in_each_pairing_says_which_pairing_it_was(client: ApiClient) -> None:
    """Ana answers Ben's bid, writes in Ben's conversation, reads it, feels heard and answers a
    check-in; they unpair and she does the same with Cat. Her responses, messages and answers
    were exported with only the ids of things her partners wrote (a bid, a conversation, a
    round), which the export does not hold: she could not tell which pairing or round any of
    them was about, nor that she had read a conversation or said she felt heard."""
    ana = client.register("Ana")
    done = []
    for name in ("Ben", "Cat"):
        partner = client.register(name)
        couple = client.pair(partner, ana)["id"]
        bid = client.post(
            "/api/v1/bids",
            as_=partner,
            json={"client_id": str(uuid.uuid4()), "kind": "comfort", "note": BEN_WORDS},
        ).json()
        answered = client.post(
            f"/api/v1/bids/{bid['id']}/responses",
            as_=ana,
            json={"client_id": str(uuid.uuid4()), "kind": "toward", "note": f"{name} {ANA_WORDS}"},
        )
        assert answered.status_code == 201, answered.text
        repair = client.post(
            "/api/v1/repairs",
            as_=partner,
            json={"client_id": str(uuid.uuid4()), "topic": BEN_WORDS},
        ).json()
        written = client.post(
            f"/api/v1/repairs/{repair['id']}/messages",
            as_=ana,
            json={"client_id": str(uuid.uuid4()), "body": f"{name} {ANA_WORDS}"},
        )
        assert written.status_code == 201, written.text
        assert (
            client.post(
                f"/api/v1/repairs/{repair['id']}/read", as_=ana, json={"seq": 1}
            ).status_code
            == 200
        )
        heard = client.post(f"/api/v1/repairs/{repair['id']}/resolve", as_=ana)
        assert heard.status_code == 200, heard.text
        checked_in = client.post(
            "/api/v1/checkins",
            as_=ana,
            json={"client_id": str(uuid.uuid4()), "accessible": 4, "responsive": 3, "engaged": 5},
        )
        assert checked_in.status_code in (200, 201), checked_in.text
        assert client.delete("/api/v1/couple", as_=ana).status_code == 204
        done.append((couple, name, repair["id"]))

    exported = client.get("/api/v1/me/export", as_=ana).json()
    assert [c["id"] for c in exported["couples"]] == [couple for couple, _, _ in done]
    assert [(r["couple_id"], r["note"]) for r in exported["bid_responses"]] == [
        (couple, f"{name} {ANA_WORDS}") for couple, name, _ in done
    ]
    assert [(m["couple_id"], m["body"]) for m in exported["repair_messages"]] == [
        (couple, f"{name} {ANA_WORDS}") for couple, name, _ in done
    ]
    assert [(c["couple_id"], c["round_number"]) for c in exported["checkins"]] == [
        (couple, 1) for couple, _, _ in done
    ]
    joined = exported["repairs_joined"]
    assert [(r["repair_id"], r["couple_id"], r["last_read_seq"], r["heard"]) for r in joined] == [
        (repair, couple, 1, True) for couple, _, repair in done
    ]
    assert all(r["resolved_at"] for r in joined)
    assert BEN_WORDS not in str(exported)


def test_the_export_is_offered_as_a_file_named_for_its_day(client: ApiClient) -> None:
    """A phone that downloads the export (URLSession's download task, Android's DownloadManager)
    or a browser names the file from the answer: it came without a name, saved as `export`
    with no extension, the same for every export. The day is the caller's own."""
    clock.freeze(datetime(2031, 6, 1, 23, 30, tzinfo=UTC))  # 01:30 on 2 June in Berlin
    ana = client.fresh(client.register("Ana", "Europe/Berlin"))
    answer = client.get("/api/v1/me/export", as_=ana)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert (
        answer.headers.get("Content-Disposition")
        == 'attachment; filename="reach-export-2031-06-02.json"'
    )
    assert answer.headers["Cache-Control"] == "no-store"


def allowed(answer: requests.Response) -> set[str]:
    """The methods an answer's `Allow` header names."""
    return {method.strip() for method in answer.headers["Allow"].split(",")}


def test_asking_for_the_exports_headers_alone_builds_no_export(
    server_with: Callable[..., LiveServer],
) -> None:
    """A HEAD of the export (a download manager checking the file before fetching it) was
    answered by building the whole export and counted as one: two HEADs used up an account's
    two exports an hour, and the export itself was refused. It is not a method of the export."""
    server = server_with(RATELIMIT_EXPORT="2 per hour")
    client = ApiClient(server.url)
    ana = client.register("Ana")
    for _ in range(3):
        head = client.request("HEAD", "/api/v1/me/export", as_=ana)
        assert head.status_code == 405
        assert allowed(head) == {"GET", "OPTIONS"}
        assert head.headers["Content-Type"] == "application/problem+json"
        assert "Content-Disposition" not in head.headers
    # As any other method the export does not have (PUT), whoever asks.
    assert client.request("HEAD", "/api/v1/me/export").status_code == 405
    assert [client.get("/api/v1/me/export", as_=ana).status_code for _ in range(2)] == [200, 200]


def test_the_exports_allowed_methods_are_the_ones_it_answers(client: ApiClient) -> None:
    """`OPTIONS /me/export` and a 405 of another method listed HEAD among the export's
    methods, which is refused with 405: a client that trusts `Allow` tried it in vain."""
    ana = client.register("Ana")
    options = client.request("OPTIONS", "/api/v1/me/export", as_=ana)
    assert options.status_code == 200
    assert allowed(options) == {"GET", "OPTIONS"}
    put = client.request("PUT", "/api/v1/me/export", as_=ana, json={})
    assert put.status_code == 405
    assert allowed(put) == {"GET", "OPTIONS"}


def test_a_deletion_sent_again_after_its_answer_was_lost_says_the_account_is_gone(
    client: ApiClient,
) -> None:
    """A phone that lost the 204 (the connection dropped) sends the DELETE again, from the same
    phone or another of the account's: it is told the account no longer exists, the same way
    every call of a deleted account is, and nothing else changes."""
    ana, ben = client.couple()
    other_phone = client.fresh(
        Person(ana.email, ana.password, ana.user, ana.access_token, ana.refresh_token)
    )
    assert client.delete("/api/v1/me", as_=ana).status_code == 204
    for who in (ana, other_phone):
        again = client.delete("/api/v1/me", as_=who)
        assert again.status_code == 401, again.text
        assert again.json()["code"] == "unauthorized"
        assert again.json()["detail"] == "The account or session no longer exists: sign in again."
        assert again.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/me", as_=ben).status_code == 200


def test_no_push_for_or_from_a_deleted_account_goes_out(
    app: Flask, client: ApiClient, worker: Worker
) -> None:
    """Ben sleeps through quiet hours, so Ana's bid waits for the morning; Ben's bid to Ana waits
    in the outbox. She deletes her account: neither goes out, and none keeps her words."""
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "Asia/Tokyo")
    client.pair(ana, ben)
    client.patch(
        "/api/v1/me",
        as_=ben,
        json={"quiet_hours": {"start": "23:00", "end": "07:30"}, "notes_on_lock_screen": True},
    )
    client.post("/api/v1/devices", as_=ben, json={"platform": "ios", "push_token": "ben-phone"})
    client.post("/api/v1/devices", as_=ana, json={"platform": "ios", "push_token": "ana-phone"})
    clock.freeze(datetime(2031, 5, 1, 16, 0, tzinfo=UTC))  # 01:00 in Tokyo, 18:00 in Berlin
    ana, ben = client.fresh(ana), client.fresh(ben)
    for sender, words in ((ana, ANA_WORDS), (ben, BEN_WORDS)):
        sent = client.post(
            "/api/v1/bids",
            as_=sender,
            json={"client_id": str(uuid.uuid4()), "kind": "share", "note": words},
        )
        assert sent.status_code == 201, sent.text
    assert client.delete("/api/v1/me", as_=ana).status_code == 204
    with app.app_context():
        left = [
            (job.recipient_id, job.state, job.payload)
            for job in db.session.scalars(select(PushJob))
        ]
    assert left == [(uuid.UUID(ben.id), "cancelled", {})]
    clock.freeze(datetime(2031, 5, 1, 22, 30, tzinfo=UTC))  # 07:30 in Tokyo
    assert worker.run_once().pushes == 0


def test_the_break_i_am_taking_in_a_conversation_is_exported_and_not_my_partners(
    client: ApiClient,
) -> None:
    """Ana asked for a break while flooded; the export left it out. A conversation keeps the
    break being taken now: hers is in her export, and not in Ben's (nor is his topic in hers)."""
    ana, ben = client.couple()
    ids = converse(client, ana, ben)
    paused = client.post(f"/api/v1/repairs/{ids['repair']}/pause", as_=ana, json={"minutes": 20})
    assert paused.status_code == 200, paused.text
    mine = client.get("/api/v1/me/export", as_=ana)
    couple = client.get("/api/v1/couple", as_=ana).json()["id"]
    assert mine.json()["repair_breaks"] == [
        {
            "repair_id": ids["repair"],
            "couple_id": couple,
            "paused_until": paused.json()["paused_until"],
        }
    ]
    assert BEN_WORDS not in mine.text
    assert client.get("/api/v1/me/export", as_=ben).json()["repair_breaks"] == []


def test_when_i_got_and_opened_a_bid_is_exported_without_my_partners_note(
    client: ApiClient,
) -> None:
    """Ben's phone told the service it got Ana's bid, then that he opened it: his acts, left out
    of his export. They are in it now, naming the bid; her note is hers and stays out."""
    ana, ben = client.couple()
    bid = client.post(
        "/api/v1/bids",
        as_=ana,
        json={"client_id": str(uuid.uuid4()), "kind": "share", "note": ANA_WORDS},
    ).json()
    unopened = client.post(
        "/api/v1/bids",
        as_=ana,
        json={"client_id": str(uuid.uuid4()), "kind": "connect", "note": ANA_WORDS},
    ).json()
    for step in ("delivered", "seen"):
        acknowledged = client.post(f"/api/v1/bids/{bid['id']}/{step}", as_=ben)
        assert acknowledged.status_code in (200, 201), acknowledged.text
    timeline = client.get(f"/api/v1/bids/{bid['id']}", as_=ben).json()
    theirs = client.get("/api/v1/me/export", as_=ben)
    assert theirs.json()["bid_receipts"] == [
        {
            "bid_id": bid["id"],
            "couple_id": client.get("/api/v1/couple", as_=ben).json()["id"],
            "delivered_at": timeline["delivered_at"],
            "seen_at": timeline["seen_at"],
        }
    ]
    assert ANA_WORDS not in theirs.text and unopened["id"] not in theirs.text
    assert client.get("/api/v1/me/export", as_=ana).json()["bid_receipts"] == []


def test_my_sign_ins_are_exported_with_when_and_why_each_ended(client: ApiClient) -> None:
    """Ana's export listed her devices but not her sign-ins: the phones and browsers signed in
    to her account, when, and why those that ended did. Ben's are not in hers; no token is."""
    ana, ben = client.couple()
    tablet = client.post("/api/v1/auth/login", json={"email": ana.email, "password": ana.password})
    assert tablet.status_code == 200, tablet.text
    out = client.post("/api/v1/auth/logout", json={"refresh_token": tablet.json()["refresh_token"]})
    assert out.status_code == 204, out.text
    listed = client.get("/api/v1/me/sessions", as_=ana).json()["items"]
    exported = client.get("/api/v1/me/export", as_=ana)
    sessions = exported.json()["sessions"]
    assert [s["id"] for s in sessions if s["ended_at"] is None] == [s["id"] for s in listed]
    [signed_up, signed_out] = sessions  # oldest first
    assert signed_up["created_at"] == listed[0]["created_at"]
    assert (signed_up["ended_at"], signed_up["ended_because"]) == (None, None)
    assert signed_out["ended_because"] == "logout"
    assert signed_out["ended_at"] >= signed_out["created_at"]
    assert set(signed_up) == {"id", "created_at", "last_refreshed_at", "ended_at", "ended_because"}
    assert tablet.json()["refresh_token"] not in exported.text
    assert ana.refresh_token not in exported.text
    theirs = client.get("/api/v1/me/export", as_=ben).json()["sessions"]
    assert [s["id"] for s in theirs] == [
        s["id"] for s in client.get("/api/v1/me/sessions", as_=ben).json()["items"]
    ]
    assert not {s["id"] for s in theirs} & {s["id"] for s in sessions}
