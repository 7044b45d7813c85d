"""Rate limits an operator clears (a member held at a limit after a mistake), audited."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.orm import Session

from service.services import accounts, ops_audit

ACTION = "rate_limits.clear"


class Counters(Protocol):
    """Where the limits are counted (`service/security/rate_counters.py`)."""

    def clear_counted_under(self, limit_key: str) -> int: ...


def member_of(session: Session, email: str) -> uuid.UUID | None:
    """The member account an address signs in to, if any."""
    user = session.scalar(accounts.account_by_email(email))
    return user.id if user is not None else None


def clear(
    session: Session,
    counters: Counters,
    target: ops_audit.Target,
    limit_keys: Sequence[str],
    *,
    by: ops_audit.Actor,
) -> int:
    """Clear every limit counted under `limit_keys`, in the audit log as done to `target`
    (the keys, never an address: an email's is its keyed digest); how many counters went.
    The entry is written first, so a clearing the log cannot record does not happen."""
    entry = ops_audit.record(session, by, ACTION, target, {"keys": list(limit_keys)})
    session.flush()
    cleared = sum(counters.clear_counted_under(key) for key in limit_keys)
    entry.detail = {**entry.detail, "counters": cleared}
    session.commit()
    return cleared
