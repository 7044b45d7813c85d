"""The mail settings read: the relay SMTP_URL names, the sender MAIL_FROM names, and checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal
from urllib.parse import unquote, urlsplit

from service.config import Settings, SettingsError

Security = Literal["none", "starttls", "tls"]

# The port a URL without one means: TLS submission, submission with credentials (STARTTLS),
# and the relay port without.
SMTPS_PORT, SUBMISSION_PORT, RELAY_PORT = 465, 587, 25
RELAY_EXAMPLES = (
    "smtp://user:password@host:587 (STARTTLS), smtps://user:password@host:465 (TLS), or "
    "smtp://host:25 for a relay without credentials"
)
ENCODED = "a user or password with @ : / ? # % in it is percent-encoded: %40 %3A %2F %3F %23 %25"


@dataclass(frozen=True)
class Relay:
    """Where mails are handed over, and how: TLS from the start, STARTTLS, or none (a relay
    without credentials only)."""

    host: str
    port: int
    security: Security
    username: str = ""
    password: str = field(default="", repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def relay_from_url(url: str) -> Relay:
    """The relay SMTP_URL names, or a SettingsError saying what it takes (never showing the
    password)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
        if port == 0:
            raise ValueError("port 0")
    except ValueError:
        raise SettingsError(
            f"SMTP_URL's port is not a number from 1 to 65535 ({ENCODED}): {RELAY_EXAMPLES}"
        ) from None
    if parts.scheme not in ("smtp", "smtps"):
        raise SettingsError(f"SMTP_URL starts with smtp:// or smtps://: {RELAY_EXAMPLES}")
    if not parts.hostname:
        raise SettingsError(f"SMTP_URL names no host: {RELAY_EXAMPLES}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingsError(
            f"SMTP_URL has a path, query or fragment, which mean nothing to a relay ({ENCODED}): "
            f"{RELAY_EXAMPLES}"
        )
    username = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if bool(username) != bool(password):
        raise SettingsError(
            f"SMTP_URL gives a user without a password, or a password without a user: give "
            f"both or neither: {RELAY_EXAMPLES}"
        )
    if not (username + password).isascii():  # smtplib's AUTH sends them as ASCII, or fails
        raise SettingsError(
            "SMTP_URL's user and password are ASCII only (smtplib cannot sign in with others): "
            "use a password of ASCII letters, digits and punctuation, percent-encoded"
        )
    security: Security = "tls" if parts.scheme == "smtps" else "none"
    if username and parts.scheme == "smtp":
        security = "starttls"  # credentials never travel in the clear
    default = {"tls": SMTPS_PORT, "starttls": SUBMISSION_PORT, "none": RELAY_PORT}[security]
    return Relay(
        host=parts.hostname,
        port=port or default,
        security=security,
        username=username,
        password=password,
    )


def sender_domain(mail_from: str) -> str:
    """The domain of MAIL_FROM's address (its mails' Message-IDs are made in it), or a
    SettingsError if it is not one address."""
    usable = "one address, e.g. 'Reach <no-reply@example.com>' or no-reply@example.com"
    header = EmailMessage()
    try:
        header["From"] = mail_from
        addresses = header["From"].addresses
        defects = header["From"].defects
    except (ValueError, IndexError):
        addresses, defects = (), ("unreadable",)
    if len(addresses) != 1 or defects or not addresses[0].username or not addresses[0].domain:
        raise SettingsError(f"MAIL_FROM is {usable}, not {mail_from!r}")
    return str(addresses[0].domain)


def check_mail_settings(settings: Settings) -> None:
    """Refuse mail settings the service cannot send with: checked by every process, so a
    mistake shows at start, not at the first forgotten password."""
    if settings.MAIL_FROM:
        sender_domain(settings.MAIL_FROM)
    if settings.SMTP_URL:
        relay_from_url(settings.SMTP_URL)
    if settings.MAIL_BACKEND != "smtp":
        return
    if not settings.SMTP_URL:
        raise SettingsError(
            f"MAIL_BACKEND=smtp needs SMTP_URL, the relay mails are handed to: {RELAY_EXAMPLES}. "
            f"Or set MAIL_BACKEND=log to write mails to the log instead of sending them."
        )
    if not settings.MAIL_FROM:
        raise SettingsError(
            "MAIL_BACKEND=smtp needs MAIL_FROM, the sender of every mail, e.g. "
            "'Reach <no-reply@example.com>' (an address the relay may send as)."
        )
