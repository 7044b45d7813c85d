"""SQLAlchemy 2.0 tables of Reach."""

from service.models.accounts import AuthSession, RefreshToken, User
from service.models.base import Base
from service.models.couples import Couple, CoupleEvent, Invite
from service.models.devices import Device

__all__ = [
    "AuthSession",
    "Base",
    "Couple",
    "CoupleEvent",
    "Device",
    "Invite",
    "RefreshToken",
    "User",
]
