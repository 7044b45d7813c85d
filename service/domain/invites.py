"""Invite codes: short, human-typable, hard to guess."""

from __future__ import annotations

import secrets
import unicodedata

# Crockford-style alphabet without I, L, O, U: nothing to confuse when read aloud or typed.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 8  # 32**8 ~ 1.1e12 codes
_LOOKALIKES = str.maketrans("OIL", "011")
# What sits between or around a code that was pasted rather than typed: spaces of any kind and
# line breaks (Z*, Cc), invisible format characters such as a zero-width space (Cf), and dashes
# of any kind (Pd: a text app's smart punctuation makes an en dash of "-"), and the minus sign.
_SEPARATORS = ("Z", "Cc", "Cf", "Pd")
_MINUS = "\u2212"


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalize(typed: str) -> str:
    """Accept what people type or paste: any case, full-width letters and digits (a Chinese
    or Japanese keyboard's full-width mode: read in NFKC), digits of any script (an Arabic,
    Persian or Hindi keyboard's own), spaces, line breaks or dashes of any kind, O for 0, I/L
    for 1."""
    typed = unicodedata.normalize("NFKC", typed)
    cleaned = "".join(_digit(char) for char in typed if not _separates(char))
    return cleaned.upper().translate(_LOOKALIKES)


def _digit(char: str) -> str:
    """A decimal digit of any script as its ASCII one; anything else as it is."""
    return str(unicodedata.decimal(char)) if unicodedata.category(char) == "Nd" else char


def _separates(char: str) -> bool:
    return char == _MINUS or unicodedata.category(char).startswith(_SEPARATORS)


def display(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"
