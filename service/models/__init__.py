"""SQLAlchemy 2.0 tables of Reach."""

from service.models.accounts import (
    AuthSession,
    EmailChange,
    PasswordReset,
    RefreshToken,
    User,
)
from service.models.base import Base
from service.models.bids import Bid, BidResponse
from service.models.checkins import CheckInAnswer, CheckInRound
from service.models.couples import Couple, CoupleEvent, Invite
from service.models.devices import DeadPushToken, Device
from service.models.operators import AuditEntry, Operator, OperatorSession
from service.models.push import PushAttempt, PushDelivery, PushJob
from service.models.repairs import Repair, RepairMessage, RepairPartner

__all__ = [
    "AuditEntry",
    "AuthSession",
    "Base",
    "Bid",
    "BidResponse",
    "CheckInAnswer",
    "CheckInRound",
    "Couple",
    "CoupleEvent",
    "DeadPushToken",
    "Device",
    "EmailChange",
    "Invite",
    "Operator",
    "OperatorSession",
    "PasswordReset",
    "PushAttempt",
    "PushDelivery",
    "PushJob",
    "RefreshToken",
    "Repair",
    "RepairMessage",
    "RepairPartner",
    "User",
]
