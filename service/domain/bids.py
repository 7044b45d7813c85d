"""Bids: kinds, the bid clock, and what a response means (turning toward, kept promises)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from service.domain.quiet_hours import QuietHours, quiet_between

KINDS = ("comfort", "connect", "share", "help")
RESPONSE_KINDS = ("toward", "later")
NOTE_MAX = 280
OPEN_STATUSES = ("sent", "delivered", "seen")

Outcome = Literal["pending", "toward", "later_pending", "later_kept", "later_broken", "missed"]


def reachable_at(created_at: datetime, quiet: QuietHours | None) -> datetime:
    """When the bid could first reach the partner: at once, or when their quiet hours end."""
    if quiet is None:
        return created_at
    return quiet.reachable_from(created_at)


def overdue(status: str, expires_at: datetime, now: datetime) -> bool:
    """An open bid whose time to live has passed: it is expired, whether or not the worker has
    marked it yet (an acknowledgement or an answer then finds it over)."""
    return status in OPEN_STATUSES and expires_at <= now


def response_seconds(reachable: datetime, responded: datetime) -> int:
    """Seconds from when the bid could reach the partner to their first response (never < 0)."""
    return max(0, int((responded - reachable).total_seconds()))


def awake_response_seconds(
    reachable: datetime, responded: datetime, quiet: QuietHours | None
) -> int:
    """`response_seconds` less the recipient's quiet hours between: the time they were awake
    to answer (a bid that came ten minutes before their night and was answered five minutes
    after it took fifteen). What insights measure; never < 0."""
    asleep = quiet_between(quiet, reachable, responded)
    return max(0, int((responded - reachable - asleep).total_seconds()))


@dataclass(frozen=True)
class ResponseFact:
    kind: str
    at: datetime
    back_at: datetime | None = None


def outcome(status: str, responses: list[ResponseFact], now: datetime) -> Outcome:
    """How the partner turned: toward, a `later` kept or broken, or missed.

    A `later` is kept when a `toward` response comes by `back_at`; it is broken once `back_at`
    passes without one. A bid that expired unanswered is missed.
    """
    if not responses:
        return "missed" if status == "expired" else "pending"
    first = responses[0]
    if first.kind == "toward":
        return "toward"
    back_at = first.back_at
    toward = next((r for r in responses[1:] if r.kind == "toward"), None)
    if toward is not None and (back_at is None or toward.at <= back_at):
        return "later_kept"
    if back_at is not None and now > back_at:
        return "later_broken"
    return "later_pending"


def turned_toward(result: Outcome) -> bool:
    return result in ("toward", "later_kept")
