"""A phone whose upload is slow holds nothing of the database while its body arrives.

Under `reach serve` the caller of a member endpoint was looked up before the request's body was
read, and the lookup's transaction stayed open while the body trickled in: on the embedded
default it held the process's one SQLite writer lock, so every other request waited for the slow
phone; on PostgreSQL each slow upload held a pooled connection idle in transaction.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.client import ApiClient, Person
from tests.support.served import reach_serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with reach_serve(Path(tmp_path_factory.mktemp("slow-uploads"))) as url:
        yield url


def body_begun(url: str, path: str, sender: Person, body: bytes) -> socket.socket:
    """A connection that sent a request's headers and the first byte of its body, then waits."""
    at = urlsplit(url)
    conn = socket.create_connection((at.hostname, at.port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {sender.access_token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    conn.sendall(head + body[:1])
    return conn


@pytest.mark.parametrize(
    ("path", "fields"),
    [("/api/v1/repairs", {"topic": "Sunday"}), ("/api/v1/bids", {"kind": "connect"})],
)
def test_a_slow_upload_keeps_no_other_request_waiting(
    served: str, path: str, fields: dict[str, str]
) -> None:
    api = ApiClient(served)
    ana, ben = api.couple()
    body = json.dumps({"client_id": str(uuid.uuid4()), **fields}).encode()
    slow = body_begun(served, path, ana, body)
    try:
        time.sleep(0.5)  # the server has taken the request and waits for the rest of its body
        began = time.monotonic()
        answer = api.get("/api/v1/me", as_=ben)
        took = time.monotonic() - began
        assert answer.status_code == 200
        assert took < 2.0, f"GET /me waited {took:.1f} s for a slow upload"
        slow.sendall(body[1:])
        assert slow.recv(12).startswith(b"HTTP/1.1 20")
    finally:
        slow.close()
        api.http.close()
