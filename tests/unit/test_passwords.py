"""The hash an unknown email's sign-in is checked against costs what a member's does."""

from __future__ import annotations

from service.security import passwords


def test_the_unknown_account_hash_has_the_hashers_own_parameters() -> None:
    # A hash with other parameters (cheaper, or dearer) would tell unknown emails apart by time.
    assert not passwords.needs_rehash(passwords._DUMMY_HASH)


def test_an_unknown_email_never_signs_in() -> None:
    assert passwords.verify_password(None, "reach-timing-equaliser") is False
    assert passwords.verify_password(None, "anything else") is False
    member = passwords.hash_password("correct horse")
    assert passwords.verify_password(member, "correct horse") is True
