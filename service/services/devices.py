"""Devices: register or refresh a push token, list, stop pushing to one."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.clock import clock
from service.domain.errors import NotFound
from service.models import Device, User


def register(
    session: Session,
    user: User,
    *,
    platform: str,
    push_token: str,
    app_version: str | None,
    locale: str | None,
    keep: int,
) -> tuple[Device, bool]:
    """Upsert by push token. A token moves to whoever registers it last (the phone's new user).

    Returns the device and whether it was created. Two registrations of a new token at once
    (an app's start and its token callback) both find no row to lock; the one whose insert
    loses to the other's unique token updates the other's row instead. The account keeps its
    `keep` devices registered most recently; any older one is switched off (`replaced`).
    """
    fields = {"platform": platform, "app_version": app_version, "locale": locale}
    try:
        return _upsert(session, user, push_token, fields, keep)
    except IntegrityError:
        session.rollback()
        return _upsert(session, user, push_token, fields, keep)


def _upsert(
    session: Session, user: User, push_token: str, fields: dict[str, str | None], keep: int
) -> tuple[Device, bool]:
    now = clock.now()
    device = session.scalar(select(Device).where(Device.push_token == push_token).with_for_update())
    created = device is None
    if device is None:
        device = Device(user_id=user.id, push_token=push_token, created_at=now, **fields)
        session.add(device)
    device.user_id = user.id
    for name, value in fields.items():
        setattr(device, name, value)
    device.active = True
    device.disabled_reason = None
    device.updated_at = now
    session.flush()
    _switch_off_beyond(session, user.id, keep, now)
    session.commit()
    return device, created


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
            .values(active=False, disabled_reason="replaced", updated_at=now)
        )


def list_for(session: Session, user: User) -> list[Device]:
    return list(
        session.scalars(
            select(Device).where(Device.user_id == user.id).order_by(Device.created_at.desc())
        )
    )


def delete(session: Session, user: User, device_id: uuid.UUID) -> None:
    device = session.get(Device, device_id)
    if device is None or device.user_id != user.id:
        raise NotFound("No such device.")
    session.delete(device)
    session.commit()
