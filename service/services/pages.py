"""Pages of the newest-first lists (bids, repairs), ordered by `created_at`, then id.

`next` is the last shown row's `created_at` and id, opaque to phones, which pass it back as
`before`. A `before` the API did not make is a 422, never a 500, whatever it decodes to.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, or_, tuple_

from schemas.base import iso
from service.domain.errors import invalid


class Listed(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def created_at(self) -> datetime: ...


def older_than(model: Any, before: str) -> ColumnElement[bool]:
    """The rows of `model` after the page that ended with `before`."""
    created, last_id = _decode(before)
    return or_(model.created_at < created, and_(model.created_at == created, model.id < last_id))


def older_than_key(model: Any, before: str) -> ColumnElement[bool]:
    """`older_than` as one comparison of `(created_at, id)`: an index ending with those two
    columns starts the page where the one before it ended, rather than reading every row
    newer than that to throw them away."""
    created, last_id = _decode(before)
    return tuple_(model.created_at, model.id) < tuple_(created, last_id)


def next_of(rows: Sequence[Listed], limit: int) -> str | None:
    """`next` for a page read with `limit + 1` rows: None when there is nothing after it."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    raw = f"{iso(last.created_at)}|{last.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str) -> tuple[datetime, uuid.UUID]:
    """The time and id a `next` holds. Read strictly: base64 skips characters outside its
    alphabet (a cursor with a `.` or `!` in it read as the one it was made from), and
    uuid.UUID reads other scripts' digits; neither is a cursor the API wrote."""
    try:
        padded = (token + "=" * (-len(token) % 4)).encode("ascii")
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
        created, last_id = raw.split("|")
        moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("a page cursor's time has no time zone")
        return moment.astimezone(UTC), uuid.UUID(last_id)
    except (ValueError, UnicodeError, binascii.Error, OverflowError) as exc:
        raise invalid("before", "Not a page cursor from this API: pass `next` as is.") from exc
