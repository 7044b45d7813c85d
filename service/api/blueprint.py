"""The blueprint every REST resource is declared on, and how it reads request bodies."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, NoReturn

import flask
import flask_smorest
import marshmallow as ma
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import UnsupportedMediaType

from schemas.base import NestedTooDeep, NumberTooLong
from schemas.errors import ProblemSchema
from service import wire_json
from service.domain.errors import ReachError
from service.errors import PROBLEM_MIMETYPE
from service.extensions import RETRY_AFTER, WAITED_OUT


class CompressedBody(ReachError):
    """A body sent with a Content-Encoding (gzip): the service reads bodies as sent, and
    RFC 9110 (8.4) answers a coding it does not undo with 415."""

    status = 415

    def __init__(self) -> None:
        super().__init__(
            "The body is compressed (Content-Encoding): send it uncompressed, with no "
            "Content-Encoding header."
        )


class NotJson(ReachError):
    """A body sent as JSON that is not: what is wrong, and where (400)."""

    def __init__(self, error: json.JSONDecodeError | UnicodeDecodeError) -> None:
        if isinstance(error, UnicodeDecodeError):
            where = f"it is not UTF-8 (byte {error.start})"
        elif error.msg.startswith("Bytes decoding error"):  # webargs' UnicodeDecodeError
            where = f"it is not UTF-8 (byte {error.pos})"
        else:
            where = f"{error.msg} at line {error.lineno} column {error.colno}"
        super().__init__(f"The body is not valid JSON: {where}.")


def _loads(text: str) -> Any:
    """`text` as JSON, refusing (422) a name given more than once in any of its objects."""
    body, twice = wire_json.read(text)
    if twice:
        raise ma.ValidationError(wire_json.given_once(twice))
    return body


class BodyParser(FlaskParser):
    """webargs' Flask parser, with a body not sent as JSON refused as 415, a body too deeply
    nested to parse refused as 400, and a byte order mark before the JSON ignored, as RFC 8259
    allows (some HTTP clients write one).

    webargs reads a body whose Content-Type is not JSON (text/plain, a form, none at all) as no
    body: a profile change answered 200 and changed nothing, a write 422 "Missing data" for
    fields it had sent. Only an empty body is no body, whatever its type says.

    A body with a Content-Encoding (gzip) is refused as 415 too: it is not read as sent. A body
    that is not JSON is a 400 saying what is wrong where, not only that it could not be read.

    `json.loads` recurses once per nested object or array: a body of some thousand `[` (a few
    KiB) raises RecursionError, which is a malformed body, not a server error. Shallower but
    still unreasonable nesting is refused by the schemas (`schemas.base.text_faults`).
    An integer longer than Python converts from text (4300 digits) raises a ValueError that
    is no JSONDecodeError: refused as 400 too. A name given twice in one object is refused as
    422 naming it: parsers differ on which value they keep, so an app's (or a proxy's) reading
    of the body could differ from the service's.
    """

    def load_querystring(self, req: flask.Request, schema: ma.Schema) -> Any:
        """The query, with a parameter given more than once refused (422) unless it is a list:
        `?status=sent&status=seen` answered the `sent` bids alone, as if the app had asked
        for those, and `?since=1&since=2` read 1.

        A parameter with an empty value (`?status=`) is one left out, on every operation: an
        app that builds its query from optional values writes an empty one for none, and
        `?before=` was the first page where `?status=` and `?limit=` were 422."""
        repeated = sorted(
            key
            for key, values in req.args.lists()
            if len(values) > 1
            and key in schema.fields
            and not isinstance(schema.fields[key], ma.fields.List)
        )
        if repeated:
            raise ma.ValidationError({key: ["Give this parameter once."] for key in repeated})
        given = MultiDict([(key, value) for key, value in req.args.items(multi=True) if value])
        return self._makeproxy(given, schema)

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not is_json_request(req):
            if req.get_data(cache=True):
                raise UnsupportedMediaType()
            return core.missing
        encoding = req.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity") and req.get_data(cache=True):
            raise CompressedBody()
        try:
            return _loads(req.get_data(cache=True).decode("utf-8-sig"))
        except RecursionError as exc:
            raise NestedTooDeep() from exc
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise  # webargs' own: refused as NotJson (`_handle_invalid_json_error`)
        except ValueError as exc:  # an integer of more digits than Python converts
            raise NumberTooLong() from exc

    def _handle_invalid_json_error(
        self,
        error: json.JSONDecodeError | UnicodeDecodeError,
        req: flask.Request,
        *args: Any,
        **kwargs: Any,
    ) -> NoReturn:
        raise NotJson(error) from error


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, with each request schema built once, where the route is declared.

    Given a schema class, webargs builds an instance of it for every request it parses
    (`Parser._get_schema`): marshmallow copies the declared fields each time, 20-40 µs of CPU in
    a hot loop and more under load, on every request that has a body or a query
    (bench/RESULTS.md, "What changed" 30). A schema given as an instance is used as it is; the
    service's schemas keep no state between loads, so one instance serves every request.
    """

    ARGUMENTS_PARSER = BodyParser()

    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Any:
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)

    def problem(self, status: int, description: str | None = None) -> Any:
        """Document an error the operation answers: a problem+json body, said `description`
        (HTTP's phrase if none); a 429 or 503 with its Retry-After header."""
        if description is None:
            name = WAITED_OUT.get(status) or HTTPStatus(status).name
            return self.alt_response(status, response=name)
        return self.alt_response(
            status,
            schema=ProblemSchema,
            description=description,
            content_type=PROBLEM_MIMETYPE,
            headers=RETRY_AFTER if status in WAITED_OUT else None,
        )
