"""Access tokens (short-lived JWTs) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
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
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                options={
                    "require": ["exp", "iat", "sub", "sid", "iss", "aud"],
                    # Times are checked below against the service clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is not valid: sign in again.") from exc
        if claims.get("typ") != "access":
            raise Unauthorized("The access token is not valid: sign in again.")
        moment = now.timestamp()
        try:
            expires, issued = float(claims["exp"]), float(claims["iat"])
        except (TypeError, ValueError) as exc:
            raise Unauthorized("The access token is not valid: sign in again.") from exc
        if expires <= moment - LEEWAY_SECONDS:
            raise Unauthorized("The access token has expired: refresh it.")
        if issued > moment + LEEWAY_SECONDS:
            raise Unauthorized("The access token is not valid yet: check the device clock.")
        try:
            return AccessClaims(uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]))
        except (ValueError, TypeError) as exc:
            raise Unauthorized("The access token is not valid: sign in again.") from exc


def new_refresh_token() -> str:
    return "rt_" + secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
