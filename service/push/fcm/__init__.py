"""The FCM backend: push messages sent through the real firebase-admin SDK, outcomes mapped."""

from service.push.fcm.backend import TOKEN_KEPT_FROM_EXPIRY, FcmBackend
from service.push.fcm.credentials import load_certificate
from service.push.fcm.messages import (
    ANDROID_CHANNEL,
    MAX_PAYLOAD_BYTES,
    apns_collapse_id,
    build_message,
    payload_size,
)
from service.push.fcm.outcomes import classify, retry_after, token_refused
from service.push.fcm.sdk import GOOGLE_FCM, PINNED_VERSION, SEND_PATH

__all__ = [
    "ANDROID_CHANNEL",
    "GOOGLE_FCM",
    "MAX_PAYLOAD_BYTES",
    "PINNED_VERSION",
    "SEND_PATH",
    "TOKEN_KEPT_FROM_EXPIRY",
    "FcmBackend",
    "apns_collapse_id",
    "build_message",
    "classify",
    "load_certificate",
    "payload_size",
    "retry_after",
    "token_refused",
]
