"""Invite codes: short, human-typable, hard to guess."""

from __future__ import annotations

import secrets
import unicodedata

# Crockford-style alphabet without I, L, O, U: nothing to confuse when read aloud or typed.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 8  # 32**8 ~ 1.1e12 codes
_LOOKALIKES = str.maketrans("OIL", "011")
# Cyrillic and Greek letters drawn as Latin ones, as a phone left in a Russian, Ukrainian or
# Greek layout types them, in their case: a small Greek nu is a v, its capital an N.
_LATIN_LOOKALIKES = str.maketrans(
    "\u0410\u0412\u0421\u0415\u041d\u0406\u0408\u041a\u041c\u041e\u0420\u0405\u0422\u0425"
    "\u0423\u051a\u051c"
    "\u0430\u0432\u0441\u0435\u043d\u0456\u0458\u043a\u043c\u043e\u0440\u0455\u0442\u0445"
    "\u0443\u051b\u051d"
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7"
    "\u03b1\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c7",
    "ABCEHIJKMOPSTXYQWabcehijkmopstxyqwABEZHIKMNOPTYXaikvoptx",
)
# What sits between or around a code that was pasted rather than typed: spaces of any kind and
# line breaks (Z*, Cc), invisible format characters such as a zero-width space (Cf), dashes of
# any kind (Pd: a text app's smart punctuation makes an en dash of "-") and the minus sign, and
# any other punctuation (P*), which no code contains: the full stop or the quotes of a sentence
# the code was copied out of.
_SEPARATORS = ("Z", "Cc", "Cf", "P")
_MINUS = "\u2212"


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalize(typed: str) -> str:
    """Accept what people type or paste: any case, full-width letters and digits (a Chinese
    or Japanese keyboard's full-width mode: read in NFKC), digits of any script (an Arabic,
    Persian or Hindi keyboard's own), Cyrillic and Greek letters drawn as Latin ones, spaces,
    line breaks, dashes or other punctuation of any kind, O for 0, I/L for 1."""
    typed = unicodedata.normalize("NFKC", typed)
    cleaned = "".join(_digit(char) for char in typed if not _separates(char))
    return cleaned.translate(_LATIN_LOOKALIKES).upper().translate(_LOOKALIKES)


def _digit(char: str) -> str:
    """A decimal digit of any script as its ASCII one; anything else as it is."""
    return str(unicodedata.decimal(char)) if unicodedata.category(char) == "Nd" else char


def _separates(char: str) -> bool:
    return char == _MINUS or unicodedata.category(char).startswith(_SEPARATORS)


def display(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"
