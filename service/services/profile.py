"""The caller's own profile: its changes, and the events that tell the account's other phones
and the couple of them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.accounts import UserSchema
from schemas.couples import PartnerSchema
from service.domain.errors import Conflict, invalid
from service.domain.quiet_hours import TIMEZONE_MESSAGE, is_valid_timezone
from service.models import Couple, User
from service.services import bids, events, members, push_outbox

_partner_schema = PartnerSchema()
_user_schema = UserSchema()

# The socket event that brings the account's own phones its profile as `GET /me` shows it.
ME_UPDATED = "me.updated"

# What `GET /couple` shows of a partner, besides their id: a change of it is an event.
PARTNER_VISIBLE = ("display_name", "timezone")
# What may write to the couple's stream: that, and the hours that time the bids to the member
# (`bid.rescheduled`).
STREAM_CHANGES = (*PARTNER_VISIBLE, "quiet_hours")


def update_profile(session: Session, user: User, changes: dict[str, Any]) -> User:
    zone = changes.get("timezone")
    if zone is not None and zone != user.timezone and not is_valid_timezone(zone):
        # A zone stored before the place rule (`PST8PDT`) may be sent back as is, not chosen.
        raise invalid("timezone", TIMEZONE_MESSAGE)
    if "display_name" in changes:
        changes = {**changes, "display_name": changes["display_name"].strip()}
    couple = _hold_for_profile(session, user, changes)
    shown_before = _own_view(user)
    seen_before = _partner_view(user)
    if "display_name" in changes:
        user.display_name = changes["display_name"]
    quiet_before = (user.timezone, user.quiet_start, user.quiet_end)
    if "timezone" in changes:
        user.timezone = changes["timezone"]
    if "quiet_hours" in changes:
        quiet = changes["quiet_hours"]
        user.quiet_start = quiet["start"] if quiet else None
        user.quiet_end = quiet["end"] if quiet else None
    if (user.timezone, user.quiet_start, user.quiet_end) != quiet_before:
        # Bids not yet reachable, and pushes held for the old hours, follow the new ones.
        bids.follow_quiet_hours(session, user, couple)
        push_outbox.follow_quiet_hours(session, user.id)
    if "notes_on_lock_screen" in changes:
        # Pushes already queued follow it too: the worker reads it as it sends them.
        user.notes_on_lock_screen = changes["notes_on_lock_screen"]
    seen_now = _partner_view(user)
    if couple is not None and seen_now != seen_before:
        # The partner's phone shows the name and the zone as `GET /couple` gave them.
        events.record(session, couple, "couple.partner_updated", seen_now)
    if _own_view(user) != shown_before:
        # Numbered, so that a phone given two changes' events in the other order keeps the
        # later (the account is held: changes take turns).
        user.profile_version += 1
        # The account's other phones (a tablet left connected) show it at once; not the
        # partner's, who see what is theirs to see in `couple.partner_updated`.
        events.notify_user(session, user.id, ME_UPDATED, _own_view(user))
    session.commit()
    return user


def _hold_for_profile(session: Session, user: User, changes: dict[str, Any]) -> Couple | None:
    """Hold the account against a deletion from another phone meanwhile (its update would find
    no row) and against another change of it (which would write over this one's reading of
    it), and return its live couple, locked, when the change may write to its stream
    (`STREAM_CHANGES`); the account is read again as it stands once they are held.

    The couple is locked before the account, as unpairing and deleting an account lock them.
    A join that committed after the couple was read (or an unpair, before its lock) moved the
    account: the account is locked again with its new couple, and after three such moves the
    caller is told to try again (409).
    """
    streamed = any(key in changes for key in STREAM_CHANGES)
    for _ in range(3):
        couple = None
        if streamed:
            couple_id = session.scalar(select(User.couple_id).where(User.id == user.id))
            if couple_id is not None:
                couple = session.get(
                    Couple, couple_id, with_for_update=True, populate_existing=True
                )
                if couple is not None and couple.ended_at is not None:
                    couple = None
        members.hold_live_account(session, user.id, to_change=True)
        session.refresh(user)
        if not streamed or user.couple_id == (couple.id if couple else None):
            return couple
        session.rollback()
    raise Conflict("Your pairing changed while the profile was being saved: try again.")


def _own_view(user: User) -> dict[str, Any]:
    """The member as `GET /me` shows them."""
    view: dict[str, Any] = _user_schema.dump(user)
    return view


def _partner_view(user: User) -> dict[str, Any]:
    """The member as `GET /couple` shows them to their partner."""
    view: dict[str, Any] = _partner_schema.dump(user)
    return view
