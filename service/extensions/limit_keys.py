"""What rate limits count under: an account, an email's keyed digest, an address; shared scopes."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any

from flask import current_app, request

# Writes a phone makes over REST or over its socket, counted once per account whichever way
# each comes: the scopes of their shared limits (`limiter.shared_limit`, `realtime.acks`).
SENDING_BIDS = "bids-sent"
WRITING_REPAIR_MESSAGES = "repair-messages-written"


def account_limit_key(user_id: Any) -> str:
    """The limit key of a member's account (REST and socket writes)."""
    return f"user:{user_id}"


def email_limit_key(scope: str, email: str) -> str:
    """The limit key of the account an (already normalised) email names: a keyed digest, never
    the address. flask-limiter logs the key of every limit it refuses, and Redis holds it: a
    password guesser's target would otherwise be written down once per try."""
    secret = str(current_app.config["SECRET_KEY"]).encode()
    # A lone surrogate (refused by the schemas, but read here before them) has no UTF-8.
    named = email.encode("utf-8", "backslashreplace")
    return f"{scope}:{hmac.new(secret, named, hashlib.sha256).hexdigest()[:32]}"


def rate_limit_key() -> str:
    """Signed-in callers are limited per account, others per address."""
    from flask import g

    member = g.get("current_member")
    if member is not None:
        return account_limit_key(member.user_id)
    return f"ip:{client_address()}"


def client_address() -> str:
    """The caller's address as per-address limits count it: an IPv4 address, or the /64 of an
    IPv6 one (one subscriber or host holds a whole /64, and would otherwise get a fresh limit
    for each of its 2^64 addresses)."""
    return address_key(request.remote_addr or "unknown")


def address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
