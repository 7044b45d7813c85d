"""A phone that follows the sync loop of docs/mobile.md §7 ends with every event applied once,
in cursor order, whatever the socket brings and when, and holds what the GET endpoints show
(tests/support/guide.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from service.clock import clock
from service.worker.runner import Worker
from tests.support.client import ApiClient, Person
from tests.support.guide import GuidedPhone, server_state
from tests.support.repairs import start, write
from tests.support.server import LiveServer
from tests.support.waiting import wait_until


def send_bid(api: ApiClient, sender: Person) -> str:
    body = {"client_id": str(uuid.uuid4()), "kind": "connect"}
    response = api.post("/api/v1/bids", as_=sender, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stream_head(api: ApiClient, person: Person) -> int:
    events = api.get("/api/v1/sync", as_=person, params={"since": 0, "limit": 1000}).json()
    return int(events["events"][-1]["cursor"])


def another_phone(api: ApiClient, person: Person) -> Person:
    """The same account signed in on a second phone (a session of its own)."""
    body = {"email": person.email, "password": person.password}
    response = api.post("/api/v1/auth/login", json=body)
    assert response.status_code == 200, response.text
    signed_in = response.json()
    return Person(
        person.email,
        person.password,
        signed_in["user"],
        signed_in["access_token"],
        signed_in["refresh_token"],
    )


def couple_id_of(api: ApiClient, person: Person) -> str:
    return str(api.get("/api/v1/couple", as_=person).json()["id"])


def applied_once(phone: GuidedPhone) -> bool:
    return len(phone.history) == len(set(phone.history))


def differences(held: Any, shown: Any, path: str = "") -> list[str]:
    """Where what a phone holds differs from what the GET endpoints show: `path: held != shown`."""
    if isinstance(held, dict) and isinstance(shown, dict):
        return [
            line
            for key in sorted(held.keys() | shown.keys())
            for line in differences(
                held.get(key, "<absent>"), shown.get(key, "<absent>"), f"{path}.{key}"
            )
        ]
    if isinstance(held, list) and isinstance(shown, list) and len(held) == len(shown):
        return [
            line
            for index, (a, b) in enumerate(zip(held, shown, strict=True))
            for line in differences(a, b, f"{path}[{index}]")
        ]
    return [] if held == shown else [f"{path}: {held!r} != {shown!r}"]


def partner_answered(phone: GuidedPhone, round_id: str) -> bool:
    return bool(phone.rounds.get(round_id, {}).get("partner_answered", False))


def test_an_event_that_arrives_while_a_sync_is_reading_is_not_lost(
    client: ApiClient, live_server: LiveServer
) -> None:
    """The socket brings an event with a gap while a sync is under way, one that read its page
    before the event was written: the guide's phone runs that sync once more. (Joining the
    running sync, as the guide said before, dropped the event until the next reconnect.)"""
    ana, ben = client.couple()
    couple_id = client.get("/api/v1/couple", as_=ben).json()["id"]
    bids = [send_bid(client, ana)]  # the phone has not seen it yet
    phone = GuidedPhone(client, ben, couple_id)

    def meanwhile(page: dict[str, Any]) -> None:
        phone.after_reading = None
        bids.append(send_bid(client, ana))  # written after the page was read
        wait_until(lambda: phone.received and phone.idle(), 5, "the socket's event applied")

    phone.after_reading = meanwhile
    try:
        phone.connect(live_server.url)
        phone.settle()  # the bids' `bid.delivered`, which the phone posts, included
        head = stream_head(client, ben)
        assert phone.applied == list(range(1, head + 1))
        assert set(phone.bids) == set(bids)
    finally:
        phone.close()


def test_a_check_in_answered_on_one_phone_is_not_the_partners_on_the_other(
    client: ApiClient, live_server: LiveServer
) -> None:
    """Ana answers from her phone: both her phones, told by `checkin.answered` who answered,
    still ask her nothing and show Ben's turn, as GET /checkins/current says; Ben's phone
    shows that Ana answered. (The guide marked the partner answered on every such event, so
    Ana's phones invited her to answer a round she had answered: 409.)"""
    ana, ben = client.couple()
    couple_id = couple_id_of(client, ana)
    people = (ana, another_phone(client, ana), ben)
    phones = [GuidedPhone(client, who, couple_id) for who in people]
    try:
        for phone in phones:
            phone.connect(live_server.url)
        body = {"client_id": str(uuid.uuid4()), "accessible": 4, "responsive": 3, "engaged": 5}
        answered = client.post("/api/v1/checkins", as_=ana, json=body)
        assert answered.status_code == 201, answered.text
        round_id = answered.json()["id"]
        for phone in phones:
            phone.settle()
            current = client.get("/api/v1/checkins/current", as_=phone.person).json()
            assert partner_answered(phone, round_id) == current["partner_answered"]
        assert [partner_answered(phone, round_id) for phone in phones] == [
            False,
            False,
            True,
        ]
    finally:
        for phone in phones:
            phone.close()


def test_a_check_in_kept_from_its_events_has_the_dates_get_checkins_shows(
    client: ApiClient, live_server: LiveServer
) -> None:
    """Ben's phone keeps the check-in rounds from `checkin.answered` and `checkin.revealed`, as
    the guide's `saveRevealedRound` does: each holds the round as GET /checkins and
    /checkins/current show it, with when it opened, when each answered and when it was
    revealed. (The events carried none of those dates, so a round kept from them had none.)"""
    ana, ben = client.couple()
    ben_phone = GuidedPhone(client, ben, couple_id_of(client, ben))
    scores = {"accessible": 4, "responsive": 3, "engaged": 5}
    try:
        ben_phone.connect(live_server.url)
        for who in (ana, ben, ana):  # round 1 revealed, round 2 waits for Ben
            body = {"client_id": str(uuid.uuid4()), **scores}
            assert client.post("/api/v1/checkins", as_=who, json=body).status_code == 201
        ben_phone.settle()
        shown = server_state(client, ben)["checkins"]
        assert [r["number"] for r in shown.values()] == [1, 2]
        assert differences(ben_phone.rounds, shown) == []
    finally:
        ben_phone.close()


def test_a_check_in_answered_on_another_phone_shows_the_answer_there_too(
    client: ApiClient, live_server: LiveServer
) -> None:
    """Ben answers on his tablet: his phone, told by `checkin.answered` that he answered (never
    what: the partner's phones get the event too), reads his answer as the guide says, and
    shows the round as GET /checkins/current does. (It showed no answer of his at all.)"""
    _ana, ben = client.couple()
    ben_phone = GuidedPhone(client, ben, couple_id_of(client, ben))
    tablet = GuidedPhone(client, another_phone(client, ben), ben_phone.couple_id)
    try:
        ben_phone.connect(live_server.url)
        tablet.connect(live_server.url)
        round_id = tablet.answer_checkin(5, 5, 4)["id"]
        for phone in (ben_phone, tablet):
            phone.settle()
            assert differences(phone.rounds, server_state(client, ben)["checkins"]) == []
        assert ben_phone.rounds[round_id]["you"]["engaged"] == 4
    finally:
        ben_phone.close()
        tablet.close()


def test_quiet_hours_set_on_one_phone_reach_the_accounts_other_phone(
    client: ApiClient, live_server: LiveServer
) -> None:
    """Ben sets quiet hours and lock-screen notes on his phone (no event: his partner never
    sees them); his tablet, opened afterwards, shows them as GET /me does, as the guide says to
    read the profile after every connect. (The guide said to keep the profile only from
    `couple.partner_updated`, so the tablet kept the hours it signed in with.)"""
    _ana, ben = client.couple()
    tablet = GuidedPhone(client, another_phone(client, ben), couple_id_of(client, ben))
    try:
        changes = {"quiet_hours": {"start": "22:00", "end": "07:00"}, "notes_on_lock_screen": True}
        assert client.patch("/api/v1/me", as_=ben, json=changes).status_code == 200
        tablet.connect(live_server.url)
        tablet.settle()
        assert tablet.state()["me"] == server_state(client, ben)["me"]
    finally:
        tablet.close()


def test_a_profile_changed_on_one_phone_shows_at_once_on_the_accounts_connected_tablet(
    client: ApiClient, live_server: LiveServer
) -> None:
    """Ben sets quiet hours and lock-screen notes on his phone while his tablet stays connected:
    the tablet shows them as GET /me does, told by `me.updated`, without connecting again.
    Ana's phone is not told (her partner's own settings are not hers to see). (The tablet
    showed the old values until its next connect, launch or return to the foreground.)"""
    ana, ben = client.couple()
    couple_id = couple_id_of(client, ben)
    ben_phone, tablet, ana_phone = (
        GuidedPhone(client, who, couple_id) for who in (ben, another_phone(client, ben), ana)
    )
    phones = (ben_phone, tablet, ana_phone)
    try:
        for phone in phones:
            phone.connect(live_server.url)
            phone.settle()
        changes = {"quiet_hours": {"start": "22:00", "end": "07:00"}, "notes_on_lock_screen": True}
        ben_phone.update_profile(**changes)
        shown = server_state(client, ben)["me"]
        wait_until(lambda: tablet.idle() and tablet.state()["me"] == shown, 5, "me.updated")
        wait_until(lambda: "me.updated" in ben_phone.heard, 5, "me.updated on Ben's phone")
        ana_phone.update_profile(display_name="Ana Maria")  # after Ben's, over the same socket
        wait_until(lambda: "me.updated" in ana_phone.heard, 5, "Ana's own me.updated")
        assert ana_phone.heard.count("me.updated") == 1
        assert tablet.heard.count("me.updated") == ben_phone.heard.count("me.updated") == 1
        for phone in phones:
            phone.settle()
            assert phone.state()["me"] == server_state(client, phone.person)["me"]
    finally:
        for phone in phones:
            phone.close()


def test_a_bid_waiting_out_quiet_hours_moves_on_every_phone_when_they_change(
    client: ApiClient, live_server: LiveServer
) -> None:
    """Ana's bid reaches Ben at 23:00 in Berlin, to wait for 07:00; he then moves the end of
    his quiet hours to 09:00. The bid's `reachable_at` follows, and every phone (Ana's, Ben's,
    Ben's tablet) holds it as GET /bids/{id} shows it, told by the stream. (No event said so:
    the phones kept the `reachable_at` of the old hours.)"""
    clock.freeze(datetime(2031, 1, 15, 22, 0, tzinfo=UTC))  # 23:00 in Berlin
    ana, ben = client.couple()
    quiet = {"quiet_hours": {"start": "22:00", "end": "07:00"}}
    assert client.patch("/api/v1/me", as_=ben, json=quiet).status_code == 200
    couple_id = couple_id_of(client, ana)
    phones = [GuidedPhone(client, who, couple_id) for who in (ana, ben, another_phone(client, ben))]
    try:
        for phone in phones:
            phone.connect(live_server.url)
        bid = send_bid(client, ana)
        for phone in phones:
            phone.settle()
        later = {"quiet_hours": {"start": "22:00", "end": "09:00"}}
        assert client.patch("/api/v1/me", as_=ben, json=later).status_code == 200
        shown = client.get(f"/api/v1/bids/{bid}", as_=ana).json()
        assert shown["reachable_at"] == "2031-01-16T08:00:00.000000Z"  # 09:00 in Berlin
        for phone in phones:
            phone.settle()
            held = phone.state()["bids"]
            assert differences(held, server_state(client, phone.person)["bids"]) == []
            assert applied_once(phone)
    finally:
        for phone in phones:
            phone.close()


def test_the_phone_that_joined_applies_the_new_couples_events_once(
    client: ApiClient, live_server: LiveServer
) -> None:
    """Ben types Ana's code on a connected phone: `couple.paired` comes over the socket before
    his phone has read the join's answer. Taking the couple from the answer then starts nothing
    again (the guide reset the cursor to 0 there, and the phone applied the stream twice)."""
    ana, ben = client.register("Ana"), client.register("Ben")
    phone = GuidedPhone(client, ben, None)
    try:
        phone.connect(live_server.url)
        invite = client.post("/api/v1/couple/invites", as_=ana)
        joined = client.post("/api/v1/couple/join", as_=ben, json={"code": invite.json()["code"]})
        assert joined.status_code == 201, joined.text
        phone.wait_for_cursor(1)  # the socket's couple.paired: GET /couple, then a sync
        phone.joined(joined.json()["id"])
        send_bid(client, ana)
        phone.settle()
        assert phone.couple_id == joined.json()["id"]
        head = stream_head(client, ben)  # the pairing, the bid, its delivery
        assert phone.history == [(phone.couple_id, cursor) for cursor in range(1, head + 1)]
    finally:
        phone.close()


def test_a_sync_about_the_couple_just_left_does_not_start_the_new_one_again(
    client: ApiClient, live_server: LiveServer
) -> None:
    """Ben's phone comes back after Ana unpaired; while its first sync (naming the ended
    couple) is on its way, they pair again and the socket's `couple.paired` starts the new
    stream. The sync's 404 then finds the phone in the couple GET /couple names: it syncs,
    and applies nothing twice."""
    ana, ben = client.couple()
    phone = GuidedPhone(client, ben, couple_id_of(client, ben))
    new_couple: list[str] = []

    def pair_meanwhile(params: dict[str, Any]) -> None:
        phone.before_asking = None
        new_couple.append(client.pair(ben, ana)["id"])
        # The new couple's first event, over the socket: the phone checks GET /couple and
        # switches (its sync, once the one under way has ended, brings the event).
        wait_until(lambda: phone.couple_id == new_couple[0], 10, "the phone to switch couples")

    try:
        assert client.delete("/api/v1/couple", as_=ana).status_code == 204
        phone.before_asking = pair_meanwhile
        phone.connect(live_server.url)
        send_bid(client, ana)
        phone.settle()
        assert phone.couple_id == new_couple[0]
        head = stream_head(client, ben)
        assert phone.history == [(new_couple[0], cursor) for cursor in range(1, head + 1)]
    finally:
        phone.close()


def test_a_phone_back_after_an_unpair_and_a_new_pairing_holds_only_the_new_couple(
    client: ApiClient, live_server: LiveServer
) -> None:
    """Ben's tablet sleeps while Ana unpairs and they pair again. Back online, it finds the new
    couple (sync's 404, then GET /couple) and holds what GET /bids and /repairs show: none of
    the ended couple's bids or conversations, which neither partner can read any more (the
    guide never said to drop them, so the tablet kept showing them among the new ones). Its
    unsent message to the old conversation fails with 404 and keeps its text."""
    ana, ben = client.couple()
    couple_id = couple_id_of(client, ana)
    phones = [GuidedPhone(client, who, couple_id) for who in (ana, ben, another_phone(client, ben))]
    tablet = phones[2]
    try:
        for phone in phones:
            phone.connect(live_server.url)
        old_repair = start(client, ana)["id"]
        write(client, ben, old_repair, body="What I heard was that you felt alone.")
        send_bid(client, ana)
        tablet.settle()
        assert tablet.state() == server_state(client, tablet.person)
        tablet.go_offline()
        draft = tablet.write(old_repair, "Written on the train, sent after the unpair.")

        assert client.delete("/api/v1/couple", as_=ana).status_code == 204
        new_couple = client.pair(ben, ana)["id"]
        send_bid(client, ana)
        start(client, ben)
        for phone in phones[:2]:
            phone.settle()
            assert phone.couple_id == new_couple
        tablet.connect(live_server.url)
        tablet.settle()
        tablet.flush(old_repair)
        assert tablet.couple_id == new_couple
        for phone in phones:
            phone.settle()
            assert phone.state() == server_state(client, phone.person)
            assert applied_once(phone)
        assert draft.failed is not None and draft.failed["status"] == 404
        assert [d.body for d in tablet.outbox] == [draft.body]
    finally:
        for phone in phones:
            phone.close()


def test_after_a_couples_day_each_phone_holds_what_the_get_endpoints_show(
    client: ApiClient, live_server: LiveServer, worker: Worker
) -> None:
    """Ana's phone, Ben's phone and Ben's tablet follow the guide through a day: bids answered
    every way, a repair conversation with a break, check-ins answered and revealed, names and
    quiet hours changed. Each then holds what GET /bids, /repairs, /repairs/{id}/messages,
    /checkins, /checkins/current, /couple and /me show its account, built from events alone."""
    clock.freeze(datetime(2031, 3, 12, 9, 0, tzinfo=UTC))  # 10:00 in Berlin, where both live
    ana, ben = client.couple()
    couple_id = couple_id_of(client, ana)
    phones = [GuidedPhone(client, who, couple_id) for who in (ana, ben, another_phone(client, ben))]
    ana_phone, ben_phone, ben_tablet = phones

    def settled_and_equal() -> None:
        for phone in phones:
            phone.settle()
        gaps = [
            f"{name}'s {gap}"
            for name, phone in zip(("Ana", "Ben", "Ben's tablet"), phones, strict=True)
            for gap in differences(phone.state(), server_state(client, phone.person))
        ]
        assert not gaps, "\n".join(gaps)
        for phone in phones:
            assert applied_once(phone)

    def answer(bid_id: str, who: Person, kind: str, **more: Any) -> None:
        body = {"client_id": str(uuid.uuid4()), "kind": kind, **more}
        response = client.post(f"/api/v1/bids/{bid_id}/responses", as_=who, json=body)
        assert response.status_code == 201, response.text

    def in_minutes(minutes: int) -> str:
        return (clock.now() + timedelta(minutes=minutes)).isoformat()

    try:
        for phone in phones:
            phone.connect(live_server.url)
        toward = send_bid(client, ana)
        assert client.post(f"/api/v1/bids/{toward}/seen", as_=ben).status_code == 200
        answer(toward, ben, "toward")
        kept = send_bid(client, ben)
        answer(kept, ana, "later", back_at=in_minutes(60))
        answer(kept, ana, "toward")
        broken = send_bid(client, ana)
        answer(broken, ben, "later", back_at=in_minutes(30))
        send_bid(client, ben)  # left to expire
        ben_tablet.go_offline()  # on the shelf while Ben sets his quiet hours on his phone
        ben_phone.update_profile(quiet_hours={"start": "09:00", "end": "12:00"})
        ben_phone.update_profile(quiet_hours={"start": "09:00", "end": "11:00"})
        send_bid(client, ana)  # reaches Ben when his quiet hours end
        ben_tablet.connect(live_server.url)
        ana_phone.update_profile(display_name="Ana Maria")
        ana_phone.update_profile(timezone="Europe/Lisbon")
        ben_phone.update_profile(display_name="Benjamin")

        repair = start(client, ana, topic="Sunday")["id"]
        ana_phone.write(repair, "When you left the room I felt alone.")
        ana_phone.flush(repair)
        seq = write(client, ben, repair, body="I needed air; I am sorry it felt like leaving.")
        read = client.post(f"/api/v1/repairs/{repair}/read", as_=ana, json={"seq": seq["seq"]})
        assert read.status_code == 200, read.text
        paused = client.post(f"/api/v1/repairs/{repair}/pause", as_=ben, json={"minutes": 20})
        assert paused.status_code == 200, paused.text

        ana_phone.answer_checkin(4, 3, 5)
        ben_phone.answer_checkin(3, 4, 4)  # revealed
        ben_tablet.answer_checkin(5, 5, 4)  # the next round, from Ben's other phone
        settled_and_equal()

        clock.advance(timedelta(hours=25))  # the later broken, a bid expired, the break over
        for phone in phones:
            client.fresh(phone.person)
        worker.run_once()
        for who in (ana, ben):
            resolved = client.post(f"/api/v1/repairs/{repair}/resolve", as_=who)
            assert resolved.status_code == 200, resolved.text
        ana_phone.answer_checkin(2, 3, 3)  # revealed
        settled_and_equal()
        day = server_state(client, ana)
        outcomes = sorted(bid["outcome"] for bid in day["bids"].values())
        assert outcomes == ["later_broken", "later_kept", "missed", "missed", "toward"]
        assert [r["status"] for r in day["repairs"].values()] == ["resolved"]
        assert len(day["messages"][repair]) == 2
        assert [r["revealed_at"] is not None for r in day["checkins"].values()] == [True, True]
    finally:
        for phone in phones:
            phone.close()


def test_a_new_phone_reading_a_long_history_acknowledges_only_the_bids_still_open(
    client: ApiClient, live_server: LiveServer, worker: Worker
) -> None:
    """Ben signs in on a new tablet after a couple's months: its first sync brings every
    `bid.created` ever sent to him, each carrying the bid as it was created (not delivered).
    It acknowledges only the one still open: a bid answered or over stamps nothing, so the
    guide's phone posted `delivered` for every bid of the couple's history, one request (and
    a lock of the couple) each."""
    clock.freeze(datetime(2031, 3, 12, 9, 0, tzinfo=UTC))
    ana, ben = client.couple()
    answered = send_bid(client, ana)
    body = {"client_id": str(uuid.uuid4()), "kind": "toward"}
    response = client.post(f"/api/v1/bids/{answered}/responses", as_=ben, json=body)
    assert response.status_code == 201, response.text
    for _ in range(3):
        send_bid(client, ana)  # left to expire
    clock.advance(timedelta(hours=25))
    client.fresh(ana)
    worker.run_once()
    still_open = send_bid(client, ana)
    tablet = GuidedPhone(client, another_phone(client, ben), None)
    try:
        tablet.connect(live_server.url)
        tablet.settle()
        assert tablet.acknowledged == [still_open]
        assert tablet.state() == server_state(client, tablet.person)
    finally:
        tablet.close()


def test_a_late_couple_paired_of_a_couple_left_does_not_switch_the_phone_back(
    client: ApiClient, live_server: LiveServer
) -> None:
    """Ben's phone follows Ben from Ana to Cat. Then the socket brings, late, the `couple.paired`
    of his couple with Ana (a hung Redis delivering what it held, out of order with what came
    by sync). It belongs to another stream: the phone checks GET /couple and stays with Cat.
    (The guide started a stream for any `couple.paired` of another couple, so the phone went
    back to the ended couple, showed Ana as the partner, and dropped Cat's bids.)"""
    ana, ben = client.couple()
    first = client.get("/api/v1/sync", as_=ben).json()["events"][0]
    assert first["type"] == "couple.paired"
    phone = GuidedPhone(client, ben, couple_id_of(client, ben))
    try:
        phone.connect(live_server.url)
        send_bid(client, ana)
        phone.settle()
        assert client.delete("/api/v1/couple", as_=ana).status_code == 204
        cat = client.register("Cat")
        second = client.pair(ben, cat)["id"]
        send_bid(client, cat)
        phone.settle()
        assert phone.couple_id == second
        phone.enqueue(first)  # late, from the socket
        wait_until(lambda: phone.idle() and not phone.syncing(), 5, "the late event handled")
        assert phone.couple_id == second
        assert phone.state() == server_state(client, ben)
        assert phone.history[-1][0] == second
    finally:
        phone.close()


def test_phones_of_a_partner_whose_account_was_deleted_start_clean_with_someone_else(
    client: ApiClient, live_server: LiveServer
) -> None:
    """Ana deletes her account: Ben's phone, connected, applies `couple.ended` and clears;
    his tablet, asleep, learns it from sync's 404 and GET /couple. Ben then pairs with Cat:
    both hold the new couple alone, each event applied once, as the GET endpoints show."""
    ana, ben = client.couple()
    couple_id = couple_id_of(client, ben)
    phones = [GuidedPhone(client, who, couple_id) for who in (ben, another_phone(client, ben))]
    phone, tablet = phones
    try:
        for each in phones:
            each.connect(live_server.url)
        send_bid(client, ana)
        start(client, ana)
        for each in phones:
            each.settle()
        tablet.go_offline()
        body = {"password": ana.password}
        assert client.request("DELETE", "/api/v1/me", as_=ana, json=body).status_code == 204
        wait_until(lambda: phone.couple_id is None, 5, "the phone to apply couple.ended")
        assert [ended.get("reason") for ended in phone.ended] == ["account_deleted"]
        tablet.connect(live_server.url)
        tablet.settle()
        for each in phones:
            assert each.state() == server_state(client, each.person)

        cat = client.register("Cat")
        new_couple = client.pair(ben, cat)["id"]
        send_bid(client, cat)
        for each in phones:
            each.settle()
            assert each.couple_id == new_couple
            assert each.state() == server_state(client, each.person)
            assert applied_once(each)
            assert {held for held, _ in each.history} == {couple_id, new_couple}
    finally:
        for each in phones:
            each.close()
