"""A local SMTP stand-in (aiosmtpd, in a thread): records what it is sent, or refuses it."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"
Security = Literal["none", "starttls", "tls"]


@dataclass(frozen=True)
class Received:
    """One mail the stand-in accepted: the message as parsed, and its envelope."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: tuple[str, ...]
    login: str | None  # the user it signed in as, if it did
    encrypted: bool  # sent over TLS (from the start or after STARTTLS)


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def self_signed_certificate(directory: Path) -> Certificate:
    """Make one in `directory`: a client trusts it by taking `cert` as its CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reach smtp stand-in")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    made = Certificate(directory / "smtp-standin.pem", directory / "smtp-standin.key")
    made.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    made.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return made


class _Controller(Controller):
    """aiosmtpd's threaded controller on a socket bound beforehand (a free port, no race)."""

    def __init__(self, handler: Any, listening: socket.socket, **kwargs: Any) -> None:
        super().__init__(handler, hostname=HOST, port=listening.getsockname()[1], **kwargs)
        self._listening = listening

    def _create_server(self) -> Any:
        return self.loop.create_server(
            self._factory_invoker, sock=self._listening, ssl=self.ssl_context
        )


class SmtpStandIn:
    """The stand-in relay. `security` as SMTP_URL means it: "none" (smtp:// without
    credentials), "starttls" (smtp:// with them: STARTTLS required before AUTH and MAIL),
    "tls" (smtps://); the last two need a `certificate` and `credentials`."""

    def __init__(
        self,
        security: Security = "none",
        credentials: tuple[str, str] | None = None,
        certificate: Certificate | None = None,
    ) -> None:
        if security != "none" and (certificate is None or credentials is None):
            raise ValueError(f"a {security} stand-in needs a certificate and credentials")
        self.security = security
        self.credentials = credentials
        self.refused = 0  # mails answered with the refusal
        self._refusal: str | None = None
        self._refusals_left: int | None = None  # None: every mail until accept()
        self._received: list[Received] = []
        self._arrived = threading.Condition()
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((HOST, 0))
        listening.listen()
        self.port = int(listening.getsockname()[1])
        options: dict[str, Any] = {"authenticator": self._authenticate}
        if security == "starttls" and certificate is not None:
            options.update(
                tls_context=certificate.server_context(), require_starttls=True, auth_required=True
            )
        elif security == "tls" and certificate is not None:
            # The whole connection is TLS, but aiosmtpd offers AUTH only after STARTTLS unless
            # told otherwise (and then will not require it: Received.login says who signed in).
            options.update(ssl_context=certificate.server_context(), auth_require_tls=False)
        self._controller = _Controller(self, listening, **options)

    def start(self) -> SmtpStandIn:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    @property
    def url(self) -> str:
        """SMTP_URL for this stand-in (with its credentials, percent-encoded)."""
        scheme = "smtps" if self.security == "tls" else "smtp"
        if self.credentials is None:
            return f"{scheme}://{HOST}:{self.port}"
        user, password = (quote(part, safe="") for part in self.credentials)
        return f"{scheme}://{user}:{password}@{HOST}:{self.port}"

    def refuse(
        self, answer: str = "554 5.7.1 refused by the stand-in", times: int | None = None
    ) -> None:
        """Answer every mail's DATA with `answer` (451 ... for a passing refusal) from now on,
        or only the next `times` mails' and accept those after them."""
        with self._arrived:
            self._refusal = answer
            self._refusals_left = times

    def accept(self) -> None:
        with self._arrived:
            self._refusal = None
            self._refusals_left = None

    def received(self) -> list[Received]:
        with self._arrived:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Every mail accepted, once `count` of them have arrived; fails after `timeout` s."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._received) >= count, timeout):
                raise AssertionError(
                    f"{len(self._received)} of {count} mails arrived within {timeout} s"
                )
            return list(self._received)

    # aiosmtpd's handler hook, in the stand-in's event loop thread.
    async def handle_DATA(  # noqa: N802 (aiosmtpd's name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        # Lines as a mailbox stores them (the wire's CRLF as newlines).
        content = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        message = BytesParser(policy=default_policy).parsebytes(content)
        assert isinstance(message, EmailMessage)
        transport = server.transport
        encrypted = transport is not None and transport.get_extra_info("ssl_object") is not None
        with self._arrived:
            if self._refusal is not None:
                refusal = self._refusal
                self.refused += 1
                if self._refusals_left is not None:
                    self._refusals_left -= 1
                    if self._refusals_left == 0:
                        self._refusal = self._refusals_left = None
                return refusal
            self._received.append(
                Received(
                    message=message,
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    login=session.auth_data if session.authenticated else None,
                    encrypted=encrypted,
                )
            )
            self._arrived.notify_all()
        return "250 2.0.0 OK"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and self.credentials is not None:
            given = (data.login.decode(), data.password.decode())
            if given == self.credentials:
                return AuthResult(success=True, auth_data=given[0])
        return AuthResult(success=False, handled=False)
