"""Room names of member sockets: one per user (every event is sent to its partners' rooms,
so a couple's events reach only its members' live sockets), one per sign-in session (to cut
its sockets when it ends). No room is per couple: a socket would stay in it after an unpair."""

from __future__ import annotations

import uuid


def user_room(user_id: uuid.UUID | str) -> str:
    return f"user:{user_id}"


def session_room(session_id: uuid.UUID | str) -> str:
    """Every socket opened with an access token of one sign-in session."""
    return f"auth-session:{session_id}"
