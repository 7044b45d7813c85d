"""Choosing the push backend from the settings: "log" (the embedded default) or "fcm"."""

from __future__ import annotations

from service.config import SettingsError
from service.push import PushBackend
from service.push.log import LogBackend

CHOICES = ("log", "fcm")


def build_backend(
    push_backend: str,
    firebase_credentials: str,
    fcm_endpoint: str,
    max_concurrency: int = 16,
    timeout_seconds: float = 10,
) -> PushBackend:
    """The backend PUSH_BACKEND names; "fcm" needs FIREBASE_CREDENTIALS."""
    if check_backend(push_backend, firebase_credentials) == "log":
        return LogBackend()
    from service.push.fcm import FcmBackend  # firebase-admin is imported only when used

    return FcmBackend(
        firebase_credentials,
        fcm_endpoint.strip(),
        max_concurrency=max_concurrency,
        timeout_seconds=timeout_seconds,
    )


def backend_named(push_backend: str) -> str:
    """The backend PUSH_BACKEND names, or a SettingsError: checked by every process (a typo
    shows at the first command, not only in the worker); the credentials where pushes go."""
    choice = push_backend.strip().lower() or "log"
    if choice not in CHOICES:
        raise SettingsError(
            f"PUSH_BACKEND={push_backend!r} is not known: set it to one of {', '.join(CHOICES)}"
        )
    return choice


def check_backend(push_backend: str, firebase_credentials: str) -> str:
    """The backend PUSH_BACKEND names, or a SettingsError saying why it cannot send: checked
    before a process that sends pushes starts (`reach serve` with the worker inline)."""
    choice = backend_named(push_backend)
    if choice == "log":
        return choice
    if not firebase_credentials.strip():
        raise SettingsError(
            "PUSH_BACKEND=fcm needs FIREBASE_CREDENTIALS: the path of a Firebase service-account "
            "JSON file (Firebase console > Project settings > Service accounts > Generate new "
            "private key) or that JSON itself. Set FCM_ENDPOINT as well to use a local FCM "
            "stand-in, or PUSH_BACKEND=log to print pushes instead of sending them."
        )
    from service.push.fcm import load_certificate

    load_certificate(firebase_credentials)
    return choice
