"""Devices: register or refresh a push token, list, stop pushing to one."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.clock import clock
from service.domain.devices import (
    DEAD,
    INVALID_TOKEN,
    OTHER_PROJECT,
    REPLACED,
    SIGNED_OUT,
    UNREGISTERED,
)
from service.domain.errors import NotFound, Unauthorized, invalid
from service.models import AuthSession, DeadPushToken, Device, User
from service.services import members, pages


def register(
    session: Session,
    user: User,
    *,
    session_id: uuid.UUID,
    platform: str,
    push_token: str,
    app_version: str | None,
    locale: str | None,
    keep: int,
) -> Device:
    """Upsert by push token. A token moves to whoever registers it last (the phone's new user)
    and belongs to the sign-in session that registered it (`sign_out`).

    Two registrations of a new token at once (an app's start and its token callback) both find
    no row to lock; the one whose insert loses to the other's unique token updates the other's
    row instead. The account keeps its `keep` devices registered most recently; any older one
    is switched off (`replaced`). A token that FCM reported dead (unregistered, or not a
    token at all) is refused, its device deleted since or not: the app must ask for a new one.
    """
    fields = {"platform": platform, "app_version": app_version, "locale": locale}
    try:
        return _upsert(session, user, session_id, push_token, fields, keep)
    except IntegrityError:
        session.rollback()
        return _upsert(session, user, session_id, push_token, fields, keep)


def _upsert(
    session: Session,
    user: User,
    session_id: uuid.UUID,
    push_token: str,
    fields: dict[str, str | None],
    keep: int,
) -> Device:
    now = clock.now()
    # The account first, as deleting or disabling it locks it before its sessions and devices
    # (a new device's row would lock it too, but only once the session is held): one under
    # way finishes first, and the session is then gone; a later one waits for this.
    members.hold_account(session, user.id)
    # The session stays live until this commits: a sign-out that commits first is waited for
    # and refuses the registration; one that comes after finds the device and switches it off.
    live = session.scalar(
        select(AuthSession.id)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .with_for_update(read=True)
    )
    if live is None:
        session.rollback()
        raise Unauthorized("The session has ended: sign in again.")
    device = session.scalar(select(Device).where(Device.push_token == push_token).with_for_update())
    if (device is not None and device.disabled_reason in DEAD) or is_dead(session, push_token):
        session.rollback()
        raise invalid("push_token", DEAD_TOKEN)
    if device is None:
        device = Device(user_id=user.id, push_token=push_token, created_at=now, **fields)
        session.add(device)
    device.user_id = user.id
    device.session_id = session_id
    for name, value in fields.items():
        setattr(device, name, value)
    device.active = True
    device.disabled_reason = None
    device.updated_at = now
    session.flush()
    _switch_off_beyond(session, user.id, keep, now)
    session.commit()
    return device


DEAD_TOKEN = (
    "FCM reported this token as no longer registered: delete it on the phone and register "
    "the new token the platform gives."
)


def token_sha256(push_token: str) -> str:
    """How a dead token is remembered (`DeadPushToken`)."""
    return hashlib.sha256(push_token.encode()).hexdigest()


def is_dead(session: Session, push_token: str) -> bool:
    """Whether FCM declared this token dead, its device deleted since or not."""
    dead = select(DeadPushToken.token_sha256).where(
        DeadPushToken.token_sha256 == token_sha256(push_token)
    )
    return session.scalar(dead) is not None


def _switch_off_beyond(session: Session, user_id: uuid.UUID, keep: int, now: datetime) -> None:
    """The account's active devices past the `keep` registered most recently stop getting
    pushes: a push costs one send per device, and old phones' tokens linger."""
    stale = session.scalars(
        select(Device.id)
        .where(Device.user_id == user_id, Device.active.is_(True))
        .order_by(Device.updated_at.desc(), Device.created_at.desc())
        .offset(keep)
    ).all()
    if stale:
        session.execute(
            update(Device)
            .where(Device.id.in_(stale))
            .values(active=False, disabled_reason=REPLACED, updated_at=now)
        )


def disabled_reason_of(fcm_error: str | None) -> str:
    """Why a device that FCM refused for good is switched off, by FCM's error code."""
    if fcm_error == "SENDER_ID_MISMATCH":
        return OTHER_PROJECT
    return INVALID_TOKEN if fcm_error == "INVALID_TOKEN" else UNREGISTERED


def sign_out(session: Session, ended: ColumnElement[bool], now: datetime) -> int:
    """Switch off the active devices of the sign-in sessions that `ended` selects (a condition
    on `Device`), in the transaction that ends them. Returns how many."""
    result = session.execute(
        update(Device)
        .where(ended, Device.active.is_(True))
        .values(active=False, disabled_reason=SIGNED_OUT, updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def list_for(session: Session, user: User, *, limit: int, before: str | None) -> dict[str, Any]:
    """The account's devices, switched off ones included, newest first, a page at a time
    (`pages`). The live ones are few (the account keeps `keep`); the switched-off ones, every
    reinstall it ever had, are read through `ix_devices_user_off_created` from where the last
    page ended, a page's worth."""
    page: list[Device] = []
    for active in (True, False):
        query = select(Device).where(Device.user_id == user.id, Device.active.is_(active))
        if before:
            query = query.where(pages.older_than_key(Device, before))
        newest = query.order_by(Device.created_at.desc(), Device.id.desc()).limit(limit + 1)
        page += session.scalars(newest)
    page.sort(key=lambda device: (device.created_at, device.id), reverse=True)
    rows = page[: limit + 1]
    return {"items": rows[:limit], "next": pages.next_of(rows, limit)}


def delete(session: Session, user: User, device_id: uuid.UUID) -> None:
    """Remove one of the account's devices. Locked as it is read: a registration that moves the
    device to another account (`register`) and commits first makes it that account's, not one
    this removes."""
    device = session.get(Device, device_id, with_for_update=True)
    if device is None or device.user_id != user.id:
        raise NotFound("No such device.")
    session.delete(device)
    session.commit()
