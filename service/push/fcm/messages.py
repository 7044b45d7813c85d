"""The firebase-admin Message of one push, per platform, and the part of it FCM limits."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import warnings
from datetime import datetime

from firebase_admin import messaging

from service.clock import clock
from service.push import PushMessage

MAX_PAYLOAD_BYTES = 4096
ANDROID_CHANNEL = "bids"
_WEB_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_token_warning_lock = threading.Lock()


def build_message(push: PushMessage, now: datetime | None = None) -> messaging.Message:
    """The firebase-admin Message for one push sent at `now` (default: now): visible when title
    or body is set, else data-only. `push.extra` may set `channel_id`, `sound` and `thread_id`.
    Its time to live is what is left of the push's `expires_at` then (`PushMessage.ttl_at`),
    and on Apple devices `apns-expiration` is that very moment.

    A visible notification is tagged with the collapse key on Android and in browsers and, as
    its identifier, on Apple devices (`apns-collapse-id`): a push sent again, or a newer one
    about the same thing, replaces the notification shown rather than adding one. The collapse
    key alone only collapses what FCM still holds for an offline phone."""
    visible = push.title is not None or push.body is not None
    now = clock.now() if now is None else now
    ttl = push.ttl_at(now)
    android = apns = webpush = None
    if push.platform == "android":
        channel = push.extra.get("channel_id", ANDROID_CHANNEL)
        shown = messaging.AndroidNotification(channel_id=channel, tag=push.collapse_key or None)
        android = messaging.AndroidConfig(
            collapse_key=push.collapse_key or None,
            priority=push.priority,
            ttl=ttl,
            notification=shown if visible else None,
        )
    elif push.platform == "ios":
        apns = _apns_config(push, visible, _apns_expiration(push, ttl, now))
    else:
        headers = {"TTL": str(ttl), "Urgency": push.priority}
        shown_web = None
        if push.collapse_key:
            headers["Topic"] = _web_topic(push.collapse_key)
            if visible:
                shown_web = messaging.WebpushNotification(tag=push.collapse_key)
        webpush = messaging.WebpushConfig(headers=headers, notification=shown_web)
    notification = messaging.Notification(title=push.title, body=push.body) if visible else None
    # FCM registration tokens belong in `token`; `fid` is for Firebase installation IDs.
    with _token_warning_lock, warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Message\.token is deprecated", category=DeprecationWarning
        )
        return messaging.Message(
            token=push.token,
            data=dict(push.data) or None,
            notification=notification,
            android=android,
            apns=apns,
            webpush=webpush,
        )


def _apns_expiration(push: PushMessage, ttl: int, now: datetime) -> str:
    """When APNs gives up on the push: its `expires_at`, else `ttl` from `now` ("0": at once)."""
    if push.expires_at is not None:
        return str(int(push.expires_at.timestamp()))
    return str(int(now.timestamp()) + ttl) if ttl > 0 else "0"


def _apns_config(push: PushMessage, visible: bool, expiration: str) -> messaging.APNSConfig:
    headers = {
        "apns-priority": "10" if visible and push.priority == "high" else "5",
        "apns-push-type": "alert" if visible else "background",
        "apns-expiration": expiration,
    }
    if push.collapse_key:
        headers["apns-collapse-id"] = apns_collapse_id(push.collapse_key)
    aps = messaging.Aps(
        alert=messaging.ApsAlert(title=push.title, body=push.body) if visible else None,
        badge=push.badge,
        sound=push.extra.get("sound", "default") if visible else None,
        category=push.category,
        thread_id=push.extra.get("thread_id", push.category),
        mutable_content=visible,
        content_available=not visible,
    )
    return messaging.APNSConfig(headers=headers, payload=messaging.APNSPayload(aps=aps))


def apns_collapse_id(collapse_key: str) -> str:
    """APNs allows 64 bytes: longer keys become their SHA-256 (64 hex characters)."""
    if len(collapse_key.encode()) <= 64:
        return collapse_key
    return hashlib.sha256(collapse_key.encode()).hexdigest()


def _web_topic(collapse_key: str) -> str:
    """Web Push `Topic`: at most 32 URL-safe base64 characters."""
    if _WEB_TOPIC.fullmatch(collapse_key):
        return collapse_key
    digest = hashlib.sha256(collapse_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def payload_size(message: messaging.Message) -> int:
    """Bytes of the encoded data + notification, the part FCM limits to 4096."""
    encoded = json.loads(str(message))
    part = {key: encoded[key] for key in ("data", "notification") if key in encoded}
    return len(json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode())
