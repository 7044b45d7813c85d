"""The server's answer to a WebSocket upgrade request (RFC 6455 4.2)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from wsproto.utilities import generate_accept_token


def _handshake_response(environ: dict[str, Any]) -> bytes | None:
    """The 101 answer to a valid WebSocket upgrade request (RFC 6455 4.2), or None."""
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
        return None
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    accept = generate_accept_token(key.encode("ascii"))
    # No Sec-WebSocket-Extensions: permessage-deflate is declined.
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
