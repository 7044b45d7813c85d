"""The flask-smorest Api: HTTP errors as problem+json, and the shapes of the OpenAPI document."""

from __future__ import annotations

from typing import Any

from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import get_fields
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from flask import Flask
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

from schemas.base import Variants
from schemas.errors import ProblemSchema
from service.errors import from_http_exception


class ShapeConverter(OpenAPIConverter):
    """A schema of output fields only (a response's) lists every field as required: each is in
    every answer, null when it has no value, and models generated from the document need not
    treat `id` or `status` as optional. A field sent only sometimes says so in its metadata
    (`"optional": True`).

    Such a schema does not forbid other fields (`additionalProperties: false`, which the
    schemas' `unknown = RAISE` gives): answers may gain fields (docs/mobile.md), and a decoder
    generated from a closed shape (swift-openapi-generator's) fails on the first new one.
    Request bodies stay closed: the service refuses unknown fields in them."""

    def schema2jsonschema(self, schema: Any) -> dict[str, Any]:
        jsonschema: dict[str, Any] = super().schema2jsonschema(schema)
        fields = get_fields(schema)
        if fields and all(field.dump_only for field in fields.values()):
            jsonschema.pop("additionalProperties", None)
        return jsonschema

    def fields2jsonschema(self, fields: Any, *, partial: Any = None) -> dict[str, Any]:
        schema: dict[str, Any] = super().fields2jsonschema(fields, partial=partial)
        if fields and all(field.dump_only for field in fields.values()):
            schema["required"] = sorted(
                name
                for name, field in fields.items()
                if not field.metadata.get("optional") and name in schema["properties"]
            )
        return schema

    def field2property(self, field: Any) -> dict[str, Any]:
        """`Variants` as oneOf its shapes (an open set's `other` last), told apart by their
        discriminator; a nullable field's enum names null too (as apispec does for a OneOf
        validator, not for an enum given in metadata): else null, which the field is sent as,
        breaks it."""
        if isinstance(field, Variants):
            return self._variants(field)
        prop: dict[str, Any] = super().field2property(field)
        types = prop.get("type")
        nullable = isinstance(types, list) and "null" in types
        if nullable and "enum" in prop and None not in prop["enum"]:
            prop["enum"] = [*prop["enum"], None]
        return prop

    def _variants(self, field: Variants) -> dict[str, Any]:
        refs = {
            value: self.resolve_nested_schema(schema) for value, schema in field.variants.items()
        }
        shapes = list({ref["$ref"]: ref for ref in refs.values()}.values())
        mapping = {value: ref["$ref"] for value, ref in refs.items()}
        if field.other is not None:
            # Last: a decoder that tries the shapes in turn reaches it only for a value no
            # other shape takes; one that routes by the mapping finds no entry for it.
            shapes.append(self.resolve_nested_schema(field.other))
        prop: dict[str, Any] = {
            "oneOf": shapes,
            "discriminator": {"propertyName": field.discriminator, "mapping": mapping},
        }
        if field.dump_only:
            prop["readOnly"] = True
        return prop


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again (the body's `retry_after` too)",
        "schema": {"type": "integer", "minimum": 1},
    }
}
# The shared responses of the errors a client waits out, each with its Retry-After header.
WAITED_OUT = {429: "RATE_LIMITED", 503: "UNAVAILABLE"}
_WAITED_OUT_SAYS = {
    429: "Too many requests: wait Retry-After seconds, then try again",
    503: "Briefly unavailable (the database is away or overloaded): wait Retry-After seconds,"
    " then try again, a write with the same client_id",
}


class ShapePlugin(MarshmallowPlugin):
    """Also documents the errors any operation may answer: 503 while the database is away,
    413 for a body over MAX_CONTENT_LENGTH (every request's body is read first, one the
    operation takes none of too: `service.bodies.read_first`), and for an operation that takes
    a body, 400 (not JSON, or nested too deeply) and 415 (sent with a type other than JSON, or
    compressed)."""

    Converter = ShapeConverter

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().operation_helper(path=path, operations=operations, **kwargs)
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses.setdefault("400", "BAD_REQUEST")
                responses.setdefault("415", "UNSUPPORTED_MEDIA_TYPE")
            responses.setdefault("413", "REQUEST_ENTITY_TOO_LARGE")
            responses.setdefault("503", WAITED_OUT[503])


class ReachApi(Api):
    """flask-smorest's Api, answering every HTTP error in the problem+json shape."""

    ERROR_SCHEMA = ProblemSchema

    def __init__(self, app: Flask | None = None) -> None:
        super().__init__(app, spec_kwargs={"marshmallow_plugin": ShapePlugin()})

    def _register_responses(self) -> None:
        """Error responses are documented as they are sent: application/problem+json."""
        self.DEFAULT_RESPONSE_CONTENT_TYPE = "application/problem+json"
        try:
            super()._register_responses()
        finally:
            del self.DEFAULT_RESPONSE_CONTENT_TYPE
        for status, name in WAITED_OUT.items():
            response = {
                "description": _WAITED_OUT_SAYS[status],
                "schema": self.ERROR_SCHEMA,
                "headers": RETRY_AFTER,
            }
            prepare_response(response, self.spec, "application/problem+json")
            self.spec.components.response(name, response, lazy=True)

    def _register_pagination_header(self) -> None:
        """Not registered: flask-smorest's page-number pagination (its X-Pagination header and
        PaginationMetadata schema) is not the API's, whose lists page by cursor (`next`,
        `before`). Registered, the schema was in the document, used by no operation, and every
        generator made a model of it."""

    def handle_http_exception(self, error: HTTPException) -> Any:
        body, headers = from_http_exception(error)
        return body, body["status"], {**headers, "Content-Type": "application/problem+json"}
