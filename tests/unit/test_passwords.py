"""Passwords are hashed in NFKC form; an unknown email's sign-in costs what a member's does."""

from __future__ import annotations

import unicodedata

import pytest
from argon2 import PasswordHasher, extract_parameters, profiles

from service.security import passwords


def test_the_unknown_account_hash_has_the_hashers_own_parameters() -> None:
    # A hash with other parameters (cheaper, or dearer) would tell unknown emails apart by time.
    assert not PasswordHasher().check_needs_rehash(passwords._DUMMY_HASH)  # as deployed
    assert not passwords.needs_rehash(passwords._unknown_hash)  # as hashed here (tests/conftest)


def test_hashing_with_other_parameters_checks_unknown_emails_with_them_too() -> None:
    try:
        passwords.hash_with(profiles.RFC_9106_LOW_MEMORY)  # argon2-cffi's defaults, deployed
        assert passwords._unknown_hash == passwords._DUMMY_HASH
        made = passwords.hash_password("correct horse")
        assert not PasswordHasher().check_needs_rehash(made)
        assert passwords.verify_password(made, "correct horse") is True
        passwords.hash_with(profiles.CHEAPEST)
        cheap = passwords.hash_password("correct horse")
        assert extract_parameters(cheap) == profiles.CHEAPEST
        assert extract_parameters(passwords._unknown_hash) == profiles.CHEAPEST
        assert passwords.check_password(made, "correct horse") == passwords.Checked(True, True)
        assert passwords.verify_password(None, "correct horse") is False
    finally:
        passwords.hash_with(profiles.CHEAPEST)


def test_an_unknown_email_never_signs_in() -> None:
    assert passwords.verify_password(None, "reach-timing-equaliser") is False
    assert passwords.verify_password(None, "anything else") is False
    member = passwords.hash_password("correct horse")
    assert passwords.verify_password(member, "correct horse") is True


# One password typed two ways: composed accents, and letters with combining accents.
COMPOSED = "cr\u00e8me br\u00fbl\u00e9e \u00e0 deux"
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


def test_the_hash_is_of_the_nfkc_form() -> None:
    assert PasswordHasher().verify(passwords.hash_password(DECOMPOSED), COMPOSED)
    wide = passwords.hash_password("\uff30\uff29\uff2e 1234 long enough")
    assert PasswordHasher().verify(wide, "PIN 1234 long enough")


def test_an_unknown_email_costs_what_a_wrong_password_does_however_it_was_typed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A password not in NFKC form is checked twice (normalised, then as typed, for a hash
    made before passwords were normalised), for an unknown email too: else the time a sign-in
    takes would tell which emails have accounts."""
    checked: list[str] = []
    verify = PasswordHasher.verify

    def counted(self: PasswordHasher, stored: str, password: str) -> bool:
        checked.append(stored)
        return verify(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", counted)
    member = passwords.hash_password("another password entirely")
    counts = []
    for typed in (COMPOSED, DECOMPOSED):
        for stored in (member, None):
            checked.clear()
            assert passwords.check_password(stored, typed) == passwords.Checked(False)
            counts.append(len(checked))
    assert counts == [1, 1, 2, 2]


def test_a_hash_of_the_password_as_typed_matches_and_is_stale() -> None:
    legacy = PasswordHasher().hash(DECOMPOSED)
    assert passwords.check_password(legacy, DECOMPOSED) == passwords.Checked(True, stale=True)
    assert passwords.check_password(legacy, COMPOSED) == passwords.Checked(False)
    made = passwords.hash_password(DECOMPOSED)
    for typed in (COMPOSED, DECOMPOSED):
        assert passwords.check_password(made, typed) == passwords.Checked(True, stale=False)
