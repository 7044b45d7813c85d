"""The service-account key, and the OAuth exchange that gets access tokens from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from firebase_admin import credentials
from google.auth.transport import requests as google_requests

from service.config import SettingsError


def load_certificate(source: str) -> credentials.Certificate:
    """A service-account credential from FIREBASE_CREDENTIALS: a file path or the JSON itself."""
    text = source.strip()
    if not text:
        raise SettingsError("FIREBASE_CREDENTIALS is empty: set it to a service-account JSON file")
    cert: str | dict[str, Any]
    if text.startswith("{"):
        try:
            cert = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"FIREBASE_CREDENTIALS looks like JSON but does not parse "
                f"(line {exc.lineno}, column {exc.colno})"
            ) from None
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise SettingsError(
                f"FIREBASE_CREDENTIALS points at {path}, which is not a file: set it to the "
                f"path of the service-account JSON file (or to that JSON itself)"
            )
        cert = str(path)
    try:
        return credentials.Certificate(cert)
    except (ValueError, OSError) as exc:
        raise SettingsError(
            f"FIREBASE_CREDENTIALS is not a usable service-account key: {exc}"
        ) from exc


class _TokenRequest:
    """google-auth's HTTP request for the OAuth exchange, with our timeout, remembering the
    status of its last answer: google-auth's errors do not say it, and a gateway's 502 in front
    of the token endpoint is as passing as a 503."""

    def __init__(self, session: requests.Session, timeout_seconds: float) -> None:
        self._request = google_requests.Request(session)
        self._timeout = timeout_seconds
        self.last_status: int | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        response = self._request(*args, **kwargs)
        self.last_status = response.status
        return response
