"""Every answer the API gives is one its operation documents in /api/v1/openapi.json: its
status, its media type and its body (fields, types, enums, formats, null where allowed)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import requests

from tests.support.client import ApiClient

# Not an operation's answers: a method the path does not have (405), a request line or headers
# the server refuses before any route (414, 431), and our own failure (500, the `default`).
NOT_AN_OPERATIONS = frozenset({405, 414, 431, 500})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    pattern: re.Pattern[str]
    responses: dict[str, Any]


@dataclass(frozen=True)
class Document:
    doc: dict[str, Any]
    operations: tuple[Operation, ...]
    # The components as answers are checked against: an answer's shape, which the document
    # leaves open to fields a later version adds, is closed here, so an answer with a field
    # the document does not list is caught.
    checked: dict[str, Any] = field(default_factory=dict)
    # A validator per response schema, made once: each compiles the components' refs as it goes.
    validators: dict[str, jsonschema.Draft202012Validator] = field(default_factory=dict)

    def operation(self, method: str, path: str) -> Operation | None:
        return next(
            (op for op in self.operations if op.method == method and op.pattern.match(path)),
            None,
        )

    def response(self, operation: Operation, status: int) -> dict[str, Any] | None:
        response = operation.responses.get(str(status))
        if response is not None and "$ref" in response:
            name = response["$ref"].rsplit("/", 1)[-1]
            response = self.doc["components"]["responses"][name]
        return response

    def body_faults(self, schema: dict[str, Any], body: Any) -> list[str]:
        """What in `body` breaks `schema` (refs into the document's components)."""
        key = json.dumps(schema, sort_keys=True)
        validator = self.validators.get(key)
        if validator is None:
            validator = self.validators[key] = jsonschema.Draft202012Validator(
                {**schema, "components": self.checked},
                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
            )
        return [
            f"{'/'.join(map(str, error.absolute_path))}: {error.message[:300]}"
            for error in validator.iter_errors(body)
        ]


def document(base_url: str) -> Document:
    """The document, read once per test process: every live server of it serves the same one
    (generated from the code, not from settings), each on a port of its own."""
    if not _READ:
        _READ.append(_parsed(requests.get(f"{base_url}/api/v1/openapi.json", timeout=10).json()))
    return _READ[0]


_READ: list[Document] = []


def _parsed(doc: dict[str, Any]) -> Document:
    found = []
    for path, methods in doc["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")
        for method, operation in methods.items():
            if method != "parameters":
                found.append(Operation(method.upper(), path, pattern, operation["responses"]))
    schemas = {
        name: {**schema, "additionalProperties": False} if _answer_shape(schema) else schema
        for name, schema in doc["components"]["schemas"].items()
    }
    return Document(doc, tuple(found), {**doc["components"], "schemas": schemas})


def _answer_shape(schema: dict[str, Any]) -> bool:
    properties = schema.get("properties", {}).values()
    return bool(properties) and all(prop.get("readOnly") for prop in properties)


@dataclass
class AnswersSeen:
    """Records each answer of a requests session; `undocumented()` names those their
    operation in the document does not describe."""

    base_url: str
    answers: list[requests.Response] = field(default_factory=list)

    def watch(self, http: requests.Session) -> None:
        http.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        url = urlsplit(str(response.request.url))
        if f"{url.scheme}://{url.netloc}" == self.base_url:
            self.answers.append(response)

    def undocumented(self) -> list[str]:
        doc = document(self.base_url)
        wrong = []
        for answer in self.answers:
            method, path = str(answer.request.method), urlsplit(str(answer.request.url)).path
            operation = doc.operation(method, path)
            if operation is None or answer.status_code in NOT_AN_OPERATIONS:
                continue
            said = f"{method} {path} answered {answer.status_code}"
            response = doc.response(operation, answer.status_code)
            if response is None:
                wrong.append(f"{said}: only {sorted(operation.responses)} are documented")
                continue
            if not answer.content:
                continue
            media = answer.headers.get("Content-Type", "").split(";")[0].strip()
            content = response.get("content", {})
            if media not in content:
                wrong.append(f"{said} as {media}: documented as {sorted(content)}")
                continue
            faults = doc.body_faults(content[media]["schema"], answer.json())
            wrong.extend(f"{said}, body {fault}" for fault in faults)
        return sorted(set(wrong))


def answers_documented(client: ApiClient) -> Iterator[ApiClient]:
    """For a conftest's `client` fixture: the client, whose answers, once the test is done,
    must each be one the document describes."""
    seen = AnswersSeen(client.base_url)
    seen.watch(client.http)
    yield client
    undocumented = seen.undocumented()
    assert undocumented == [], "answers the document does not describe:\n" + "\n".join(undocumented)
