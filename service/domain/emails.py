"""Email addresses as accounts know them: one form of each, however a keyboard typed it."""

from __future__ import annotations

import unicodedata

# The prefix of a domain label in its ASCII form (an IDNA A-label: "xn--bcher-kva" is "bücher").
_A_LABEL = "xn--"


def normalize(email: str) -> str:
    """The form an address is stored and looked up in: without the spaces around it, in
    Unicode's compatibility form (NFKC: full-width letters and at sign, which a Chinese or
    Japanese keyboard types in full-width mode, are the ASCII ones; a letter and its combining
    accent, as text pasted from macOS has them, are the one composed letter), lower-cased, and
    its domain in Unicode ("xn--bcher-kva.example", as some apps and mail clients show it, is
    the same mailbox as "bücher.example")."""
    return _unicode_domain(_folded(email))


def compatible(email: str) -> str:
    """The address trimmed, in NFKC, as typed otherwise: lower-casing can make a letter two
    ("İ" is "i" and a combining dot), which an address's syntax would not take."""
    return unicodedata.normalize("NFKC", email).strip()


def stored_forms(email: str) -> tuple[str, ...]:
    """The forms an account of this address may be stored in: `normalize`'s; its domain in
    punycode and the address as folded then (as stored before domains were kept in Unicode);
    and the form of addresses stored before NFKC (as typed, trimmed and lower-cased)."""
    today = normalize(email)
    forms = dict.fromkeys((today, _ascii_domain(today), _folded(email), email.strip().lower()))
    return tuple(forms)


def _folded(email: str) -> str:
    """Trimmed, NFKC and lower-cased: the stored form before domains were kept in Unicode."""
    return unicodedata.normalize("NFKC", compatible(email).lower())


def _unicode_domain(email: str) -> str:
    local, at, domain = email.rpartition("@")
    if not at or _A_LABEL not in domain:
        return email
    return local + at + ".".join(_unicode_label(label) for label in domain.split("."))


def _unicode_label(label: str) -> str:
    """An A-label's Unicode, folded as the rest of the address is; any other label as it is,
    and so is one that is not a well-formed A-label: it does not encode back to itself, or its
    Unicode is ASCII, holds control characters, or has a dot once folded."""
    if not label.startswith(_A_LABEL):
        return label
    encoded = label[len(_A_LABEL) :]
    try:
        decoded = encoded.encode("ascii").decode("punycode")
        if decoded.encode("punycode").decode("ascii") != encoded:
            return label
    except UnicodeError:
        return label
    folded = unicodedata.normalize("NFKC", decoded.lower())
    if folded.isascii() or not folded.isprintable() or "." in folded or "@" in folded:
        return label
    return folded


def _ascii_domain(email: str) -> str:
    """The address with each non-ASCII label of its domain as its A-label."""
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii():
        return email
    labels = [
        label if label.isascii() else _A_LABEL + label.encode("punycode").decode("ascii")
        for label in domain.split(".")
    ]
    return local + at + ".".join(labels)
