"""The operators' audit log: every action, who did it, to what, and when."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import clock
from service.models import AuditEntry, Operator
from service.models.push import BIG_ID_MAX


@dataclass(frozen=True)
class Target:
    """What an action was done to: a type ("user", "device", "push_job", ...) and its id."""

    type: str
    id: str


def record(
    session: Session,
    operator: Operator,
    action: str,
    target: Target,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an entry in the caller's transaction: the action and its record commit together."""
    entry = AuditEntry(
        operator_id=operator.id,
        operator_email=operator.email,
        action=action,
        target_type=target.type,
        target_id=target.id,
        detail=dict(detail or {}),
        at=clock.now(),
    )
    session.add(entry)
    return entry


def recent(session: Session, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
    """The newest entries first; `before` (an entry id) pages further back."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None and before <= 1:
        return []  # ids start at 1
    if before is not None and before <= BIG_ID_MAX:  # past it, every entry is older
        query = query.where(AuditEntry.id < before)
    return list(session.scalars(query))


def targets_of(session: Session, action: str, *, limit: int = 20) -> list[str]:
    """The targets of the latest entries of one action, newest first, without repeats."""
    ids = session.scalars(
        select(AuditEntry.target_id)
        .where(AuditEntry.action == action)
        .order_by(AuditEntry.id.desc())
        .limit(limit * 3)
    )
    return list(dict.fromkeys(ids))[:limit]
