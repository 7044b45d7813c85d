"""What a per-address limit counts as one address (service.extensions.address_key)."""

from __future__ import annotations

import pytest

from service.extensions import address_key


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:7:9::1", "2001:db8:7:9::/64"),
        ("2001:DB8:7:9:ffff:1:2:3", "2001:db8:7:9::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),  # an IPv4 client on a dual-stack socket
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_address_counts_as_its_64(address: str, key: str) -> None:
    assert address_key(address) == key
