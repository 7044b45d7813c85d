"""Repair conversations: the steps of revisiting a rocky moment, emotions, pauses, being heard."""

from __future__ import annotations

from datetime import datetime, timedelta

# "Revisiting a Rocky Moment" (Hold Me Tight), in the order a conversation usually takes.
STEPS = (
    "what_happened",  # the facts of the moment, as each saw it
    "the_cycle",  # the dance we fell into (pursue-withdraw, attack-attack, freeze-flee)
    "what_i_felt",  # the softer feeling under the anger or the shutting down
    "what_i_needed",  # the longing: comfort, reassurance, closeness
    "what_i_heard",  # reflecting back what the partner said
    "what_would_help",  # what each can do next time
)

# Under anger and withdrawal lie softer emotions; naming them is the heart of repair.
SOFTER_EMOTIONS = (
    "sadness",
    "fear",
    "hurt",
    "loneliness",
    "shame",
    "rejection",
    "disconnection",
    "helplessness",
)
HARDER_EMOTIONS = ("anger", "frustration", "overwhelm", "resentment", "numbness", "defensiveness")
# What coming back together can feel like.
REPAIRING_EMOTIONS = ("hope", "relief", "love", "gratitude", "closeness", "safety")
EMOTIONS = SOFTER_EMOTIONS + HARDER_EMOTIONS + REPAIRING_EMOTIONS

STATUSES = ("open", "resolved")
TOPIC_MAX = 200
BODY_MAX = 4000
EMOTIONS_MAX = 8
# Flooding: a break of at least 20 minutes, and back within 24 hours (Gottman).
PAUSE_MIN_MINUTES = 20
PAUSE_MAX_MINUTES = 24 * 60
# A phone's clock may run a little fast; beyond this, `written_at` is not believable.
WRITTEN_AT_SKEW = timedelta(minutes=5)


def believable_written_at(written_at: datetime | None, now: datetime) -> datetime | None:
    """A phone's offline writing time is kept as said, unless it lies further in the future
    than a clock runs fast: then the message was written before `now`, when it arrived, at
    the latest, and is dated so."""
    if written_at is None or written_at <= now + WRITTEN_AT_SKEW:
        return written_at
    return now


def pause_ends(now: datetime, minutes: int) -> datetime:
    """The promised return time of a break of `minutes`."""
    if not PAUSE_MIN_MINUTES <= minutes <= PAUSE_MAX_MINUTES:
        raise ValueError(f"a break lasts {PAUSE_MIN_MINUTES}..{PAUSE_MAX_MINUTES} minutes")
    return now + timedelta(minutes=minutes)


def is_paused(paused_until: datetime | None, now: datetime) -> bool:
    return paused_until is not None and paused_until > now


def read_up_to(current: int, requested: int) -> int:
    """Read receipts only move forward: reading an older message changes nothing."""
    return max(current, requested)


def is_resolved(heard: list[bool]) -> bool:
    """Resolved only when both partners say they feel heard."""
    return len(heard) == 2 and all(heard)
