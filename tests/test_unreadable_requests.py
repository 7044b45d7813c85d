"""Requests gunicorn cannot read get the contract's problem object, from `reach serve` itself
(service/unreadable.py), not gunicorn's HTML page."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.served import reach_serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with reach_serve(Path(tmp_path_factory.mktemp("unreadable"))) as url:
        at = urlsplit(url)
        yield at.hostname or "127.0.0.1", at.port or 80


def exchange(served: tuple[str, int], request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes; the status line, headers and body of the answer (read to the close)."""
    with socket.create_connection(served, timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    return status, headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "words"),
    [
        (b"GET /api/v1/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "4094 bytes"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431, "8190"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
            + b"\r\n",
            431,
            "100 headers",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "not valid HTTP"),
    ],
    ids=["long-request-line", "long-header", "too-many-headers", "not-http"],
)
def test_an_unreadable_request_gets_a_problem_object(
    served: tuple[str, int], request_bytes: bytes, status: int, words: str
) -> None:
    status_line, headers, body = exchange(served, request_bytes)
    assert status_line.startswith(f"HTTP/1.1 {status} "), status_line
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["code"] == ("server_error" if status >= 500 else "bad_request")
    assert words in problem["detail"]
    assert b"<html>" not in body


def test_a_readable_request_after_them_is_served(served: tuple[str, int]) -> None:
    status_line, _, body = exchange(
        served, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status_line.startswith("HTTP/1.1 200 ")
    assert json.loads(body) == {"status": "ok"}
