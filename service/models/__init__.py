"""SQLAlchemy 2.0 tables of Reach."""

from service.models.accounts import AuthSession, RefreshToken, User
from service.models.base import Base
from service.models.bids import Bid, BidResponse
from service.models.couples import Couple, CoupleEvent, Invite
from service.models.devices import Device
from service.models.push import PushAttempt, PushDelivery, PushJob

__all__ = [
    "AuthSession",
    "Base",
    "Bid",
    "BidResponse",
    "Couple",
    "CoupleEvent",
    "Device",
    "Invite",
    "PushAttempt",
    "PushDelivery",
    "PushJob",
    "RefreshToken",
    "User",
]
