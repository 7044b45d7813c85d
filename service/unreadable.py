"""Requests gunicorn cannot read, answered in the contract's one error shape.

A request line over gunicorn's limit (`limit_request_line`, 4094 bytes), a header over its
limit (8190 bytes, or more than 100 of them), or bytes that are not HTTP never reach the app:
gunicorn answers them itself (`Worker.handle_error`), with an HTML page. `write_problem` takes
the place of the function that writes that page (`gunicorn.util.write_error`, whose signature
`tests/unit/test_stopping.py` pins), so a phone's HTTP client gets a problem object like every
other error, `code` included.
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import util

from service.errors import PROBLEM_MIMETYPE, problem_body

# What a client can do about each status gunicorn answers (anything else: the reason).
_DETAILS = {
    400: "The request is not valid HTTP/1.1.",
    414: "The request line is longer than 4094 bytes: send long values in a JSON body.",
    431: "The request's headers are too large: at most 100 headers of 8190 bytes each.",
}


def problem_bytes(status: int, reason: str) -> bytes:
    """The whole HTTP response for a request gunicorn could not read; it closes the
    connection, since what follows the request on it cannot be read either."""
    body = json.dumps(problem_body(status, detail=_DETAILS.get(status, reason))).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {PROBLEM_MIMETYPE}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """`gunicorn.util.write_error`'s signature; `mesg` (gunicorn's own words, which may
    repeat the request's bytes) goes to gunicorn's log, not to the client."""
    util.write_nonblock(sock, problem_bytes(status_int, reason))


def install() -> None:
    """Answer unreadable requests with problem objects in this process."""
    util.write_error = write_problem
