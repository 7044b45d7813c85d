"""An address's one stored form (`service.domain.emails`), however its domain was written."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.domain import emails

PROPERTIES = settings(max_examples=300, derandomize=True, deadline=None)

# What a domain's labels hold: letters, marks and digits of any script, and hyphens.
labels = st.text(
    st.characters(whitelist_categories=("L", "M", "N"), whitelist_characters="-"),
    min_size=1,
    max_size=12,
)


@given(local=labels, domain=st.lists(labels, min_size=1, max_size=3))
@example(local="ana", domain=["b\u00fccher", "example"])
@example(local="ana", domain=["\uff58\uff4e\uff0d\uff0dabc"])  # full-width "xn--abc"
@PROPERTIES
def test_a_domain_in_unicode_or_in_punycode_is_one_address(local: str, domain: list[str]) -> None:
    """The stored form is a fixed point, and the domain's A-labels are one of its stored forms
    (an account stored in them before is still found)."""
    email = local + "@" + ".".join(domain)
    stored = emails.normalize(email)
    assert emails.normalize(stored) == stored
    assert all(emails.normalize(form) == stored for form in emails.stored_forms(stored))


@pytest.mark.parametrize(
    "email",
    [
        "kim@xn--zz--.test",  # decodes to ASCII alone
        "kim@xn--abc.test",  # decodes to control characters
        "kim@xn--.test",
        "kim@xn--b\u00fc.test",  # not ASCII
        "kim@xn--99999999999.test",  # out of Unicode's range
    ],
)
def test_what_is_not_an_a_label_is_kept_as_it_is(email: str) -> None:
    assert emails.normalize(email) == email
