"""The operators' audit log: every action, who did it, to what, and when."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from typing import Any, TypeAlias

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


@dataclass(frozen=True)
class CommandLine:
    """Who ran a `reach` operator command: no operator account acts there, so the log names the
    shell's user and host (in the column that names an operator's email)."""

    who: str

    @classmethod
    def here(cls) -> CommandLine:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # a container's uid without a passwd entry
            user = f"uid {os.getuid()}"
        return cls(f"command line: {user}@{socket.gethostname()}"[:254])


Actor: TypeAlias = Operator | CommandLine


def record(
    session: Session,
    actor: Actor,
    action: str,
    target: Target,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an entry in the caller's transaction: the action and its record commit together."""
    if isinstance(actor, Operator):
        operator_id, name = actor.id, actor.email
    else:
        operator_id, name = None, actor.who
    entry = AuditEntry(
        operator_id=operator_id,
        operator_email=name,
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
