"""The SMTP backend: each mail is handed to the relay SMTP_URL names, one connection a mail."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime

from service.mail import Mail
from service.mail.relay import Relay, sender_domain


class SmtpBackend:
    """Sends through smtplib (its sockets are gevent's in a patched process), over TLS from the
    start (smtps://), after STARTTLS (smtp:// with credentials), or in the clear (smtp://
    without credentials: a relay on the host or its network). The relay's certificate is
    checked against the system's CAs (SSL_CERT_FILE names others) and the relay's host name.
    `timeout_seconds` bounds connecting and each wait for an answer."""

    name = "smtp"
    outcome = "sent"
    in_background = True

    def __init__(
        self,
        relay: Relay,
        sender: str,
        timeout_seconds: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.relay = relay
        self.sender = sender
        self.timeout_seconds = timeout_seconds
        self._domain = sender_domain(sender)
        self._tls = tls or ssl.create_default_context()

    @property
    def where(self) -> str:
        return str(self.relay)

    def message(self, mail: Mail) -> EmailMessage:
        """The mail as it goes out: UTF-8 text, dated when written, a Message-ID in MAIL_FROM's
        domain."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = format_datetime(mail.written_at)
        message["Message-ID"] = f"<{mail.id}@{self._domain}>"
        message.set_content(mail.text, charset="utf-8")
        return message

    def send(self, mail: Mail) -> None:
        """Hand the mail over, or raise (smtplib's errors, OSError, ssl.SSLError)."""
        message = self.message(mail)
        relay = self.relay
        client: smtplib.SMTP
        if relay.security == "tls":
            client = smtplib.SMTP_SSL(
                relay.host, relay.port, timeout=self.timeout_seconds, context=self._tls
            )
        else:
            client = smtplib.SMTP(relay.host, relay.port, timeout=self.timeout_seconds)
        try:
            if relay.security == "starttls":
                client.starttls(context=self._tls)
            if relay.username:
                client.login(relay.username, relay.password)
            client.send_message(message)
        except BaseException:
            client.close()
            raise
        # Handed over: a relay that answers QUIT badly, or not at all, changes nothing.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        client.close()


def passing(error: BaseException) -> bool:
    """Whether the same mail may go through if tried again later: the relay answered 4xx
    (greylisting, a full queue, 421 closing), dropped or refused the connection, or did not
    answer in time. Not a 5xx, a certificate the relay's name or CAs refuse, a relay that
    offers no STARTTLS: trying again would fail the same way."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(400 <= code < 500 for code in codes)
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(error, smtplib.SMTPException | ssl.SSLError):
        return False
    return isinstance(error, OSError)  # refused, reset, unreachable, timed out


def describe(error: BaseException) -> str:
    """What went wrong, for the log: the relay's answer when there was one."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = sorted({f"{code} {_text(said)}" for code, said in error.recipients.values()})
        return f"recipient refused: {'; '.join(answers)}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__}: {error.smtp_code} {_text(error.smtp_error)}"
    return f"{type(error).__name__}: {error}"


def _text(said: bytes | str) -> str:
    return said.decode("utf-8", "replace") if isinstance(said, bytes) else said
