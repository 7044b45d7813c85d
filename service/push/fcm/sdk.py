"""firebase-admin's messaging service, pinned to one version and aimed at FCM or a stand-in."""

from __future__ import annotations

import firebase_admin
import requests
from firebase_admin import messaging
from google.auth.transport import requests as google_requests
from urllib3.util.retry import Retry

from service.push.cutoff import WatchedAdapter
from service.push.timing import CONNECT_ATTEMPTS

PINNED_VERSION = "7.7.0"
GOOGLE_FCM = "https://fcm.googleapis.com"
SEND_PATH = "/v1/projects/{0}/messages:send"


def _point_service_at(
    app: firebase_admin.App, base_url: str, pool_size: int
) -> tuple[str, requests.Session]:
    """Aim the app's messaging service at `base_url` and switch off the SDK's retries.

    firebase-admin builds the send URL once, from the private `_MessagingService.FCM_URL`,
    into the service instance's `_fcm_url`; we overwrite it on this app's instance only. Its
    session (google-auth's `AuthorizedSession`) answers a 401 by fetching a new access token
    and sending again, twice: each of those exchanges may itself be tried three times, so one
    send could outlast any lease. Here a send reaches FCM once: a refused token is a retry
    (`classify`), and the next batch fetches a new one before its first send.
    """
    service = messaging._get_messaging_service(app)
    session = getattr(getattr(service, "_client", None), "session", None)
    if (
        not isinstance(getattr(service, "_fcm_url", None), str)
        or not isinstance(session, google_requests.AuthorizedSession)
        or not isinstance(getattr(session, "_max_refresh_attempts", None), int)
    ):
        raise RuntimeError(
            f"firebase-admin {firebase_admin.__version__} changed its messaging internals "
            f"(_fcm_url, _client.session, its _max_refresh_attempts); the FCM backend is "
            f"written against {PINNED_VERSION}"
        )
    url = base_url + SEND_PATH.format(app.project_id)
    service._fcm_url = url
    session._max_refresh_attempts = 0
    # Only a failed connect (the request never left) is tried again; never an answer.
    again = CONNECT_ATTEMPTS - 1
    retries = Retry(
        total=again, connect=again, read=0, status=0, other=0, redirect=0, raise_on_status=False
    )
    adapter = WatchedAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=retries)
    session.mount(base_url + "/", adapter)
    return url, session
