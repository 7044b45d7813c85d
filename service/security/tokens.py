"""Access tokens (short-lived JWTs) and opaque refresh tokens."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from service.domain.errors import Unauthorized

ALGORITHM = "HS256"
LEEWAY_SECONDS = 5


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID


@dataclass(frozen=True)
class TokenIssuer:
    secret: str
    issuer: str
    audience: str
    access_seconds: int

    def access_token(self, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime) -> str:
        claims = {
            "sub": str(user_id),
            "sid": str(session_id),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self.access_seconds)).timestamp()),
            "typ": "access",
        }
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def read_access_token(self, token: str, now: datetime) -> AccessClaims:
        """Check signature, algorithm, issuer and audience, and the times against `now`."""
        claims, expires, issued = _verified(token, self.secret, self.issuer, self.audience)
        moment = now.timestamp()
        if expires <= moment - LEEWAY_SECONDS:
            raise Unauthorized("The access token has expired: refresh it.")
        if issued > moment + LEEWAY_SECONDS:
            raise Unauthorized("The access token is not valid yet: check the device clock.")
        return claims

    def keyed_hash(self, purpose: str, value: str) -> str:
        """The HMAC-SHA256 of `value` for `purpose` under the secret: what is stored of a short
        code (a password reset's), so that a reader of the database alone cannot try guesses
        against it offline."""
        message = f"{purpose}\0{value}".encode("utf-8", "surrogatepass")
        return hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()


# Phones send the same token with every request for its whole life: its signature is checked
# once per process; the times are checked on every use against the service clock.
@functools.lru_cache(maxsize=20_000)
def _verified(
    token: str, secret: str, issuer: str, audience: str
) -> tuple[AccessClaims, float, float]:
    invalid = Unauthorized("The access token is not valid: sign in again.")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            options={
                "require": ["exp", "iat", "sub", "sid", "iss", "aud"],
                # Times are checked by the caller against the service clock.
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except (jwt.PyJWTError, UnicodeEncodeError) as exc:  # a lone surrogate has no UTF-8
        raise invalid from exc
    if claims.get("typ") != "access":
        raise invalid
    try:
        return (
            AccessClaims(uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])),
            float(claims["exp"]),
            float(claims["iat"]),
        )
    except (ValueError, TypeError) as exc:
        raise invalid from exc


def new_refresh_token() -> str:
    return "rt_" + secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """Any string a client sends hashes (one that is no token's finds no row)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
