"""Room names: one per user, one per couple."""

from __future__ import annotations

import uuid


def user_room(user_id: uuid.UUID | str) -> str:
    return f"user:{user_id}"


def couple_room(couple_id: uuid.UUID | str) -> str:
    return f"couple:{couple_id}"
