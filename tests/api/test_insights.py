"""Insights against hand-computed figures on fixed data: quiet hours across time zones,
kept and broken promises, expired bids; the pattern read; the blind A.R.E. reveal."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from sqlalchemy import event

from service.clock import clock
from service.extensions import db
from service.worker.runner import Worker
from tests.support.client import ApiClient, Person
from tests.support.phones import Phone


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Diary:
    """Acts as the partners at fixed moments."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def when(self, moment: str, who: Person) -> Person:
        clock.freeze(at(moment))
        return self.client.fresh(who)

    def bid(self, moment: str, sender: Person) -> str:
        who = self.when(moment, sender)
        response = self.client.post(
            "/api/v1/bids", as_=who, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def answer(
        self,
        moment: str,
        who: Person,
        bid_id: str,
        kind: str = "toward",
        back_at: str | None = None,
    ) -> None:
        body: dict[str, Any] = {"client_id": str(uuid.uuid4()), "kind": kind}
        if back_at:
            body["back_at"] = back_at
        response = self.client.post(
            f"/api/v1/bids/{bid_id}/responses", as_=self.when(moment, who), json=body
        )
        assert response.status_code == 201, response.text

    def insights(self, moment: str, who: Person, days: int = 7) -> dict[str, Any]:
        response = self.client.get(
            "/api/v1/insights", as_=self.when(moment, who), params={"days": days}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


def test_figures_match_a_hand_computed_week(client: ApiClient, worker: Worker) -> None:
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "America/New_York")
    client.pair(ana, ben)
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    d = Diary(client)

    b1 = d.bid("2031-01-13T15:00:00", ana)  # 10:00 in New York
    d.answer("2031-01-13T15:10:00", ben, b1)  # toward after 600 s
    b2 = d.bid("2031-01-14T04:00:00", ana)  # 23:00 in New York: quiet until 12:00Z
    d.answer("2031-01-14T12:30:00", ben, b2)  # 1800 s after quiet hours end
    b3 = d.bid("2031-01-14T16:00:00", ana)
    d.answer("2031-01-14T16:05:00", ben, b3, "later", "2031-01-14T18:00:00Z")  # 300 s
    d.answer("2031-01-14T17:30:00", ben, b3)  # kept
    b4 = d.bid("2031-01-15T16:00:00", ana)
    d.answer("2031-01-15T16:01:00", ben, b4, "later", "2031-01-15T17:00:00Z")  # 60 s
    d.answer("2031-01-15T18:00:00", ben, b4)  # too late: broken
    d.bid("2031-01-15T20:00:00", ana)  # never answered
    clock.freeze(at("2031-01-16T20:00:00"))
    assert worker.run_once().expired_bids == 1
    b6 = d.bid("2031-01-16T10:00:00", ben)
    d.answer("2031-01-16T10:00:20", ana, b6)  # 20 s

    figures = d.insights("2031-01-17T12:00:00", ana)
    assert figures["days"] == 7
    assert figures["since"] == "2031-01-10T12:00:00.000000Z"
    by_name = {p["display_name"]: p for p in figures["partners"]}
    assert by_name["Ben"] | {"user_id": None} == {
        "user_id": None,
        "display_name": "Ben",
        "bids_sent": 1,
        "bids_received": 5,
        "answered": 4,
        "missed": 1,
        "unreachable": 0,
        "open": 0,
        "response_rate": 0.8,
        "turn_toward_rate": 0.6,  # b1, b2 and the kept promise of b3
        "median_response_seconds": 300,  # of 60, 300, 600, 1800 (nearest rank)
        "p90_response_seconds": 1800,
        "median_delivery_seconds": 300,  # of 60, 300, 600, 30600
    }
    assert by_name["Ana"] | {"user_id": None} == {
        "user_id": None,
        "display_name": "Ana",
        "bids_sent": 5,
        "bids_received": 1,
        "answered": 1,
        "missed": 0,
        "unreachable": 0,
        "open": 0,
        "response_rate": 1.0,
        "turn_toward_rate": 1.0,
        "median_response_seconds": 20,
        "p90_response_seconds": 20,
        "median_delivery_seconds": 20,
    }
    assert figures["couple"] == {
        "bids": 6,
        "repairs_started": 0,
        "repairs_resolved": 0,
        "median_seconds_to_resolution": None,
    }
    assert figures["weekly"] == [
        {
            "week_start": "2031-01-10T12:00:00.000000Z",
            "bids": 6,
            "unreachable": 0,
            "open": 0,
            "turned_toward": 4,
            "turn_toward_rate": 0.6667,
        }
    ]
    assert figures["pattern"] is None  # six bids: too few to read anything into
    # Both partners see the same figures.
    assert d.insights("2031-01-17T12:00:00", ben)["partners"] == figures["partners"][::-1]


def test_the_window_leaves_older_bids_out(client: ApiClient) -> None:
    ana, ben = client.couple()
    d = Diary(client)
    old = d.bid("2031-02-01T10:00:00", ana)
    d.answer("2031-02-01T10:10:00", ben, old)
    new = d.bid("2031-02-20T10:00:00", ana)
    d.answer("2031-02-20T10:00:30", ben, new)
    week = d.insights("2031-02-21T10:00:00", ana, days=7)
    month = d.insights("2031-02-21T10:00:00", ana, days=30)
    ben_week = next(p for p in week["partners"] if p["display_name"] == "Ben")
    ben_month = next(p for p in month["partners"] if p["display_name"] == "Ben")
    assert (ben_week["bids_received"], ben_week["median_response_seconds"]) == (1, 30)
    assert (ben_month["bids_received"], ben_month["p90_response_seconds"]) == (2, 600)
    assert len(month["weekly"]) == 5
    assert [w["bids"] for w in month["weekly"]] == [0, 1, 0, 0, 1]
    bad = client.get("/api/v1/insights", as_=ana, params={"days": 14})
    assert bad.status_code == 422


def test_a_bid_of_the_last_second_counts_in_the_last_week(client: ApiClient) -> None:
    """The window starts at `now` less its days, to the microsecond, and a bid sent in the same
    second as the question must not fall past the last week of the trend."""
    ana, ben = client.couple()
    d = Diary(client)
    d.bid("2031-02-21T10:00:00.400000", ana)
    week = d.insights("2031-02-21T10:00:00.900000", ben, days=7)
    assert [w["bids"] for w in week["weekly"]] == [1]
    assert week["couple"]["bids"] == 1


def test_a_bid_just_before_a_week_starts_counts_in_the_week_before(client: ApiClient) -> None:
    """Weeks start at `since + 7k days` to the microsecond: a bid half a second before the
    second week starts belongs to the first, one just after it to the second."""
    ana, ben = client.couple()
    d = Diary(client)
    d.bid("2031-03-07T10:00:00.400000", ana)  # week 2 starts at 2031-03-07T10:00:00.900000
    d.bid("2031-03-07T10:00:01.000000", ana)
    month = d.insights("2031-03-30T10:00:00.900000", ben, days=30)
    assert month["weekly"][1]["week_start"] == "2031-03-07T10:00:00.900000Z"
    assert [w["bids"] for w in month["weekly"]] == [1, 1, 0, 0, 0]


def test_time_to_resolution_is_whole_seconds_cut_down_on_every_database(
    client: ApiClient,
) -> None:
    """Like a response time, a conversation's time to resolution drops its fraction of a
    second: 9.2 s is 9 and 10.6 s is 10, on SQLite and PostgreSQL alike (one counted whole
    seconds on each clock, the other rounded)."""
    ana, ben = client.couple()
    d = Diary(client)

    def converse(start: str, ana_heard: str, ben_heard: str) -> None:
        who = d.when(start, ana)
        repair = client.post("/api/v1/repairs", as_=who, json={"client_id": str(uuid.uuid4())})
        assert repair.status_code == 201, repair.text
        for moment, person in ((ana_heard, ana), (ben_heard, ben)):
            heard = client.post(
                f"/api/v1/repairs/{repair.json()['id']}/resolve", as_=d.when(moment, person)
            )
            assert heard.status_code == 200, heard.text

    converse("2031-04-01T10:00:00.900000", "2031-04-01T10:00:05", "2031-04-01T10:00:10.100000")
    first = d.insights("2031-04-02T10:00:00", ben, days=7)["couple"]
    converse("2031-04-20T10:00:00.100000", "2031-04-20T10:00:05", "2031-04-20T10:00:10.700000")
    second = d.insights("2031-04-21T10:00:00", ben, days=7)["couple"]
    assert (first["repairs_resolved"], first["median_seconds_to_resolution"]) == (1, 9)
    assert (second["repairs_resolved"], second["median_seconds_to_resolution"]) == (1, 10)


def test_the_pursue_withdraw_cycle_is_named_kindly_with_its_numbers(client: ApiClient) -> None:
    ana, ben = client.couple()
    d = Diary(client)
    for day in range(10, 20):
        bid_id = d.bid(f"2031-03-{day}T09:00:00", ana)
        if day % 3 == 0:  # Ben turns toward 3 of the 10 bids, after two hours each
            d.answer(f"2031-03-{day}T11:00:00", ben, bid_id)
    d.bid("2031-03-19T12:00:00", ben)
    figures = d.insights("2031-03-20T12:00:00", ben, days=30)
    pattern = figures["pattern"]
    assert pattern["name"] == "pursue_withdraw"
    assert pattern["reaching_partner_id"] == ana.id
    assert pattern["withdrawing_partner_id"] == ben.id
    assert pattern["evidence"] == {
        "bids": 11,
        "share_sent_by_reaching_partner": 0.909,
        "turn_toward_rate_of_other": 0.3,
        "median_response_seconds_of_other": 7200,
    }
    message = pattern["message"]
    assert "Ana sent 91% of your bids" in message
    assert "Ben turned toward 30%" in message and "2.0 hours" in message
    assert "The cycle is the problem, not either of you" in message
    for blame in ("fault", "blame", "should", "never", "always"):
        assert blame not in message.lower()


def test_bids_a_sleeping_partner_has_not_seen_yet_name_no_cycle(
    client: ApiClient, worker: Worker
) -> None:
    """Ten bids sent during Ben's quiet hours wait for his morning: that night they say nothing
    about how he turns, so no cycle is named. Once they have expired unanswered, they do."""
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "Europe/Berlin")
    client.pair(ana, ben)
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    d = Diary(client)
    for minute in range(10):
        d.bid(f"2031-03-10T21:{minute:02d}:00", ana)  # 22:xx in Berlin: quiet until 06:00Z

    night = d.insights("2031-03-10T22:00:00", ana)
    assert night["partners"][1]["bids_received"] == 10
    assert night["pattern"] is None

    clock.freeze(at("2031-03-11T21:30:00"))
    assert worker.run_once().expired_bids == 10
    later = d.insights("2031-03-11T21:30:00", ana)
    assert later["pattern"]["withdrawing_partner_id"] == ben.id
    assert later["pattern"]["evidence"]["turn_toward_rate_of_other"] == 0.0


def test_promises_to_come_back_not_yet_due_name_no_cycle(client: ApiClient) -> None:
    """A "not now, I'll be back at 20:00" is turning toward if kept: before 20:00, ten such
    answers do not make Ben the withdrawing partner. Once 20:00 has passed, the kept and the
    broken promises are what the cycle is read on."""
    ana, ben = client.couple()
    d = Diary(client)
    bids = []
    for minute in range(10):
        bid_id = d.bid(f"2031-03-10T18:{minute:02d}:00", ana)
        d.answer(f"2031-03-10T18:{minute:02d}:30", ben, bid_id, "later", "2031-03-10T20:00:00Z")
        bids.append(bid_id)

    waiting = d.insights("2031-03-10T19:00:00", ana)
    assert waiting["partners"][1]["answered"] == 10
    assert waiting["pattern"] is None

    for bid_id in bids[:4]:
        d.answer("2031-03-10T19:30:00", ben, bid_id)  # kept
    d.answer("2031-03-10T20:10:00", ben, bids[4])  # back after 20:00: broken
    past = d.insights("2031-03-10T20:30:00", ana)
    assert past["partners"][1]["turn_toward_rate"] == 0.4
    assert past["pattern"]["evidence"]["turn_toward_rate_of_other"] == 0.4
    assert "Ben turned toward 40% of them" in past["pattern"]["message"]


def test_one_slow_answer_among_bids_still_open_names_no_cycle(client: ApiClient) -> None:
    """Ana sent ten bids today; Ben has answered one, after two hours, and the rest are still
    open. A median of one answer, and a rate over bids he may yet answer, are too thin to name
    a cycle with."""
    ana, ben = client.couple()
    d = Diary(client)
    first = d.bid("2031-03-10T08:00:00", ana)
    for hour in range(9, 18):
        d.bid(f"2031-03-10T{hour:02d}:00:00", ana)
    d.answer("2031-03-10T10:00:00", ben, first)
    figures = d.insights("2031-03-10T18:00:00", ben)
    assert figures["partners"][0]["median_response_seconds"] == 7200
    assert figures["pattern"] is None


def test_bids_sent_while_the_partner_sleeps_leave_the_rates_as_they_were(
    client: ApiClient, worker: Worker
) -> None:
    """Ben turned toward two of Ana's three bids yesterday. Tonight she sends ten while he
    sleeps in quiet hours: until he wakes and answers, or they expire, they say nothing about
    how he turns, so his rates (and the week's) stay what they were, and the ten are `open`.
    Once decided they count: four answered in the morning, six expired unanswered."""
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "Europe/Berlin")
    client.pair(ana, ben)
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    d = Diary(client)
    for hour in (8, 9):
        d.answer(f"2031-03-09T{hour:02d}:10:00", ben, d.bid(f"2031-03-09T{hour:02d}:00:00", ana))
    d.bid("2031-03-09T10:00:00", ana)  # expires unanswered at 2031-03-10T10:00Z

    def ben_and_week(moment: str) -> tuple[Any, ...]:
        figures = d.insights(moment, ana)
        ben_figures, week = figures["partners"][1], figures["weekly"][-1]
        return (
            ben_figures["open"],
            ben_figures["response_rate"],
            ben_figures["turn_toward_rate"],
            week["open"],
            week["turn_toward_rate"],
        )

    assert ben_and_week("2031-03-10T20:00:00") == (0, 0.6667, 0.6667, 0, 0.6667)
    night = []
    for minute in range(10):
        night.append(d.bid(f"2031-03-10T21:{minute:02d}:00", ana))  # 22:xx: quiet until 06:00Z
    assert ben_and_week("2031-03-10T21:30:00") == (10, 0.6667, 0.6667, 10, 0.6667)
    assert ben_and_week("2031-03-11T05:59:00") == (10, 0.6667, 0.6667, 10, 0.6667)

    for bid_id in night[:4]:
        d.answer("2031-03-11T06:30:00", ben, bid_id)
    assert ben_and_week("2031-03-11T07:00:00") == (6, 0.8571, 0.8571, 6, 0.8571)
    clock.freeze(at("2031-03-11T21:30:00"))
    assert worker.run_once().expired_bids == 7  # with yesterday's, already counted missed
    after = d.insights("2031-03-11T21:30:00", ana)["partners"][1]
    assert (after["answered"], after["missed"], after["open"]) == (6, 7, 0)
    assert (after["response_rate"], after["turn_toward_rate"]) == (0.4615, 0.4615)


def test_a_bid_sent_a_minute_ago_is_open_not_a_zero(client: ApiClient) -> None:
    """A couple's first bid, sent a minute ago, has no outcome yet: the rates are null, as with
    no bid at all, not 0.0, and the bid is counted as `open` so a phone can say "1 still open".
    An unanswered bid is decided at its `expires_at`, before the worker marks it expired."""
    ana, ben = client.couple()
    d = Diary(client)
    d.bid("2031-03-10T12:00:00", ana)
    figures = d.insights("2031-03-10T12:01:00", ben)
    ben_figures, week = figures["partners"][0], figures["weekly"][0]
    assert (ben_figures["bids_received"], ben_figures["open"]) == (1, 1)
    assert (ben_figures["response_rate"], ben_figures["turn_toward_rate"]) == (None, None)
    assert (week["bids"], week["open"], week["turn_toward_rate"]) == (1, 1, None)

    over = d.insights("2031-03-11T12:00:00", ben)  # its expires_at; the worker has not run
    ben_figures, week = over["partners"][0], over["weekly"][0]
    assert (ben_figures["missed"], ben_figures["open"]) == (1, 0)
    assert (ben_figures["response_rate"], ben_figures["turn_toward_rate"]) == (0.0, 0.0)
    assert (week["open"], week["turn_toward_rate"]) == (0, 0.0)


def test_a_promise_not_yet_due_leaves_the_rate_as_it_was(client: ApiClient) -> None:
    """Ben turned toward Ana's first bid; to her second he says "not now, I'll be back at
    20:00". Before 20:00 the promise may yet be kept: his turn-toward rate stays 1.0 and the
    bid is `open` (his response rate counts it: a `later` is a response). After 20:00 without
    a `toward` it is broken and counts; a promise kept counts as turning toward at once."""
    ana, ben = client.couple()
    d = Diary(client)
    d.answer("2031-03-10T09:05:00", ben, d.bid("2031-03-10T09:00:00", ana))
    promised = d.bid("2031-03-10T18:00:00", ana)
    d.answer("2031-03-10T18:01:00", ben, promised, "later", "2031-03-10T20:00:00Z")

    waiting = d.insights("2031-03-10T19:00:00", ana)
    ben_figures, week = waiting["partners"][1], waiting["weekly"][0]
    assert (ben_figures["answered"], ben_figures["open"]) == (2, 1)
    assert (ben_figures["response_rate"], ben_figures["turn_toward_rate"]) == (1.0, 1.0)
    assert (week["open"], week["turned_toward"], week["turn_toward_rate"]) == (1, 1, 1.0)

    broken = d.insights("2031-03-10T20:00:01", ana)
    ben_figures, week = broken["partners"][1], broken["weekly"][0]
    assert (ben_figures["open"], ben_figures["turn_toward_rate"]) == (0, 0.5)
    assert (week["open"], week["turn_toward_rate"]) == (0, 0.5)

    kept = d.bid("2031-03-10T21:00:00", ana)
    d.answer("2031-03-10T21:01:00", ben, kept, "later", "2031-03-10T23:00:00Z")
    d.answer("2031-03-10T21:30:00", ben, kept)
    ben_figures = d.insights("2031-03-10T21:31:00", ana)["partners"][1]
    assert (ben_figures["open"], ben_figures["turn_toward_rate"]) == (0, 0.6667)


def test_a_stranger_gets_no_insights(client: ApiClient) -> None:
    client.couple()
    stranger = client.register("Sol")
    assert client.get("/api/v1/insights", as_=stranger).status_code == 404
    assert client.get("/api/v1/checkins/current", as_=stranger).status_code == 404


def test_insights_read_the_couples_bids_twice_however_many_there_are(
    client: ApiClient, app: Flask
) -> None:
    """Each partner's counts, the weekly trend and the times are read from the window's bids in
    two statements (the counts, and the medians), not two for each figure of each partner."""
    ana, ben = client.couple()
    d = Diary(client)
    for day in range(10, 14):
        d.answer(f"2031-03-{day}T10:05:00", ben, d.bid(f"2031-03-{day}T10:00:00", ana))
    d.bid("2031-03-14T10:00:00", ben)
    reads: list[str] = []

    def on(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if re.search(r"\bFROM bids\b", statement):
            reads.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on)
    try:
        figures = d.insights("2031-03-20T10:00:00", ana, days=90)
    finally:
        event.remove(engine, "before_cursor_execute", on)
    assert (figures["partners"][0]["bids_sent"], figures["partners"][1]["answered"]) == (4, 4)
    assert figures["partners"][1]["median_response_seconds"] == 300
    assert len(reads) == 2, reads


def answer(scores: dict[str, Any], client_id: str | None = None) -> dict[str, Any]:
    """A check-in answer as a phone sends it: the scores and the write's own `client_id`."""
    return {**scores, "client_id": client_id or str(uuid.uuid4())}


def test_check_in_answers_stay_hidden_until_both_answered(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    ana, ben = client.couple()
    ben_phone = phone(ben.access_token)
    scores = {"accessible": 4, "responsive": 2, "engaged": 5}
    mine = client.post("/api/v1/checkins", as_=ana, json=answer(scores))
    assert mine.status_code == 201
    assert mine.json()["you"] | {"answered_at": None} == scores | {"answered_at": None}
    assert mine.json()["partner"] is None and mine.json()["revealed_at"] is None

    # Ben learns that Ana answered, never what she answered: not by REST, socket or sync.
    waiting = client.get("/api/v1/checkins/current", as_=ben).json()
    assert waiting["partner_answered"] is True and waiting["partner"] is None
    assert waiting["you"] is None
    told = ben_phone.wait_for("checkin.answered")
    synced = client.get("/api/v1/sync", as_=ben).json()["events"]
    for payload in (str(waiting), str(told), str(synced)):
        assert "'responsive': 2" not in payload and '"responsive": 2' not in payload
    assert client.post("/api/v1/checkins", as_=ana, json=answer(scores)).status_code == 409
    assert client.get("/api/v1/checkins", as_=ben).json()["items"] == []

    theirs = client.post(
        "/api/v1/checkins", as_=ben, json=answer({"accessible": 3, "responsive": 3, "engaged": 4})
    ).json()
    assert theirs["revealed_at"] is not None
    assert theirs["partner"]["responsive"] == 2
    revealed = ben_phone.wait_for("checkin.revealed")["data"]["answers"]
    assert revealed[ana.id] == scores | {"answered_at": mine.json()["you"]["answered_at"]}
    shown = client.get("/api/v1/checkins/current", as_=ana).json()
    assert shown["partner"]["engaged"] == 4
    assert len(client.get("/api/v1/checkins", as_=ana).json()["items"]) == 1
    # The next answer opens the next round.
    assert client.post("/api/v1/checkins", as_=ana, json=answer(scores)).json()["number"] == 2


def test_revealed_check_ins_come_a_page_at_a_time(client: ApiClient) -> None:
    ana, ben = client.couple()
    scores = {"accessible": 4, "responsive": 3, "engaged": 5}
    for _ in range(3):
        assert client.post("/api/v1/checkins", as_=ana, json=answer(scores)).status_code == 201
        assert client.post("/api/v1/checkins", as_=ben, json=answer(scores)).status_code == 201
    client.post("/api/v1/checkins", as_=ana, json=answer(scores))  # round 4: open, not shown

    first = client.get("/api/v1/checkins", as_=ben, params={"limit": 2}).json()
    assert [r["number"] for r in first["items"]] == [3, 2]
    assert first["next"] is not None
    rest = client.get(
        "/api/v1/checkins", as_=ben, params={"limit": 2, "before": first["next"]}
    ).json()
    assert [r["number"] for r in rest["items"]] == [1]
    assert rest["next"] is None
    for forged in ("yesterday", "²", "9" * 20):
        wrong = client.get("/api/v1/checkins", as_=ben, params={"before": forged})
        assert wrong.status_code == 422, (forged, wrong.text)
        assert "before" in wrong.json()["errors"]


def test_a_page_of_check_ins_reads_its_answers_at_once(client: ApiClient, app: Flask) -> None:
    """A page of 200 rounds is one read of their answers, not one per round."""
    ana, ben = client.couple()
    scores = {"accessible": 4, "responsive": 3, "engaged": 5}
    reads: list[str] = []

    def on(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if re.match(r"\s*SELECT\b.*\bFROM checkin_answers\b", statement, re.DOTALL):
            reads.append(statement)

    def answers_read(rounds: int) -> int:
        reads.clear()
        page = client.get("/api/v1/checkins", as_=ben, params={"limit": 200}).json()
        assert len(page["items"]) == rounds
        return len(reads)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on)
    try:
        for rounds in range(1, 4):
            for who in (ana, ben):
                posted = client.post("/api/v1/checkins", as_=who, json=answer(scores))
                assert posted.status_code == 201
            assert answers_read(rounds) == 1, (rounds, reads)
    finally:
        event.remove(engine, "before_cursor_execute", on)


def test_an_empty_before_asks_for_the_first_page_of_check_ins(client: ApiClient) -> None:
    """A phone that builds `?before=` from a `next` it does not have yet gets the first page,
    as on `/bids`, `/repairs` and `/devices`, not a 422."""
    ana, ben = client.couple()
    scores = {"accessible": 4, "responsive": 3, "engaged": 5}
    for who in (ana, ben):
        assert client.post("/api/v1/checkins", as_=who, json=answer(scores)).status_code == 201
    first = client.get("/api/v1/checkins", as_=ben, params={"limit": 1, "before": ""})
    assert first.status_code == 200, first.text
    assert [r["number"] for r in first.json()["items"]] == [1]
    for listed in ("/api/v1/bids", "/api/v1/repairs", "/api/v1/devices"):
        assert client.get(listed, as_=ben, params={"before": ""}).status_code == 200, listed


def test_bad_check_ins_are_refused(client: ApiClient) -> None:
    ana, _ = client.couple()
    for body in (
        {"accessible": 0, "responsive": 3, "engaged": 3},
        {"accessible": 6, "responsive": 3, "engaged": 3},
        {"accessible": 3, "responsive": 3},
        {"accessible": "a", "responsive": 3, "engaged": 3},
    ):
        assert client.post("/api/v1/checkins", as_=ana, json=answer(body)).status_code == 422
    assert client.get("/api/v1/checkins/current", as_=ana).json()["number"] == 0


def test_a_retried_check_in_answer_returns_its_round_and_stores_nothing(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    """Ana's phone never heard the answer to its answer and sends it again: before and after
    Ben answers (which reveals the round), the retry returns the round, 200, and neither opens
    a round nor tells Ben anything."""
    ana, ben = client.couple()
    scores, client_id = {"accessible": 4, "responsive": 2, "engaged": 5}, str(uuid.uuid4())
    first = client.post("/api/v1/checkins", as_=ana, json=answer(scores, client_id))
    assert first.status_code == 201
    again = client.post("/api/v1/checkins", as_=ana, json=answer(scores, client_id))
    assert again.status_code == 200, again.text
    assert again.json() == first.json()

    client.post("/api/v1/checkins", as_=ben, json=answer({**scores, "engaged": 3}))
    retried = client.post("/api/v1/checkins", as_=ana, json=answer(scores, client_id))
    assert retried.status_code == 200, retried.text
    assert retried.json()["number"] == 1
    assert retried.json()["revealed_at"] is not None
    assert retried.json()["partner"]["engaged"] == 3
    assert client.get("/api/v1/checkins/current", as_=ben).json()["number"] == 1
    types = [e["type"] for e in client.get("/api/v1/sync", as_=ben).json()["events"]]
    assert types == ["couple.paired", "checkin.answered", "checkin.revealed"]


def test_a_check_in_client_id_sent_again_with_other_scores_is_refused(client: ApiClient) -> None:
    """Other scores under an answer's `client_id` are another answer, not a retry: 409, never
    the round answered as if they had been stored."""
    ana, _ = client.couple()
    scores, client_id = {"accessible": 4, "responsive": 2, "engaged": 5}, str(uuid.uuid4())
    assert client.post("/api/v1/checkins", as_=ana, json=answer(scores, client_id)).ok
    other = answer({**scores, "engaged": 1}, client_id)
    refused = client.post("/api/v1/checkins", as_=ana, json=other)
    assert refused.status_code == 409, refused.text
    assert "client_id" in refused.json()["detail"]
    assert client.get("/api/v1/checkins/current", as_=ana).json()["you"]["engaged"] == 5


def test_a_check_in_client_id_of_an_earlier_pairing_is_a_conflict(client: ApiClient) -> None:
    ana, ben = client.couple()
    client_id = str(uuid.uuid4())
    scores = {"accessible": 4, "responsive": 4, "engaged": 4}
    assert client.post("/api/v1/checkins", as_=ana, json=answer(scores, client_id)).ok
    assert client.delete("/api/v1/couple", as_=ben).status_code == 204
    client.pair(ana, client.register("Cat"))
    reused = client.post("/api/v1/checkins", as_=ana, json=answer(scores, client_id))
    assert reused.status_code == 409, reused.text
    assert reused.json()["code"] == "conflict"
    assert client.get("/api/v1/checkins/current", as_=ana).json()["number"] == 0


def test_a_check_in_answer_needs_its_client_id(client: ApiClient) -> None:
    ana, _ = client.couple()
    scores = {"accessible": 4, "responsive": 4, "engaged": 4}
    refused = client.post("/api/v1/checkins", as_=ana, json=scores)
    assert refused.status_code == 422
    assert "client_id" in refused.json()["errors"]


def test_a_bid_that_could_never_reach_its_partner_is_not_turning_away(
    client: ApiClient, worker: Worker
) -> None:
    """Quiet hours from 07:00 to 06:45 leave a quarter hour a day; the night New York's clocks
    go back stretches them past the bid's 24 hours. Such a bid is `unreachable`: left out of
    `missed` and of the rates. A bid of an ordinary night, reachable for its last 15 minutes,
    is still missed; one answered during quiet hours still counts as answered."""
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "America/New_York")
    client.pair(ana, ben)
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "07:00", "end": "06:45"}})
    d = Diary(client)

    # 07:00 EDT on the Saturday before the clocks go back: quiet until 06:45 EST, 24 h 45 min.
    never = d.bid("2031-11-01T11:00:00", ana)
    assert d.client.get(f"/api/v1/bids/{never}", as_=ana).json()["reachable_at"] == (
        "2031-11-02T11:45:00.000000Z"
    )
    answered = d.bid("2031-11-01T11:05:00", ana)
    d.answer("2031-11-01T12:00:00", ben, answered)  # during quiet hours: 0 s

    # While still open, the bid that cannot reach Ben before it expires does not lower his rates.
    ben_now = d.insights("2031-11-01T12:30:00", ana)["partners"][1]
    assert ben_now["display_name"] == "Ben"
    assert (ben_now["bids_received"], ben_now["answered"]) == (2, 1)
    assert (ben_now["missed"], ben_now["unreachable"]) == (0, 1)
    assert (ben_now["response_rate"], ben_now["turn_toward_rate"]) == (1.0, 1.0)

    missed = d.bid("2031-11-03T12:00:00", ana)  # 07:00 EST: reachable 11:45Z, expires 12:00Z
    assert d.client.get(f"/api/v1/bids/{missed}", as_=ana).json()["reachable_at"] == (
        "2031-11-04T11:45:00.000000Z"
    )
    clock.freeze(at("2031-11-04T13:00:00"))
    assert worker.run_once().expired_bids == 2

    figures = d.insights("2031-11-05T12:00:00", ben)
    ben_figures = figures["partners"][0]
    assert ben_figures | {"user_id": None} == {
        "user_id": None,
        "display_name": "Ben",
        "bids_sent": 0,
        "bids_received": 3,
        "answered": 1,
        "missed": 1,  # the ordinary night's bid only
        "unreachable": 1,
        "open": 0,
        "response_rate": 0.5,  # of the two bids that could reach him
        "turn_toward_rate": 0.5,
        "median_response_seconds": 0,
        "p90_response_seconds": 0,
        "median_delivery_seconds": 3300,  # delivered by the answer itself
    }
    assert figures["partners"][1]["unreachable"] == 0
    assert figures["weekly"] == [
        {
            "week_start": "2031-10-29T12:00:00.000000Z",
            "bids": 3,
            "unreachable": 1,
            "open": 0,
            "turned_toward": 1,
            "turn_toward_rate": 0.5,
        }
    ]


def test_a_partner_who_travels_is_timed_from_the_end_of_the_night_they_are_in(
    client: ApiClient,
) -> None:
    """Ben keeps quiet hours from 22:00 to 07:00. Ana's bid reaches New York at 23:00, to wait
    for 07:00 there (12:00Z); Ben has flown to Los Angeles, and at 23:00 there he sets his time
    zone: the bid waits for 07:00 in Los Angeles (15:00Z), as its push does. Answered at 07:05
    there, it took him five minutes, not three hours of a night the service kept it from him."""
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "America/New_York")
    client.pair(ana, ben)
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    d = Diary(client)
    bid = d.bid("2031-01-14T04:00:00", ana)  # 23:00 in New York
    assert client.get(f"/api/v1/bids/{bid}", as_=ana).json()["reachable_at"] == (
        "2031-01-14T12:00:00.000000Z"
    )
    moved = client.patch(
        "/api/v1/me",
        as_=d.when("2031-01-14T07:00:00", ben),  # 23:00 in Los Angeles
        json={"timezone": "America/Los_Angeles"},
    )
    assert moved.status_code == 200, moved.text
    shown = client.get(f"/api/v1/bids/{bid}", as_=d.when("2031-01-14T07:00:00", ana)).json()
    assert shown["reachable_at"] == "2031-01-14T15:00:00.000000Z"
    d.answer("2031-01-14T15:05:00", ben, bid)
    answered = client.get(f"/api/v1/bids/{bid}", as_=d.when("2031-01-14T15:05:00", ana)).json()
    assert answered["response_seconds"] == 300
    ben_figures = d.insights("2031-01-15T12:00:00", ana)["partners"][1]
    assert ben_figures["median_response_seconds"] == 300


def test_a_night_between_a_bid_and_its_answer_is_not_counted_as_turning_away(
    client: ApiClient,
) -> None:
    """Ben keeps quiet hours from 22:00 to 07:00 in Berlin. Every evening for ten days Ana's bid
    comes at 21:50, before his night, so it reaches him at once; he answers each at 07:05. Ten
    minutes before sleep and five after it: 900 s awake, not 9 h 15 min, and no cycle is named.
    The bid's own `response_seconds` still runs from `reachable_at`, night and all."""
    ana = client.register("Ana", "Europe/Berlin")
    ben = client.register("Ben", "Europe/Berlin")
    client.pair(ana, ben)
    client.patch("/api/v1/me", as_=ben, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    d = Diary(client)
    for day in range(10, 20):
        bid_id = d.bid(f"2031-01-{day}T20:50:00", ana)  # 21:50 in Berlin
        d.answer(f"2031-01-{day + 1}T06:05:00", ben, bid_id)  # 07:05 the next morning
    shown = client.get(f"/api/v1/bids/{bid_id}", as_=d.when("2031-01-20T06:05:00", ana)).json()
    assert shown["reachable_at"] == "2031-01-19T20:50:00.000000Z"
    assert shown["response_seconds"] == 33300

    figures = d.insights("2031-01-21T12:00:00", ana, days=30)
    ben_figures = figures["partners"][1]
    assert ben_figures["display_name"] == "Ben"
    assert (ben_figures["answered"], ben_figures["turn_toward_rate"]) == (10, 1.0)
    assert ben_figures["median_response_seconds"] == 900
    assert ben_figures["p90_response_seconds"] == 900
    assert figures["pattern"] is None


def test_an_earlier_pairing_of_the_same_two_counts_nowhere(client: ApiClient) -> None:
    """Ana and Ben unpair and pair again: the new pairing's insights and check-ins start from
    nothing, the bids, conversation and check-in answer of the earlier one left out."""
    ana, ben = client.couple()
    d = Diary(client)
    d.answer("2031-03-10T10:05:00", ben, d.bid("2031-03-10T10:00:00", ana))
    d.bid("2031-03-10T11:00:00", ben)
    who = d.when("2031-03-10T12:00:00", ana)
    scores = {"accessible": 4, "responsive": 3, "engaged": 5}
    assert client.post("/api/v1/checkins", as_=who, json=answer(scores)).status_code == 201
    started = client.post("/api/v1/repairs", as_=who, json={"client_id": str(uuid.uuid4())})
    assert started.status_code == 201, started.text
    assert client.delete("/api/v1/couple", as_=client.fresh(ben)).status_code == 204
    client.pair(client.fresh(ana), client.fresh(ben))

    figures = d.insights("2031-03-10T13:00:00", ben)
    assert figures["couple"] == {
        "bids": 0,
        "repairs_started": 0,
        "repairs_resolved": 0,
        "median_seconds_to_resolution": None,
    }
    assert [(p["bids_sent"], p["bids_received"]) for p in figures["partners"]] == [(0, 0)] * 2
    assert [w["bids"] for w in figures["weekly"]] == [0]
    current = client.get("/api/v1/checkins/current", as_=ben).json()
    assert (current["number"], current["partner_answered"]) == (0, False)
