"""Bids: reach for the partner, acknowledge, respond, expire; each change is a couple event."""

from service.services.bids.answers import LATER_MAX, acknowledge, respond
from service.services.bids.expiry import expire_due, overdue
from service.services.bids.reading import Written, get, list_for, present, wire
from service.services.bids.sending import send
from service.services.bids.waiting import follow_quiet_hours

__all__ = [
    "LATER_MAX",
    "Written",
    "acknowledge",
    "expire_due",
    "follow_quiet_hours",
    "get",
    "list_for",
    "overdue",
    "present",
    "respond",
    "send",
    "wire",
]
