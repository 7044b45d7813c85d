"""ALLOWED_ORIGINS as browsers send an Origin, since each is compared as it comes."""

from __future__ import annotations

from urllib.parse import urlsplit

from service.config import Settings, SettingsError

DEFAULT_PORTS = {"http": 80, "https": 443}
AS_SENT = "scheme://host[:port]: http or https, lowercase, no path, no default port"


def as_browsers_send(origin: str) -> str | None:
    """`origin` written as a browser sends it, or None when it names no web page's origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        return None
    host = f"[{host}]" if ":" in host else host
    shown_port = "" if port in (None, DEFAULT_PORTS[scheme]) else f":{port}"
    return f"{scheme}://{host}{shown_port}"


def check_allowed_origins(settings: Settings) -> None:
    """Refuse an origin no browser sends: `https://app.example.com/` (a path), a host without
    its scheme, capitals, `:443`, or `*`; it never matched, and the web app it was meant for
    was refused CORS and its socket without a word in the logs."""
    for origin in settings.ALLOWED_ORIGINS:
        written = as_browsers_send(origin)
        if written == origin:
            continue
        told = f"write it as {written}" if written else f"write each as {AS_SENT}"
        raise SettingsError(
            f"ALLOWED_ORIGINS holds {origin!r}, which no browser sends as an Origin: {told}"
        )
