"""Invite codes: short, human-typable, hard to guess."""

from __future__ import annotations

import secrets

# Crockford-style alphabet without I, L, O, U: nothing to confuse when read aloud or typed.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 8  # 32**8 ~ 1.1e12 codes
_LOOKALIKES = str.maketrans("OIL", "011")


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalize(typed: str) -> str:
    """Accept what people type: any case, spaces or dashes, O for 0, I/L for 1."""
    cleaned = typed.upper().replace("-", "").replace(" ", "")
    return cleaned.translate(_LOOKALIKES)


def display(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"
