"""What each push says: a bid's, a repair message's, the reminders that a break is over."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from service.clock import clock
from service.models import Repair, RepairMessage, User
from service.services.push_outbox.jobs import Recipient, job, queue
from service.services.push_outbox.keys import bid_push_of, message_pushes_of, reminders_of

BID_BODIES = {
    "comfort": "They're having a hard time and would like you close.",
    "connect": "They're thinking of you.",
    "share": "They have something to tell you.",
    "help": "They could use a hand.",
}


def bid_created(
    bid: Mapping[str, Any], sender_name: str, recipient: Recipient, show_note: bool
) -> dict[str, Any]:
    """The partner's phone shows "<name> is reaching for you"; the note only if they opted in.

    The note is kept apart from the body, and only for a partner who shows notes now: the
    worker sends it as the body only if they still do when it sends (`dispatch.plan._body`)."""
    payload: dict[str, Any] = {
        "title": f"{sender_name} is reaching for you",
        "body": BID_BODIES[bid["kind"]],
        "data": {"type": "bid.created", "bid_id": str(bid["id"])},
        "collapse_key": f"bid:{bid['id']}",
        "priority": "high",
        "category": "BID",
        "thread_id": f"couple:{bid['couple_id']}",
    }
    if show_note and bid["note"]:
        payload["note"] = bid["note"]
    return job(
        kind="bid.created",
        dedupe_key=bid_push_of(bid["id"]),
        recipient=recipient,
        couple_id=bid["couple_id"],
        payload=payload,
        urgent=False,
        expires_at=bid["expires_at"],
    )


def _repair_payload(repair: Repair, title: str, body: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "title": title,
        "body": body,
        "data": {**data, "repair_id": str(repair.id)},
        "collapse_key": f"repair:{repair.id}",
        "priority": "normal",
        "category": "REPAIR",
        "thread_id": f"repair:{repair.id}",
        # Their own Android channel, so people can quiet repair pushes apart from bids.
        "channel_id": "repairs",
    }


def repair_message(
    session: Session,
    repair: Repair,
    message: RepairMessage,
    author: User,
    recipient: User,
    cursor: int,
) -> None:
    """The partner sees that a message came, never its words; held while on a break."""
    data = {"type": "repair.message", "seq": str(message.seq)}
    title = f"{author.display_name} wrote in your repair conversation"
    paused = repair.paused_until
    row = job(
        kind="repair.message",
        dedupe_key=f"{message_pushes_of(repair.id)}{message.seq}",
        recipient=recipient,
        couple_id=repair.couple_id,
        payload=_repair_payload(repair, title, "Open Reach to read it.", data),
        urgent=False,
        expires_at=None,
        not_before=paused if paused and paused > clock.now() else None,
    )
    queue(session, row, cursor)


def repair_reminders(
    session: Session, repair: Repair, pauser: User, partner: User, cursor: int
) -> None:
    """Both phones are reminded when the break ends.

    Not urgent: the worker marks the break over at the promised time (`repair.resumed`), but a
    break that ends in someone's quiet hours reminds them when those hours end, not at night.
    """
    assert repair.paused_until is not None
    texts = {
        pauser.id: ("Your break is over", "Come back to your repair conversation when ready."),
        partner.id: (
            f"{pauser.display_name}'s break is over",
            "You can come back to your repair conversation together.",
        ),
    }
    data = {"type": "repair.reminder"}
    for person in (pauser, partner):
        row = job(
            kind="repair.reminder",
            dedupe_key=f"{reminders_of(repair.id)}{repair.pause_count}:{person.id}",
            recipient=person,
            couple_id=repair.couple_id,
            payload=_repair_payload(repair, *texts[person.id], data),
            urgent=False,
            expires_at=None,
            not_before=repair.paused_until,
        )
        queue(session, row, cursor)
