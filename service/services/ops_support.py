"""Account support for operators: look an account up, see its state, disable or revive it.

Support sees what it needs to help: account and couple state and devices, never the partner's
identity and never anything either partner wrote.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.clock import clock
from service.domain import sessions as endings
from service.domain.devices import ACCOUNT_DISABLED, OPERATOR
from service.domain.errors import Conflict, NotFound
from service.models import AuthSession, Couple, Device, Operator, PushAttempt, PushDelivery, User
from service.services import accounts, ops_audit


def find_user(session: Session, operator: Operator, email: str) -> uuid.UUID | None:
    """The account with this email; the lookup itself is audited (it reveals an account)."""
    user = session.scalar(accounts.account_by_email(email))
    user_id = user.id if user is not None else None
    ops_audit.record(
        session,
        operator,
        "support.lookup",
        ops_audit.Target("user", str(user_id) if user_id else "-"),
        {"found": user_id is not None},
    )
    session.commit()
    return user_id


def _user(session: Session, user_id: uuid.UUID, *, lock: bool = False) -> User:
    user = session.get(User, user_id, with_for_update=lock)
    if user is None:
        raise NotFound("There is no such account.")
    return user


def account(session: Session, user_id: uuid.UUID, access_seconds: int) -> dict[str, Any]:
    """Account, couple and device state, as support sees it: its sessions a phone is signed in
    with (`accounts.count_signed_in_sessions`; an access token works `access_seconds`)."""
    user = _user(session, user_id)
    live_sessions = accounts.count_signed_in_sessions(session, user.id, clock.now(), access_seconds)
    couple = session.get(Couple, user.couple_id) if user.couple_id else None
    return {
        "id": str(user.id),
        "email": user.email,
        "created_at": user.created_at,
        "disabled_at": user.disabled_at,
        "live_sessions": live_sessions,
        "couple": {
            "paired": couple is not None and couple.ended_at is None,
            "paired_at": couple.paired_at if couple else None,
        },
        "devices": devices(session, user.id),
    }


# The switched-off devices listed: the latest few. Years of reinstalls leave hundreds, each
# off for good; the page counts the rest.
SWITCHED_OFF_SHOWN = 5


def devices(session: Session, user_id: uuid.UUID) -> dict[str, Any]:
    """The account's live devices and the latest switched off (`shown`), each with its last
    push attempt, and how many older switched-off devices are not shown (`not_shown`)."""
    columns = (
        Device.id,
        Device.platform,
        Device.active,
        Device.disabled_reason,
        Device.app_version,
        Device.created_at,
    )
    live = session.execute(
        select(*columns)
        .where(Device.user_id == user_id, Device.active.is_(True))
        .order_by(Device.created_at, Device.id)
    ).all()
    off = (Device.user_id == user_id, Device.active.is_(False))
    # Counted from the index (`ix_devices_user_active_updated`), the rows not read.
    counted = select(func.count()).select_from(Device).where(*off).scalar_subquery()
    switched_off = session.execute(
        select(*columns, counted.label("switched_off"))
        .where(*off)
        .order_by(Device.updated_at.desc(), Device.id.desc())
        .limit(SWITCHED_OFF_SHOWN)
    ).all()
    total_off = switched_off[0].switched_off if switched_off else 0
    # The count rides on each switched-off row: the page needs it once, not on each device.
    rows = [
        {name: value for name, value in row._asdict().items() if name != "switched_off"}
        for row in [*live, *switched_off]
    ]
    last = _last_pushes(session, [row["id"] for row in rows])
    shown = [{**row, "id": str(row["id"]), "last_push": last.get(row["id"])} for row in rows]
    return {"shown": shown, "not_shown": total_off - len(switched_off)}


def _last_pushes(session: Session, device_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """The latest push attempt of each of these devices (none for a device never pushed to),
    in one statement: each device's attempts ranked newest first, the first of each kept."""
    if not device_ids:
        return {}
    newest_first = (PushAttempt.finished_at.desc(), PushAttempt.id.desc())
    ranked = (
        select(
            PushDelivery.device_id,
            PushAttempt.outcome,
            PushAttempt.error,
            PushAttempt.finished_at,
            func.row_number()
            .over(partition_by=PushDelivery.device_id, order_by=newest_first)
            .label("rank"),
        )
        .join(PushDelivery, PushDelivery.id == PushAttempt.delivery_id)
        .where(PushDelivery.device_id.in_(device_ids))
        .subquery()
    )
    latest = select(
        ranked.c.device_id, ranked.c.outcome, ranked.c.error, ranked.c.finished_at
    ).where(ranked.c.rank == 1)
    return {
        device_id: {"outcome": outcome, "error": error, "finished_at": finished_at}
        for device_id, outcome, error, finished_at in session.execute(latest)
    }


def disable_account(
    session: Session, operator: Operator, user_id: uuid.UUID, access_seconds: int
) -> int:
    """Disable the account, end every session (its next call is refused) and stop pushing to
    its devices: a phone that is signed out for good shows no more of the partner's bids on
    its lock screen. Once enabled, the app's next registration turns each device on again.
    Returns how many sessions a phone was signed in with (an access token works
    `access_seconds`)."""
    user = _user(session, user_id, lock=True)
    if user.disabled_at is not None:
        raise Conflict("This account is disabled already.")
    now = clock.now()
    user.disabled_at = now
    # Its live sessions before their devices, in the order ending one takes them (a sign-out,
    # a refresh token's reuse, pruning): the other order deadlocks with one under way.
    session.execute(
        select(AuthSession.id)
        .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
        .order_by(AuthSession.id)
        .with_for_update()
    ).all()
    devices_off = session.execute(
        update(Device)
        .where(Device.user_id == user.id, Device.active.is_(True))
        .values(active=False, disabled_reason=ACCOUNT_DISABLED, updated_at=now)
    )
    ended = accounts.revoke_all_sessions(
        session, user.id, endings.DISABLED_BY_OPERATOR, access_seconds
    )
    detail = {
        "sessions_revoked": ended,
        "devices_disabled": int(getattr(devices_off, "rowcount", 0) or 0),
    }
    ops_audit.record(
        session, operator, "account.disable", ops_audit.Target("user", str(user.id)), detail
    )
    session.commit()
    return ended


def enable_account(session: Session, operator: Operator, user_id: uuid.UUID) -> None:
    """Let the account sign in again (its old sessions stay ended)."""
    user = _user(session, user_id, lock=True)
    if user.disabled_at is None:
        raise Conflict("This account is not disabled.")
    user.disabled_at = None
    ops_audit.record(session, operator, "account.enable", ops_audit.Target("user", str(user.id)))
    session.commit()


def revoke_sessions(
    session: Session, operator: Operator, user_id: uuid.UUID, access_seconds: int
) -> int:
    """Sign the account out everywhere; it can sign in again. Returns how many sessions a phone
    was signed in with (an access token works `access_seconds`)."""
    user = _user(session, user_id)
    ended = accounts.revoke_all_sessions(
        session, user.id, endings.REVOKED_BY_OPERATOR, access_seconds
    )
    target = ops_audit.Target("user", str(user.id))
    ops_audit.record(
        session, operator, "account.revoke_sessions", target, {"sessions_revoked": ended}
    )
    session.commit()
    return ended


def disable_device(
    session: Session, operator: Operator, user_id: uuid.UUID, device_id: uuid.UUID
) -> None:
    """Stop pushing to one of the account's devices."""
    device = session.get(Device, device_id, with_for_update=True)
    if device is None or device.user_id != user_id:
        raise NotFound("This account has no such device.")
    if not device.active:
        raise Conflict("This device is disabled already.")
    device.active, device.disabled_reason, device.updated_at = False, OPERATOR, clock.now()
    target = ops_audit.Target("device", str(device.id))
    ops_audit.record(session, operator, "device.disable", target, {"user_id": str(user_id)})
    session.commit()
