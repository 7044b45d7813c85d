"""Passwords as accounts know them: one form of each, however a keyboard typed it."""

from __future__ import annotations

import unicodedata


def normalize(password: str) -> str:
    """The form a password is hashed and checked in: Unicode's compatibility form (NFKC), as
    NIST SP 800-63B asks. An accent typed as a separate combining mark (text from macOS, some
    iOS input methods) is the composed letter; full-width letters and digits (a Chinese or
    Japanese keyboard in full-width mode) are the ASCII ones."""
    return unicodedata.normalize("NFKC", password)


def length(password: str) -> int:
    """How many characters a password has, counted once normalised: the same password has the
    same length whichever way it was typed, so a rule on it takes or refuses it on every
    keyboard (a sign-in takes every form of a password the sign-up took)."""
    return len(normalize(password))
