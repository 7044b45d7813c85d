"""Reading requests: bodies whole before the database is touched (a streamed body is read whole
or refused, 413, never cut short), and a path's numbers in ASCII digits only."""

from __future__ import annotations

from typing import IO, cast

from flask import Request, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import IntegerConverter
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream


class _NoLongerThan(LimitedStream):
    """A streamed body, readable up to `limit` bytes; read whole, a longer one is 413.

    Werkzeug's LimitedStream with a maximum stops `readall` at the limit without looking for
    more, and returns what it read: a chunked body over MAX_CONTENT_LENGTH came out cut at the
    limit, then failed to parse (400 "not valid JSON") where the same body with a
    Content-Length got 413. This one reads one byte past the limit to tell the two apart.
    """

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(stream, limit, is_max=True)
        self._source = stream

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._source.read(1):
            raise RequestEntityTooLarge()
        return data


class ReachRequest(Request):
    """Flask's request; a body without Content-Length (chunked) over the limit is 413."""

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        streamed = self.content_length is None and "wsgi.input_terminated" in self.environ
        if streamed and limit is not None and not self.shallow:
            return cast(IO[bytes], _NoLongerThan(self.input_stream, limit))
        return super().stream


def read_first() -> None:
    """Read the request's body whole (at most MAX_CONTENT_LENGTH) before anything else runs.

    A member endpoint looks its caller up before its schema reads the body, and the lookup's
    transaction stays open until the answer: a phone whose upload is slow (a weak signal, or a
    client that stalls on purpose) held it all along, on PostgreSQL a pooled connection idle in
    transaction, on SQLite the process's one writer lock, which every other request then
    waited for. Read here, the body waits on its phone alone; the parsers read it from memory.
    """
    request.get_data(cache=True)


class AsciiIntegerConverter(IntegerConverter):
    """A path's `<int:...>`: ASCII digits only. Werkzeug's matches `\\d+`, which Python's regular
    expressions take as any script's digits, and int() reads them: /ops/push/jobs/\\u0661/retry
    retried job 1."""

    regex = "[0-9]+"
