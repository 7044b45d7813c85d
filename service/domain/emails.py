"""Email addresses as accounts know them: one form of each, however a keyboard typed it."""

from __future__ import annotations

import unicodedata


def normalize(email: str) -> str:
    """The form an address is stored and looked up in: without the spaces around it, in
    Unicode's compatibility form (NFKC: full-width letters and at sign, which a Chinese or
    Japanese keyboard types in full-width mode, are the ASCII ones; a letter and its combining
    accent, as text pasted from macOS has them, are the one composed letter), lower-cased."""
    return unicodedata.normalize("NFKC", compatible(email).lower())


def compatible(email: str) -> str:
    """The address trimmed, in NFKC, as typed otherwise: lower-casing can make a letter two
    ("İ" is "i" and a combining dot), which an address's syntax would not take."""
    return unicodedata.normalize("NFKC", email).strip()


def stored_forms(email: str) -> tuple[str, ...]:
    """The forms an account of this address may be stored in: `normalize`'s, and the form of
    addresses stored before it (the address as typed, trimmed and lower-cased)."""
    forms = dict.fromkeys((normalize(email), email.strip().lower()))
    return tuple(forms)
