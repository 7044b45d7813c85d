"""The wire contract's input rules as pure functions: text, nesting, clocks, zones, numbers."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

import marshmallow
import pytest
from marshmallow import fields

import schemas
from schemas.base import (
    BINARY_MESSAGE,
    MAX_NESTING,
    NUL_MESSAGE,
    SURROGATE_MESSAGE,
    NestedTooDeep,
    Schema,
    StrictBoolean,
    StrictInteger,
    text_faults,
)
from service.domain.quiet_hours import is_valid_timezone, parse_clock


def nest(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_text_faults_name_nul_and_lone_surrogates_anywhere() -> None:
    assert text_faults({"a": ["ok", {"b": "fine \U0001fac2"}]}) == set()
    assert text_faults({"a": ["x\x00"]}) == {NUL_MESSAGE}
    assert text_faults({"a": [{"b": "\udfff"}]}) == {SURROGATE_MESSAGE}
    assert text_faults({"\ud800": 1, "n": "\x00"}) == {NUL_MESSAGE, SURROGATE_MESSAGE}
    assert text_faults({"a": [b"ok"], "b": bytearray(b"\x00")}) == {BINARY_MESSAGE}


def test_nesting_is_walked_without_recursion_and_refused_past_the_limit() -> None:
    assert text_faults(nest(MAX_NESTING)) == set()
    with pytest.raises(NestedTooDeep) as refused:
        text_faults(nest(MAX_NESTING + 1))
    assert refused.value.status == 400 and refused.value.code == "bad_request"
    # Far past the interpreter's recursion limit: refused, not a RecursionError.
    with pytest.raises(NestedTooDeep):
        text_faults(nest(sys.getrecursionlimit() * 5))


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


@pytest.mark.parametrize(
    "name", ["Europe/Berlin", "UTC", "Asia/Kathmandu", "America/Indiana/Knox", "Antarctica/Troll"]
)
def test_iana_place_names_are_zones(name: str) -> None:
    assert is_valid_timezone(name) is True


@pytest.mark.parametrize(
    "name", ["EST", "MST", "PST8PDT", "EST5EDT", "GMT", "Etc/UTC", "Etc/GMT-14", "US/Eastern", "NZ"]
)
def test_abbreviations_offsets_and_legacy_names_are_not_zones(name: str) -> None:
    assert is_valid_timezone(name) is False


class Numbers(Schema):
    count = StrictInteger()
    flag = StrictBoolean()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("count", 4.9),
        ("count", "4"),
        ("count", True),
        ("count", float("nan")),
        ("count", float("inf")),
        ("flag", 1),
        ("flag", "true"),
        ("flag", "yes"),
        ("flag", None),
    ],
)
def test_strict_fields_refuse_other_json_types(field: str, value: Any) -> None:
    with pytest.raises(marshmallow.ValidationError) as refused:
        Numbers().load({field: value})
    assert field in refused.value.messages_dict


def test_strict_fields_keep_what_json_means() -> None:
    assert Numbers().load({"count": 7, "flag": False}) == {"count": 7, "flag": False}
    assert Numbers().load({"count": 30.0}) == {"count": 30}


def _schemas() -> list[type[marshmallow.Schema]]:
    for module in pkgutil.iter_modules(schemas.__path__):
        importlib.import_module(f"schemas.{module.name}")
    found, todo = [], [Schema]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(current.__subclasses__())
    return [s for s in found if s.__module__.startswith("schemas.")]


def test_every_integer_and_boolean_a_body_loads_is_strict() -> None:
    """Body schemas use StrictInteger and StrictBoolean; only query-string schemas
    (`...ArgsSchema`, whose values arrive as text) read numbers from strings. ProblemSchema
    describes error responses and is never loaded."""
    loose = []
    for schema in _schemas():
        if schema.__name__.endswith("ArgsSchema") or schema.__name__ == "ProblemSchema":
            continue
        for name, field in schema().load_fields.items():
            if isinstance(field, fields.Integer | fields.Float) and not isinstance(
                field, StrictInteger
            ):
                loose.append(f"{schema.__name__}.{name}")
            if isinstance(field, fields.Boolean) and not isinstance(field, StrictBoolean):
                loose.append(f"{schema.__name__}.{name}")
    assert loose == []
