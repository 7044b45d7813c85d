"""A phone that keeps its copy of the couple's stream as docs/mobile.md §7 and §11 tell an app to.

It follows the guide's pseudo-code step by step: socket events, sync pages and the messages
its outbox gets back go to one serial queue (a thread here); `apply` ignores what it has,
applies `last + 1`, and syncs on a gap; `sync_now` runs one sync at a time, and runs once more
when asked again meanwhile; an event of another couple, or a sync's 404 or 409, goes to
`handleUnpaired`, and a new stream starts with nothing of the couple held before. It keeps
what the guide says to keep, built only from what the guide tells it to read: bids, repair
conversations and their messages (`applyMessage`), the partner, check-ins, and a repair outbox
sent one message at a time; its own profile, from the sign-in, from the answers of the
changes it makes, from `me.updated` and from GET /me after each connect. Every applied event
is recorded, so a test can see that each was applied once, in order; `state()` is what the
phone holds, in the shape of the GET endpoints (`server_state`), bids shown as §6 says (a
`later` whose `back_at` has passed is broken, an unanswered bid past `expires_at` expired).
"""

from __future__ import annotations

import queue
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import socketio

from service.clock import clock
from tests.support.client import ApiClient, Person
from tests.support.waiting import wait_until

BID_EVENTS = (
    "bid.created",
    "bid.delivered",
    "bid.seen",
    "bid.answered",
    "bid.expired",
    "bid.rescheduled",
)
REPAIR_EVENTS = (
    "repair.started",
    "repair.read",
    "repair.paused",
    "repair.resumed",
    "repair.heard",
    "repair.resolved",
)


@dataclass
class Draft:
    """A message of the outbox: saved before the first try, retried with the same ids."""

    repair_id: str
    client_id: str
    written_at: str
    body: str
    failed: dict[str, Any] | None = None


class GuidedPhone:
    def __init__(
        self, api: ApiClient, person: Person, couple_id: str | None, page: int = 200
    ) -> None:
        self.api, self.person, self.page = api, person, page
        self.me = person.id
        self.couple_id, self.last = couple_id, 0  # "persisted"
        self.applied: list[int] = []
        self.history: list[tuple[str, int]] = []  # (couple, cursor) of every event applied
        self.bids: dict[str, dict[str, Any]] = {}
        self.repairs: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, dict[str, Any]]] = {}  # repair id -> message id
        self.partner: dict[str, Any] | None = None
        self.profile: dict[str, Any] = dict(person.user)  # as the sign-in gave it
        self.rounds: dict[str, dict[str, Any]] = {}  # check-in rounds, as GET /checkins shows
        self.ended: list[dict[str, Any]] = []
        self.outbox: list[Draft] = []
        self.acknowledged: list[str] = []  # the bids this phone posted `delivered` for
        self.received: list[int] = []  # cursors as the socket brought them
        self.heard: list[str] = []  # the name of every socket event, in the order it came
        self._timers: list[threading.Timer] = []  # syncs asked for by `sync.needed`, waiting
        # Test seams: called in a sync before it asks for a page, and between reading a page
        # and queueing its events; asked whether to lose a socket event (as a socket may).
        self.before_asking: Callable[[dict[str, Any]], None] | None = None
        self.after_reading: Callable[[dict[str, Any]], None] | None = None
        self.lose: Callable[[dict[str, Any]], bool] | None = None
        self._lock = threading.Lock()
        self._syncing = self._sync_again = False
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._applier = threading.Thread(target=self._apply_queued, daemon=True)
        self._applier.start()
        self.socket = self._new_socket()

    # -- the socket -------------------------------------------------------------------------

    def _new_socket(self) -> socketio.Client:
        sock = socketio.Client(reconnection=False)
        sock.on("*", self._on_socket_event)
        return sock

    def connect(self, url: str) -> GuidedPhone:
        self.socket.connect(url, auth={"token": self.person.access_token}, transports=["websocket"])
        self.read_profile()  # after every successful connect, with sync
        self.sync_now()
        return self

    def read_profile(self) -> None:
        """§10: the account's own settings changed on another phone while this one was not
        connected (`me.updated` is not sent again)."""
        response = self.api.get("/api/v1/me", as_=self.person)
        assert response.status_code == 200, response.text
        user = response.json()
        self._queue.put(lambda: self.profile.update(user))

    def go_offline(self) -> None:
        if self.socket.connected:
            self.socket.disconnect()
        self.socket = self._new_socket()

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self.socket.connected:
            self.socket.disconnect()
        self._queue.put(None)
        self._applier.join(timeout=5)

    def _on_socket_event(self, name: str, data: Any = None) -> None:
        self.heard.append(name)
        if name == "me.updated" and isinstance(data, dict):  # §10: this account's profile
            self._queue.put(lambda: self.profile.update(data))
            return
        if name == "sync.needed" and isinstance(data, dict):  # §7 rule 2: at a random moment
            wait = random.uniform(0, float(data.get("within_seconds", 0)))
            timer = threading.Timer(wait, self.sync_now)
            self._timers.append(timer)
            timer.start()
            return
        if isinstance(data, dict) and "cursor" in data:  # couple.*, bid.*, repair.*, checkin.*
            self.received.append(data["cursor"])
            if self.lose is not None and self.lose(data):
                return
            self.enqueue(data)

    def enqueue(self, event: dict[str, Any]) -> None:
        self._queue.put(lambda: self._apply(event))

    # -- sync: one at a time; asked again meanwhile, it runs once more --------------------------

    def sync_now(self) -> None:
        with self._lock:
            if self._syncing:
                self._sync_again = True
                return
            self._syncing = True
        while True:
            with self._lock:
                self._sync_again = False
            since = self.last
            while True:
                params: dict[str, Any] = {"since": since, "limit": self.page}
                if self.couple_id is not None:
                    params["couple_id"] = self.couple_id
                if self.before_asking is not None:
                    self.before_asking(params)
                response = self.api.get("/api/v1/sync", as_=self.person, params=params)
                if response.status_code in (404, 409):
                    with self._lock:
                        self._syncing = False
                    named = params.get("couple_id")
                    self._queue.put(lambda named=named: self._handle_unpaired(named))
                    return
                assert response.status_code == 200, response.text
                body = response.json()
                if self.after_reading is not None:
                    self.after_reading(body)
                for event in body["events"]:
                    self.enqueue(event)
                since = body["next"]
                if not body["has_more"]:
                    break
            with self._lock:
                if not self._sync_again:
                    self._syncing = False
                    return

    # -- apply: one serial queue ------------------------------------------------------------

    def _apply_queued(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job()
            finally:
                self._queue.task_done()

    def syncing(self) -> bool:
        """A sync is under way."""
        with self._lock:
            return self._syncing

    def idle(self) -> bool:
        """Nothing queued or being applied."""
        return self._queue.unfinished_tasks == 0

    def _apply(self, event: dict[str, Any]) -> None:
        if event["couple_id"] != self.couple_id:
            # A new pairing's, or a late one of a couple left: GET /couple says which.
            self._handle_unpaired(event["couple_id"])
            return
        if event["cursor"] <= self.last:
            return  # duplicate
        if event["cursor"] > self.last + 1:
            self.sync_now()  # gap: fetch what is missing
            return
        kind, data = event["type"], event["data"]
        if kind in BID_EVENTS:
            self.bids[data["id"]] = data
        elif kind in REPAIR_EVENTS:
            self._upsert_repair(data)
        elif kind == "repair.message":
            self._apply_message(data)
        elif kind == "checkin.answered":
            self._mark_answered(data)
        elif kind == "checkin.revealed":
            self._save_revealed_round(data)
        elif kind == "couple.paired":
            self.partner = next(p for p in data["partners"] if p["id"] != self.me)
        elif kind == "couple.partner_updated":
            if data["id"] == self.me:
                self.profile.update(data)  # saveOwnProfile
            else:
                self.partner = data
        elif kind == "couple.ended":
            self.ended.append(data)
        self.applied.append(event["cursor"])
        self.history.append((event["couple_id"], event["cursor"]))
        self.last = event["cursor"]
        if kind == "bid.created" and self._to_acknowledge(data):
            self.acknowledged.append(data["id"])
            self.api.post(f"/api/v1/bids/{data['id']}/delivered", as_=self.person)
        if kind == "couple.ended":
            self._clear_stream_state()

    def _to_acknowledge(self, bid: dict[str, Any]) -> bool:
        """A bid sent to this account, not delivered when created, and still open (§6)."""
        still_open = datetime.fromisoformat(bid["expires_at"]) > clock.now()
        return bid["recipient_id"] == self.me and not bid["delivered_at"] and still_open

    def _round(self, data: dict[str, Any]) -> dict[str, Any]:
        """The round an event names, as held, or as GET /checkins/current shows a new one."""
        return self.rounds.setdefault(
            data["round_id"],
            {
                "id": data["round_id"],
                "number": data["number"],
                "opened_at": data.get("opened_at"),
                "revealed_at": None,
                "you": None,
                "partner_answered": False,
                "partner": None,
            },
        )

    def _mark_answered(self, data: dict[str, Any]) -> None:
        """checkin.answered names who answered: this account (from another of its phones),
        or the partner."""
        held = self._round(data)
        if data["user_id"] != self.me:
            held["partner_answered"] = True
        elif held["you"] is None:  # answered on another phone: read what (never in events)
            current = self.api.get("/api/v1/checkins/current", as_=self.person)
            if current.status_code == 200 and current.json()["id"] == held["id"]:
                held.update(current.json())

    def _save_revealed_round(self, data: dict[str, Any]) -> None:
        """`saveRevealedRound`: both answers, keyed by user id."""
        held = self._round(data)
        answers = data["answers"]
        partner = next((uid for uid in answers if uid != self.me), None)
        held.update(
            opened_at=data.get("opened_at"),
            revealed_at=data.get("revealed_at"),
            you=answers.get(self.me),
            partner_answered=partner is not None,
            partner=answers.get(partner) if partner else None,
        )

    def _save_answered_round(self, round_: dict[str, Any]) -> None:
        """A `POST /checkins` answer: the round as it is, unless an event showed more."""
        held = self.rounds.get(round_["id"])
        if held is None or held["revealed_at"] is None:
            self.rounds[round_["id"]] = round_

    def _upsert_repair(self, data: dict[str, Any]) -> None:
        """By id; keep each partner's last_read_seq, and last_seq, as the highest seen."""
        held = self.repairs.get(data["id"])
        merged = dict(data)
        if held is not None:
            merged["last_seq"] = max(held["last_seq"], data["last_seq"])
            before = {p["user_id"]: p["last_read_seq"] for p in held["partners"]}
            merged["partners"] = [
                {**p, "last_read_seq": max(before.get(p["user_id"], 0), p["last_read_seq"])}
                for p in data["partners"]
            ]
        self.repairs[data["id"]] = merged

    def _apply_message(self, message: dict[str, Any]) -> None:
        """`applyMessage` of §11: from an ack, a REST response or an event."""
        rid = message["repair_id"]
        held = self.highest_seq(rid)
        if message["seq"] > held + 1:
            self._fetch_messages(rid, held)
        self.messages.setdefault(rid, {})[message["id"]] = message
        if rid in self.repairs:
            repair = self.repairs[rid]
            repair["last_seq"] = max(repair["last_seq"], message["seq"])
        if message["author_id"] == self.me:
            self.outbox = [d for d in self.outbox if d.client_id != message["client_id"]]

    def _fetch_messages(self, repair_id: str, after_seq: int) -> None:
        while True:
            params = {"after_seq": after_seq, "limit": 200}
            response = self.api.get(
                f"/api/v1/repairs/{repair_id}/messages", as_=self.person, params=params
            )
            if response.status_code != 200:
                return
            page = response.json()
            for message in page["items"]:
                self.messages.setdefault(repair_id, {})[message["id"]] = message
            if page["next"] is None:
                return
            after_seq = page["next"]

    def highest_seq(self, repair_id: str) -> int:
        return max((m["seq"] for m in self.messages.get(repair_id, {}).values()), default=0)

    def _handle_unpaired(self, named: str | None) -> None:
        """`named`: the couple the failed sync, or the other couple's event, named."""
        couple = self.api.get("/api/v1/couple", as_=self.person)
        if couple.status_code == 404:
            self._clear_stream_state()
            return
        assert couple.status_code == 200, couple.text
        current = couple.json()["id"]
        if current != self.couple_id or current == named:
            # Another couple; or ours, whose stream is behind our cursor (a 409).
            self._start_stream(current)
            self.partner = couple.json()["partner"]
        self.sync_now()

    def _start_stream(self, couple_id: str) -> None:
        """Hold nothing of the couple held before, and read this one's stream from cursor 0."""
        self._drop_couple_copy()
        self.couple_id, self.last, self.applied = couple_id, 0, []

    def _clear_stream_state(self) -> None:
        self._drop_couple_copy()
        self.couple_id, self.last, self.applied = None, 0, []

    def _drop_couple_copy(self) -> None:
        """The couple's bids, conversations, messages and check-ins (the outbox stays)."""
        self.bids, self.repairs, self.messages = {}, {}, {}
        self.rounds, self.partner = {}, None

    def joined(self, couple_id: str) -> None:
        """The phone that typed the code: `POST /couple/join` gave the couple's id, which the
        socket's `couple.paired` may have brought first."""

        def start_unless_started() -> None:
            if self.couple_id != couple_id:
                self._start_stream(couple_id)
            self.sync_now()

        self._queue.put(start_unless_started)

    def wait_for_cursor(self, cursor: int, timeout: float = 10) -> None:
        wait_until(lambda: self.last >= cursor, timeout, f"the phone to apply cursor {cursor}")

    def settle(self, timeout: float = 10) -> None:
        """Wait until the phone holds its couple's whole stream and has nothing left to do."""

        def settled() -> bool:
            if not self.idle() or self._syncing:
                return False
            return self.couple_id is None or self.last >= stream_head(self.api, self.person)

        wait_until(settled, timeout, "the phone to apply its couple's stream")

    # -- the outbox of §11 ----------------------------------------------------------------

    def write(self, repair_id: str, body: str) -> Draft:
        """The user taps send: saved in the outbox before the first try (not sent yet)."""
        written_at = datetime.now(UTC).isoformat()
        draft = Draft(repair_id, str(uuid.uuid4()), written_at, body)
        self.outbox.append(draft)
        return draft

    def payload(self, draft: Draft) -> dict[str, Any]:
        return {"client_id": draft.client_id, "body": draft.body, "written_at": draft.written_at}

    def flush(self, repair_id: str, over: str = "socket") -> None:
        """Send the conversation's outbox one message at a time, oldest first."""
        for draft in [d for d in self.outbox if d.repair_id == repair_id and d.failed is None]:
            if over == "socket":
                try:
                    answer = self.socket.call(
                        "repair.message", {"repair_id": repair_id, **self.payload(draft)}, timeout=5
                    )
                except socketio.exceptions.SocketIOError:  # a timeout, or not connected
                    return  # retry later, same client_id
            else:
                response = self.api.post(
                    f"/api/v1/repairs/{repair_id}/messages",
                    as_=self.person,
                    json=self.payload(draft),
                )
                answer = response.json()
            if answer.get("code") is not None:
                assert answer["status"] < 500 and answer["code"] != "rate_limited", answer
                draft.failed = answer  # 404, 409, 422: keep the text
                continue
            self._queue.put(lambda message=answer: self._apply_message(message))
            self._queue.put(lambda cid=draft.client_id: self._drop_draft(cid))

    def _drop_draft(self, client_id: str) -> None:
        self.outbox = [d for d in self.outbox if d.client_id != client_id]

    # -- writes whose answers the phone shows at once (§7, rule 6) --------------------------

    def answer_checkin(self, accessible: int, responsive: int, engaged: int) -> dict[str, Any]:
        scores = {"accessible": accessible, "responsive": responsive, "engaged": engaged}
        body = {"client_id": str(uuid.uuid4()), "couple_id": self.couple_id, **scores}
        response = self.api.post("/api/v1/checkins", as_=self.person, json=body)
        assert response.status_code == 201, response.text
        round_ = response.json()
        self._queue.put(lambda: self._save_answered_round(round_))
        return dict(round_)

    def update_profile(self, **changes: Any) -> dict[str, Any]:
        response = self.api.patch("/api/v1/me", as_=self.person, json=changes)
        assert response.status_code == 200, response.text
        user = response.json()
        self._queue.put(lambda: self.profile.update(user))
        return dict(user)

    # -- what the phone holds, in the shape of the GET endpoints --------------------------

    def state(self) -> dict[str, Any]:
        return {
            "bids": {bid_id: shown_bid(bid) for bid_id, bid in self.bids.items()},
            "repairs": dict(self.repairs),
            "messages": {
                rid: sorted(held.values(), key=lambda m: m["seq"])
                for rid, held in self.messages.items()
            },
            "checkins": dict(self.rounds),
            "partner": self.partner,
            "me": {**self.profile, "couple_id": self.couple_id},
        }


def shown_bid(bid: dict[str, Any]) -> dict[str, Any]:
    """The bid as §6 says to show it: a `later` whose `back_at` has passed is broken, and an
    unanswered bid is expired (at its `expires_at`) once that has passed."""
    open_ = bid["status"] in ("sent", "delivered", "seen")
    if open_ and clock.now() >= datetime.fromisoformat(bid["expires_at"]):
        over = {"status": "expired", "expired_at": bid["expires_at"]}
        return {**bid, **over, "outcome": "missed", "turned_toward": False}
    later = next((r for r in bid["responses"] if r["kind"] == "later"), None)
    broken = later is not None and clock.now() > datetime.fromisoformat(later["back_at"])
    if bid["outcome"] == "later_pending" and broken:
        return {**bid, "outcome": "later_broken", "turned_toward": False}
    return bid


def stream_head(api: ApiClient, person: Person) -> int:
    """The last cursor of the person's couple (0 when unpaired)."""
    since = 0
    while True:
        response = api.get("/api/v1/sync", as_=person, params={"since": since, "limit": 1000})
        if response.status_code == 404:
            return 0
        page = response.json()
        since = page["next"]
        if not page["has_more"]:
            return int(since)


def server_state(api: ApiClient, person: Person) -> dict[str, Any]:
    """What GET /bids, /repairs and /repairs/{id}/messages, /checkins and /checkins/current,
    /couple and /me show the person, as `state()`."""
    state: dict[str, Any] = {"bids": {}, "repairs": {}, "messages": {}, "checkins": {}}
    for name in ("bids", "repairs", "checkins"):
        before = None
        while True:
            params = {"limit": 200, **({"before": before} if before else {})}
            response = api.get(f"/api/v1/{name}", as_=person, params=params)
            if response.status_code == 404:
                break
            page = response.json()
            state[name].update({item["id"]: item for item in page["items"]})
            if (before := page["next"]) is None:
                break
    current = api.get("/api/v1/checkins/current", as_=person)
    if current.status_code == 200 and current.json()["id"] is not None:
        state["checkins"][current.json()["id"]] = current.json()
    couple = api.get("/api/v1/couple", as_=person)
    state["partner"] = couple.json()["partner"] if couple.status_code == 200 else None
    state["me"] = api.get("/api/v1/me", as_=person).json()
    for rid in state["repairs"]:
        items: list[dict[str, Any]] = []
        after = 0
        while True:
            params = {"after_seq": after, "limit": 200}
            page = api.get(f"/api/v1/repairs/{rid}/messages", as_=person, params=params).json()
            items += page["items"]
            if (after := page["next"]) is None:
                break
        if items:
            state["messages"][rid] = items
    return state
