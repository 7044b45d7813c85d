"""Dedupe keys: what a push job is about, made and read here only."""

from __future__ import annotations

import uuid
from typing import Any


# Dedupe keys: what a job is about, made here only. A bid's push; a conversation's message
# pushes, one per `seq`; its break reminders, one per break and person. The `*_of` prefixes
# name every job of one bid or conversation (`reminders_of_break`: of one break), for `cancel`,
# `hold` and `release`.
def bid_push_of(bid_id: Any) -> str:
    return f"bid.created:{bid_id}"


def message_pushes_of(repair_id: Any) -> str:
    return f"repair.message:{repair_id}:"


def reminders_of(repair_id: Any) -> str:
    return f"repair.reminder:{repair_id}:"


def reminders_of_break(repair_id: Any, pause_count: int) -> str:
    """The reminders of one break: the conversation's `pause_count` when it was taken."""
    return f"{reminders_of(repair_id)}{pause_count}:"


def _repair_of(dedupe_key: str) -> uuid.UUID:
    """The conversation of a repair push's key (`message_pushes_of` or `reminders_of`, + ...)."""
    return uuid.UUID(dedupe_key.split(":")[1])


def _break_of(dedupe_key: str) -> int:
    """The break (the conversation's `pause_count` then) of a reminder's key (`reminders_of` +
    pause_count:person)."""
    return int(dedupe_key.split(":")[2])


def _seq_of(dedupe_key: str) -> int:
    """The `seq` of a message push's key (`message_pushes_of` + seq)."""
    return int(dedupe_key.rsplit(":", 1)[1])
