"""The base schema and field helpers every wire schema uses."""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from service.domain.errors import ReachError

# Objects and arrays inside one another, the body itself counting as one: every payload the
# service takes is at most 3 deep; far deeper is never a phone's data (and a recursive walk
# of it would overflow the stack).
MAX_NESTING = 32
# The longest integer `json.loads` reads (Python's limit on int-from-text conversion).
MAX_DIGITS = sys.get_int_max_str_digits()
NUL_MESSAGE = "Text may not contain NUL."
SURROGATE_MESSAGE = "Text may not contain a lone surrogate (U+D800-U+DFFF): send valid Unicode."
BINARY_MESSAGE = "Send JSON values, not binary data."
UUID_MESSAGE = "Not a valid UUID."
_SURROGATE = re.compile("[\ud800-\udfff]")


class NestedTooDeep(ReachError):
    """A body with objects or arrays nested deeper than MAX_NESTING levels (400)."""

    def __init__(self) -> None:
        super().__init__(
            f"The body is nested too deeply: at most {MAX_NESTING} levels of objects and arrays."
        )


class NumberTooLong(ReachError):
    """A body with an integer longer than Python reads (400): well-formed JSON, but
    `json.loads` refuses it with a plain ValueError (sys.get_int_max_str_digits)."""

    def __init__(self) -> None:
        super().__init__(f"The body holds a number too long to read: at most {MAX_DIGITS} digits.")


class Schema(ma.Schema):
    """Rejects unknown fields; timestamps are UTC ISO-8601 with `Z`."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

    @ma.pre_load
    def _refuse_unstorable_text(self, data: Any, **_: Any) -> Any:
        """Refuse (422) text that cannot be stored: NUL (PostgreSQL text cannot hold it) and
        lone surrogates (no UTF-8 encoding: the database driver and the password hasher fail
        on them), in any key or value; binary data, which no JSON body holds (a socket payload
        can: marshmallow takes bytes as text, NUL included); an id (a UUID field, in a body or
        a query) not in ASCII; and (400) a body nested deeper than MAX_NESTING."""
        if not isinstance(data, Mapping):
            text_faults(data)
            return data
        errors: dict[str, list[str]] = {}
        for key, value in data.items():
            faults = text_faults(key) | text_faults(value, depth=2)
            if faults:
                errors[str(key)] = sorted(faults)
            elif _uuid_not_in_ascii(self.fields.get(key), value):
                errors[str(key)] = [UUID_MESSAGE]
        if errors:
            raise ma.ValidationError(errors)
        return data


def _uuid_not_in_ascii(field: fields.Field | None, value: Any) -> bool:
    """An id written in other digits than 0-9 ("\\u0661"): uuid.UUID reads any script's digits,
    and took it for the id in ASCII."""
    return isinstance(field, fields.UUID) and isinstance(value, str) and not value.isascii()


def text_faults(value: Any, *, depth: int = 1) -> set[str]:
    """The messages for the unstorable text (or binary data) anywhere in `value` (at nesting
    level `depth`).

    Iterative, so no payload can exhaust the stack; raises NestedTooDeep past MAX_NESTING.
    """
    faults: set[str] = set()
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                faults.add(NUL_MESSAGE)
            if not item.isascii() and _SURROGATE.search(item):
                faults.add(SURROGATE_MESSAGE)
        elif isinstance(item, bytes | bytearray):
            faults.add(BINARY_MESSAGE)
        elif isinstance(item, Mapping | list | tuple):
            if level > MAX_NESTING:
                raise NestedTooDeep()
            children = [*item.keys(), *item.values()] if isinstance(item, Mapping) else item
            stack.extend((child, level + 1) for child in children)
    return faults


def iso(moment: datetime) -> str:
    """A timestamp as the wire shows it: UTC, microseconds, `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class UTCDateTime(fields.DateTime):
    """Serialises as `2026-01-02T03:04:05.123456Z`; accepts any offset, stores UTC."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return iso(value)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str) and value.endswith("z"):
            # RFC 3339 (OpenAPI's date-time) lets `Z` be lower case; Python reads only `Z`.
            value = value[:-1] + "Z"
        parsed: datetime = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is None:
            raise self.make_error("invalid", input=value, obj_type="datetime with a time zone")
        try:
            return parsed.astimezone(UTC)
        except OverflowError as exc:  # 0001-01-01T00:00:00+14:00 is before the year 1 in UTC
            raise self.make_error(
                "invalid", input=value, obj_type="datetime in years 1-9999 in UTC"
            ) from exc


def text(max_length: int, *, required: bool = True, min_length: int = 1) -> fields.String:
    return fields.String(
        required=required, validate=validate.Length(min=min_length, max=max_length)
    )


class StrictInteger(fields.Integer):
    """An integer in a JSON body: a JSON integer, or a number with no fraction (30.0 is 30, as
    JSON Schema's `integer` has it); a fraction (4.9), a string ("30") or a boolean is refused,
    never truncated or converted (query strings, which are text, use QueryInteger)."""

    def _validated(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


_ASCII_INTEGER = re.compile(r"-?[0-9]+")
ASCII_DIGITS_MESSAGE = "Not a valid integer: write it in the digits 0-9."


def read_integer(value: str) -> int:
    """An integer written as the API writes one: ASCII digits, a minus sign at most. Python's
    int() reads more (other scripts' digits, "\\u0661" is 1; spaces around, a plus sign,
    underscores), which no client means; ValueError for anything else."""
    if not _ASCII_INTEGER.fullmatch(value):
        raise ValueError(f"not an integer in ASCII digits: {value!r}")
    return int(value)


class QueryInteger(fields.Integer):
    """An integer in a query string (text): written in ASCII digits (`read_integer`), or
    refused as not an integer."""

    default_error_messages = {"invalid": ASCII_DIGITS_MESSAGE}

    def _validated(self, value: Any) -> int:
        if isinstance(value, str):
            try:
                value = read_integer(value)
            except ValueError as exc:
                raise self.make_error("invalid", input=value) from exc
        return super()._validated(value)


class StrictBoolean(fields.Boolean):
    """A boolean in a JSON body: `true` or `false`, never "yes", "true", 1 or 0."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid", input=value)


class Trimmed(fields.String):
    """A string loaded without the spaces around it, before its validators run."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        loaded: str = super()._deserialize(value, attr, data, **kwargs)
        return loaded.strip()


# What a screen shows as nothing: controls, format characters (zero-width space and joiners,
# the byte order mark, direction marks), separators, and the letters and symbols drawn blank
# (Hangul fillers, the blank Braille pattern).
_SHOWS_NOTHING = frozenset({"Cc", "Cf", "Zl", "Zp", "Zs"})
_DRAWN_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def shows_something(value: str) -> bool:
    """Whether `value` has a character a screen draws: not only spaces and invisible ones."""
    return any(
        char not in _DRAWN_BLANK and unicodedata.category(char) not in _SHOWS_NOTHING
        for char in value
    )


def _shown(value: str) -> None:
    if value and not shows_something(value):
        raise ma.ValidationError("Write something visible: this is only blank characters.")


class OptionalText(Trimmed):
    """Free text a person may leave out (a note, a topic): trimmed, and None when it shows
    nothing (spaces or invisible characters would push, list and export as a blank one)."""

    def deserialize(self, value: Any, attr: Any = None, data: Any = None, **kwargs: Any) -> Any:
        loaded = super().deserialize(value, attr, data, **kwargs)
        return loaded if loaded is None or shows_something(loaded) else None


def optional_text(max_length: int, **metadata: Any) -> OptionalText:
    """An OptionalText of at most `max_length` characters (once trimmed)."""
    return OptionalText(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=max_length),
        metadata=metadata,
    )


_BREAKS_OR_CONTROLS = frozenset({"Cc", "Zl", "Zp"})  # Zl, Zp: Unicode's line and paragraph breaks


def _one_line(value: str) -> None:
    if any(unicodedata.category(char) in _BREAKS_OR_CONTROLS for char in value):
        raise ma.ValidationError("A name may not hold line breaks, tabs or control characters.")


def name(max_length: int, *, required: bool = True) -> fields.String:
    """A person's name as others see it (the partner's push titles): trimmed, never blank (nor
    only invisible), and on one line, with no control character (a format character such as
    the zero-width joiner of an emoji sequence is fine)."""
    return Trimmed(
        required=required,
        validate=[validate.Length(min=1, max=max_length), _shown, _one_line],
    )


class Variants(fields.Nested):
    """An object of one of several shapes, told apart by its `discriminator` field: dumped
    with `nested` (the shapes' common base), documented as one of `variants` (the value of
    the discriminator -> the schema of that shape), or as `other` when the set is open: the
    shape of any value `variants` does not name (one a later version may send)."""

    def __init__(
        self,
        nested: type[Schema],
        *,
        discriminator: str,
        variants: Mapping[str, type[Schema]],
        other: type[Schema] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(nested, **kwargs)
        self.discriminator = discriminator
        self.variants = dict(variants)
        self.other = other


class PageArgsSchema(Schema):
    """`limit` (1..200, default 50) and `before` (the `next` of the previous page)."""

    limit = QueryInteger(load_default=50, validate=validate.Range(min=1, max=200))
    before = fields.String(load_default=None, validate=validate.Length(max=200))
