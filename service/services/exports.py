"""The export: everything a person wrote, read from one snapshot, and written out as the file
the phone downloads a slice at a time, so that the rest of the process is served meanwhile.

Read and written out in one go, an export of a few years of writing (10,000 rows, 10 MB) held
its process for seconds: every other request, bid and socket event of the process waited.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from marshmallow import fields
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from schemas.custody import ExportSchema
from service import wire_json
from service.clock import clock
from service.db import end_read, read_snapshot
from service.domain.errors import Unauthorized
from service.domain.quiet_hours import is_known_zone
from service.models import (
    AuthSession,
    Bid,
    BidResponse,
    CheckInAnswer,
    CheckInRound,
    Couple,
    Device,
    Repair,
    RepairMessage,
    RepairPartner,
    User,
)
from service.services.members import GONE

# Rows read, or items written out, between two turns given to the rest of the process (about
# 20 ms of work on a 2-core VM).
SLICE = 250
# A wait on the event loop's timer, not a pause: it ends at the loop's next turn.
_TURN_SECONDS = 0.0001
_export_schema = ExportSchema()


def export(session: Session, user: User) -> dict[str, Any]:
    """Everything the caller wrote, across every couple they were in; nothing the partner wrote.
    Each list oldest first, rows of the same instant by id: the same order on every database.
    Each item names its couple, so an export made after several pairings says which one it was
    about. Rows are read as plain columns: a large account's export builds no ORM objects.
    Every list, and the profile, is read from one snapshot: a write committing meanwhile (a
    conversation and its first message) is wholly in the export or wholly out of it. The
    read ends before the export is written out (`export_file`)."""
    read_snapshot(session)
    me = user.id
    profile = session.get(User, me, populate_existing=True)
    if profile is None:
        raise Unauthorized(GONE)
    bids = select(Bid.id, Bid.couple_id, Bid.kind, Bid.note, Bid.status, Bid.created_at).where(
        Bid.sender_id == me
    )
    # The caller's phone's receipts of a bid; the bid (its kind, its note) is the partner's.
    receipts = select(Bid.id.label("bid_id"), Bid.couple_id, Bid.delivered_at, Bid.seen_at).where(
        Bid.recipient_id == me, Bid.delivered_at.is_not(None)
    )
    responses = (
        select(
            BidResponse.id,
            BidResponse.bid_id,
            Bid.couple_id,
            BidResponse.kind,
            BidResponse.note,
            BidResponse.back_at,
            BidResponse.created_at,
        )
        .join(Bid, Bid.id == BidResponse.bid_id)
        .where(BidResponse.responder_id == me)
    )
    started = select(Repair.id, Repair.couple_id, Repair.topic, Repair.created_at).where(
        Repair.started_by == me
    )
    joined = (
        select(
            RepairPartner.repair_id,
            Repair.couple_id,
            RepairPartner.last_read_seq,
            RepairPartner.resolved_at.is_not(None).label("heard"),
            RepairPartner.resolved_at,
        )
        .join(Repair, Repair.id == RepairPartner.repair_id)
        .where(RepairPartner.user_id == me)
    )
    messages = (
        select(
            RepairMessage.id,
            RepairMessage.repair_id,
            Repair.couple_id,
            RepairMessage.seq,
            RepairMessage.body,
            RepairMessage.step,
            RepairMessage.emotions,
            RepairMessage.written_at,
            RepairMessage.created_at,
        )
        .join(Repair, Repair.id == RepairMessage.repair_id)
        .where(RepairMessage.author_id == me)
    )
    # A conversation keeps the break being taken now (who asked, until when), not the ones
    # before it; `pause_count` counts both partners' breaks: it is not the caller's.
    breaks = select(Repair.id.label("repair_id"), Repair.couple_id, Repair.paused_until).where(
        Repair.paused_by == me
    )
    checkins = (
        select(
            CheckInAnswer.round_id,
            CheckInRound.couple_id,
            CheckInRound.number.label("round_number"),
            CheckInAnswer.accessible,
            CheckInAnswer.responsive,
            CheckInAnswer.engaged,
            CheckInAnswer.created_at,
        )
        .join(CheckInRound, CheckInRound.id == CheckInAnswer.round_id)
        .where(CheckInAnswer.user_id == me)
    )
    couples = (
        select(Couple.id, Couple.paired_at, Couple.ended_at)
        .where(or_(Couple.partner_a_id == me, Couple.partner_b_id == me))
        .order_by(Couple.paired_at, Couple.id)
    )
    devices = select(
        Device.id,
        Device.platform,
        Device.app_version,
        Device.locale,
        Device.active,
        Device.created_at,
    ).where(Device.user_id == me)

    sessions = select(
        AuthSession.id,
        AuthSession.created_at,
        AuthSession.last_refreshed_at,
        AuthSession.revoked_at.label("ended_at"),
        AuthSession.revoked_reason.label("ended_because"),
    ).where(AuthSession.user_id == me)

    def rows(query: Select[*tuple[Any, ...]], *order: Any) -> list[Any]:
        read: list[Any] = []
        slices = query.order_by(*order).execution_options(yield_per=SLICE)
        for part in session.execute(slices).mappings().partitions():
            read.extend(part)
            let_others_run()
        return read

    # Written out by `export_file` as schemas.custody.ExportSchema, the document's `Export`.
    exported = {
        "exported_at": clock.now(),
        "profile": profile,
        "couples": rows(couples),
        "devices": rows(devices, Device.created_at, Device.id),
        "sessions": rows(sessions, AuthSession.created_at, AuthSession.id),
        "bids_sent": rows(bids, Bid.created_at, Bid.id),
        "bid_receipts": rows(receipts, Bid.delivered_at, Bid.id),
        "bid_responses": rows(responses, BidResponse.created_at, BidResponse.id),
        "repairs_started": rows(started, Repair.created_at, Repair.id),
        "repairs_joined": rows(joined, Repair.created_at, Repair.id),
        "repair_messages": rows(messages, RepairMessage.created_at, RepairMessage.id),
        "repair_breaks": rows(breaks, Repair.paused_until, Repair.id),
        "checkins": rows(checkins, CheckInAnswer.created_at, CheckInAnswer.id),
    }
    end_read(session)  # all is read: writing it out needs no database
    return exported


def export_disposition(exported: dict[str, Any]) -> str:
    """The export offered as a file, named for the day it was made in the caller's time zone
    (in UTC for a zone this server cannot load: the export never fails on its name)."""
    zone = exported["profile"].timezone
    made: datetime = exported["exported_at"]
    day = made.astimezone(ZoneInfo(zone)).date() if is_known_zone(zone) else made.date()
    return f'attachment; filename="reach-export-{day.isoformat()}.json"'


def export_file(exported: dict[str, Any]) -> bytes:
    """The export as JSON (`ExportSchema`, the document's `Export`): each list is dumped and
    encoded a slice at a time, the rest of the process served between slices."""
    members = []
    for name, field in _export_schema.fields.items():
        if not isinstance(field, fields.List):
            members.append(_encode(name) + b":" + _encode(field.serialize(name, exported)))
            continue
        items = field.inner.schema  # type: ignore[attr-defined]
        every = exported[name]
        slices = []
        for start in range(0, len(every), SLICE):
            slices.append(_encode(items.dump(every[start : start + SLICE], many=True))[1:-1])
            let_others_run()
        members.append(_encode(name) + b":[" + b",".join(slices) + b"]")
    return b"{" + b",".join(members) + b"}\n"


def let_others_run() -> None:
    """Give the rest of the process a turn. Under gevent's patches `time.sleep` waits on the
    event loop, which first serves every request and socket event that is ready (a sleep of 0
    would switch only to greenlets already running, never reading a new request); under
    threads it lets the GIL go."""
    time.sleep(_TURN_SECONDS)


def _encode(value: Any) -> bytes:
    """As the service's answers are (`wire_json`): compact, text as it is; escaped should it
    hold a lone surrogate, which has no UTF-8."""
    return wire_json.encode(value, separators=(",", ":"))
