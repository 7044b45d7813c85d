"""Users, their sessions (refresh-token families) and issued refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, id_column, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = id_column()
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(60))
    timezone: Mapped[str] = mapped_column(String(64))
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    notes_on_lock_screen: Mapped[bool] = mapped_column(default=False)
    # Counts the changes of the profile (`profile.update_profile`, a confirmed change of the
    # email: `accounts.confirm_email_change`): `me.updated` carries it.
    profile_version: Mapped[int] = mapped_column(server_default="0")
    couple_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("couples.id", ondelete="SET NULL"), index=True
    )
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The last change of the password, and the sign-in session that made it: that session
    # sending the same change again soon after is its retry (`accounts.change_password`).
    password_changed_at: Mapped[datetime | None]
    password_changed_by: Mapped[uuid.UUID | None]

    @property
    def quiet_hours(self) -> dict[str, str] | None:
        if self.quiet_start and self.quiet_end:
            return {"start": self.quiet_start, "end": self.quiet_end}
        return None


class AuthSession(Base):
    """One signed-in device: a family of rotating refresh tokens."""

    __tablename__ = "auth_sessions"
    __table_args__ = (
        # An account's sessions not ended, newest first, a page at a time from where the last
        # one ended (`GET /me/sessions`), never reading the ones a sign-out ended.
        Index(
            "ix_auth_sessions_user_live_created",
            "user_id",
            "created_at",
            "id",
            postgresql_where=text("revoked_at IS NULL"),
            sqlite_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = id_column()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_refreshed_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(40))


class RefreshToken(Base):
    """A refresh token, stored only as a hash; each may be used once (a retry of its rotation
    within REFRESH_REUSE_GRACE_SECONDS aside: `accounts.refresh`)."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The worker deletes expired tokens (`accounts.prune_expired_sign_ins`).
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # When it stopped working: traded for a new pair, or set aside, unused, when a retry of
    # the rotation that issued it was answered with another token instead.
    used_at: Mapped[datetime | None]
    # The token issued when it was traded (the newest, if the trade was retried); NULL before.
    successor_hash: Mapped[str | None] = mapped_column(String(64))


class PasswordReset(Base):
    """The code mailed to an account that forgot its password: at most one per account (a new
    request replaces it), stored only as a hash (`accounts.request_password_reset`)."""

    __tablename__ = "password_resets"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    # Codes tried against it, right or wrong: each try takes one first, so however many are
    # sent at once, no more than the most allowed are ever checked (`accounts.reset_password`).
    attempts: Mapped[int] = mapped_column(server_default="0")
    # When it set the password: a retry of that reset soon after (its answer lost) signs in.
    used_at: Mapped[datetime | None]


class EmailChange(Base):
    """A change of the account's email waiting for its proof: the code mailed to the new
    address, at most one per account (a new request replaces it), stored only as a hash
    (`accounts.request_email_change`)."""

    __tablename__ = "email_changes"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # The address the account gets once the code comes back, as it will be stored.
    new_email: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime]
    # Until then the code works; once it made the change, until its retry window ends.
    expires_at: Mapped[datetime]
    # Codes tried against it, right or wrong: each try takes one first, so however many are
    # sent at once, no more than the most allowed are ever checked.
    attempts: Mapped[int] = mapped_column(server_default="0")
    # When it changed the address: the same confirmation sent again soon after (its answer
    # lost) is answered again.
    used_at: Mapped[datetime | None]
