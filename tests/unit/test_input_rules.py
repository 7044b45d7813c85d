"""The wire contract's input rules as pure functions: text, nesting, clocks, zones, numbers."""

from __future__ import annotations

import pytest

from service.domain.quiet_hours import is_valid_timezone, parse_clock


@pytest.mark.parametrize(
    "text",
    [
        "\uff12\uff12:\uff10\uff10",  # fullwidth
        "\u0662\u0662:\u0660\u0660",  # Arabic-Indic
        "\u00b2\u00b2:00",  # superscript
        "2\u200b2:00",
        "24:00",
        "23:60",
        "7:00",
        "07:00 ",
        "+7:00",
    ],
)
def test_clocks_are_ascii_hh_mm(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock(text)


@pytest.mark.parametrize(
    "name",
    ["Europe", "America", "Etc", "A" * 256, "x" * 5000, "localtime", "posixrules", "Factory"],
)
def test_zone_directories_long_names_and_host_files_are_not_zones(name: str) -> None:
    assert is_valid_timezone(name) is False


@pytest.mark.parametrize("name", ["Europe/Berlin", "UTC", "Etc/UTC", "Asia/Kathmandu", "EST5EDT"])
def test_iana_zones_are_zones(name: str) -> None:
    assert is_valid_timezone(name) is True
