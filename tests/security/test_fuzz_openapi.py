"""Schema-driven fuzzing of every REST operation in /api/v1/openapi.json (schemathesis).

Each operation gets a bounded number of generated requests (valid ones, and ones that break
the schema on purpose), with a fixed seed, as a signed-in member of a couple. About half name
the couple's real bid, repair or device in the path, so the fuzzing reaches past the 404s.
Every response must be documented (status code, content type, body), no response may be a
5xx, and a write that is refused (4xx) must leave what the member can read unchanged.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.security.conftest import add_device, send_bid
from tests.support import repairs as repair_helpers
from tests.support.client import ApiClient, Person
from tests.support.server import LiveServer

# Per operation and generation mode; with the snapshot reads this keeps the whole run near a
# minute on two cores.
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}
PROBLEM = "application/problem+json"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code", "errors"}
CODES = {
    "validation_error",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "rate_limited",
    "bad_request",
    "server_error",
}


def media_type(response: Any) -> str:
    values = response.headers.get("content-type") or [""]
    return str(values[0]).split(";")[0].strip().lower()


def documented_media_type(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' content_type_conformance, except for one known gap: the document declares
    error bodies as application/json while every error is sent as application/problem+json
    (test_error_responses_are_documented_as_problem_json fails until the document says so).
    Error bodies are checked against the problem shape by `problem_body` instead."""
    if response.status_code >= 400 and media_type(response) == PROBLEM:
        return None
    return content_type_conformance(ctx, response, case)


def problem_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error is an RFC 9457 problem with the contract's stable code."""
    if response.status_code < 400:
        return None
    assert media_type(response) == PROBLEM, f"{response.status_code} as {media_type(response)}"
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) <= PROBLEM_FIELDS, f"unknown problem members {set(body) - PROBLEM_FIELDS}"
    assert PROBLEM_FIELDS - {"errors"} <= set(body), f"missing problem members in {body}"
    assert body["status"] == response.status_code, body
    assert body["code"] in CODES, body
    for field_name, messages in body.get("errors", {}).items():
        assert isinstance(messages, list), (field_name, messages)
        assert all(isinstance(message, str) for message in messages), (field_name, messages)
    return None


def status_named(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' status_code_conformance passes any status when `default` is documented,
    as every operation has it: each answer but a 500 must be one the operation names, which a
    generated client can tell apart (404 not paired, 409, 429 with Retry-After, 503)."""
    if response.status_code == 500:
        return None
    named = [code for code in case.operation.responses.status_codes if code != "default"]
    assert str(response.status_code) in named, f"{response.status_code}, documented: {named}"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    status_named,
    documented_media_type,
    response_schema_conformance,
    problem_body,
]
# Ending the couple, the account or every session of it would leave nothing to fuzz: the
# authorization matrix and tests/api cover these (they take no body or parameters to generate).
SKIPPED = {
    ("DELETE", "/api/v1/me"),
    ("DELETE", "/api/v1/couple"),
    ("DELETE", "/api/v1/me/sessions"),
}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
STATE = [
    "/api/v1/me",
    "/api/v1/couple",
    "/api/v1/bids?limit=200",
    "/api/v1/devices",
    "/api/v1/sync?limit=1000",
    "/api/v1/repairs?limit=200",
    "/api/v1/checkins/current",
]


@dataclass
class Fuzzing:
    """The signed-in member, what they can read, and the real ids to put in paths."""

    client: ApiClient
    member: Person
    ids: dict[str, str]
    failures: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.member.access_token}"}

    def read_state(self) -> dict[str, Any]:
        return {path: self.client.get(path, as_=self.member).json() for path in STATE} | {
            "messages": self.client.get(
                f"/api/v1/repairs/{self.ids['repair_id']}/messages?limit=200", as_=self.member
            ).json()
        }


@pytest.fixture
def fuzzing(client: ApiClient) -> Fuzzing:
    ana, ben = client.couple()
    bid = send_bid(client, ben, "Thinking of you")  # to Ana: hers to see and answer
    repair = repair_helpers.start(client, ana, bid_id=bid["id"])
    repair_helpers.write(client, ben, repair["id"])
    device = add_device(client, ana, f"fuzz-token-{uuid.uuid4().hex}")
    ids = {"bid_id": bid["id"], "repair_id": repair["id"], "device_id": device}
    return Fuzzing(client, ana, ids)


def label(operation: Any) -> tuple[str, str]:
    return operation.method.upper(), operation.path


def fuzz(operation: Any, mode: GenerationMode, run: Fuzzing, base_url: str) -> None:
    method, path = label(operation)
    checks = list(CHECKS)
    if mode is GenerationMode.NEGATIVE and operation.body:
        # Bodies that break the schema must be refused. (Unknown query parameters are ignored
        # by design, so operations without a body are not held to this.)
        checks.append(negative_data_rejection)
    http = requests.Session()
    # The member's token is fixed: negative generation must not drop or garble it.
    strategy = operation.as_strategy(generation_mode=mode, headers=run.headers)

    @settings(
        max_examples=EXAMPLES[mode],
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, real_ids=st.booleans())
    def attempt(case: Any, real_ids: bool) -> None:
        if real_ids and case.path_parameters:
            case.path_parameters = {
                name: run.ids.get(name, value) for name, value in case.path_parameters.items()
            }
        before = run.state
        response = case.call(base_url=base_url, session=http)
        if method in WRITES and response.status_code < 300:
            run.state = run.read_state()
        elif method in WRITES and response.status_code < 500:
            after = run.read_state()
            run.state = after
            assert after == before, (
                f"a refused {method} {path} ({response.status_code}) changed what the member "
                f"reads: {changed(before, after)}"
            )
        case.validate_response(response, checks=checks, headers=run.headers)

    run.state = run.read_state()
    try:
        attempt()
    except Unsatisfiable:
        pass  # nothing to break on purpose: no body, no parameters besides the fixed token
    except (Exception, BaseExceptionGroup) as exc:  # one report for every operation
        run.failures.append(f"{method} {path} [{mode.value}]: {exc}")
    finally:
        http.close()


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [key for key in before if before[key] != after.get(key)]


def test_every_operation_survives_schema_driven_fuzzing(
    fuzzing: Fuzzing, live_server: LiveServer
) -> None:
    schema = schemathesis.openapi.from_url(
        f"{live_server.url}/api/v1/openapi.json", config=schemathesis.Config()
    )
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is valid
        operations.append(result.ok())
    labels = {label(operation) for operation in operations}
    assert len(labels) >= 30, sorted(labels)
    assert labels >= SKIPPED, "the skipped operations are gone: update SKIPPED"
    fuzzing.state = fuzzing.read_state()
    for operation in operations:
        if label(operation) in SKIPPED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, fuzzing, live_server.url)
    assert fuzzing.failures == [], "\n\n".join(fuzzing.failures)


def test_error_responses_are_documented_as_problem_json(client: ApiClient) -> None:
    """The document must name the media type errors are sent with (RFC 9457 problem+json).

    Today flask-smorest registers its error responses (UNAUTHORIZED, DEFAULT_ERROR, ...) with
    its DEFAULT_RESPONSE_CONTENT_TYPE, application/json; generated clients then expect a
    content type the server never sends for errors.
    """
    doc = client.get("/api/v1/openapi.json").json()
    wrong = []
    for name, response in doc["components"]["responses"].items():
        content = response.get("content", {})
        if content and PROBLEM not in content:
            wrong.append(f"components.responses.{name}: {sorted(content)}")
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                is_error = status == "default" or status.startswith(("4", "5"))
                if is_error and content and PROBLEM not in content:
                    wrong.append(f"{method.upper()} {path} {status}: {sorted(content)}")
    assert wrong == [], "errors documented without application/problem+json:\n" + "\n".join(wrong)


# Past PostgreSQL's integer (cursor and seq columns), bigint, and 64 bits.
HUGE = (2**31, 2**63, 2**64, -(2**63) - 1)


def unbounded_integers(doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(method, path, location, name) of every integer parameter or body field with no maximum."""

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in schema:
            return dict(doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]])
        return schema

    found = []
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if schema.get("type") == "integer" and "maximum" not in schema:
                    found.append((method.upper(), path, parameter["in"], parameter["name"]))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                for name, field in resolve(body["schema"]).get("properties", {}).items():
                    if field.get("type") == "integer" and "maximum" not in field:
                        found.append((method.upper(), path, "body", name))
    return found


def test_integers_past_the_columns_are_refused_not_crashed(fuzzing: Fuzzing) -> None:
    """Random generation finds these only now and then: probe every unbounded integer."""
    client = fuzzing.client
    doc = client.get("/api/v1/openapi.json").json()
    probes = unbounded_integers(doc)
    assert probes, "no unbounded integers left: drop this test or keep it as a guard"
    crashed = []
    for method, path, location, name in probes:
        url = path.replace("{repair_id}", fuzzing.ids["repair_id"])
        url = url.replace("{bid_id}", fuzzing.ids["bid_id"])
        for value in HUGE:
            if location == "query":
                response = client.request(method, url, as_=fuzzing.member, params={name: value})
            else:
                response = client.request(method, url, as_=fuzzing.member, json={name: value})
            if response.status_code >= 500:
                crashed.append(f"{method} {path} {location} {name}={value}: {response.status_code}")
    assert crashed == [], "\n".join(crashed)


RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def test_a_timestamp_from_long_ago_comes_back_as_a_valid_date_time(fuzzing: Fuzzing) -> None:
    """A phone's `written_at` may be any past moment the schema accepts; whatever is stored
    must come back as an RFC 3339 date-time (year 52 came back as "52-11-18T...")."""
    client, member = fuzzing.client, fuzzing.member
    path = f"/api/v1/repairs/{fuzzing.ids['repair_id']}/messages"
    body = {
        "client_id": str(uuid.uuid4()),
        "body": "Long ago",
        "written_at": "0052-11-18T04:14:09Z",
    }
    response = client.post(path, as_=member, json=body)
    if response.status_code == 422:
        return  # refusing an unbelievable date is fine too
    assert response.status_code == 201, response.text
    written = [response.json()["written_at"]]
    listed = client.get(path, as_=member, params={"limit": 200}).json()["items"]
    written += [m["written_at"] for m in listed if m["client_id"] == body["client_id"]]
    assert all(RFC3339.match(value) for value in written), written


NUL = "nul\u0000here"


def string_fields(doc: dict[str, Any], method: str, path: str) -> list[str]:
    """The string properties of the operation's JSON body, as the document declares them."""
    body = doc["paths"][path][method.lower()].get("requestBody", {})
    schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    names = []
    for name, field_schema in schema.get("properties", {}).items():
        types = field_schema.get("type")
        if types == "string" or (isinstance(types, list) and "string" in types):
            names.append(name)
    return names


def nul_probe(
    operation: Any, fields: list[str], run: Fuzzing, base_url: str, crashed: list[str]
) -> None:
    """Valid requests for `operation`, each string field in turn given a NUL character."""
    path_ids = {
        name: run.ids[name]
        for name in ("bid_id", "repair_id", "device_id")
        if f"{{{name}}}" in operation.path
    }
    strategy = operation.as_strategy(headers=run.headers, path_parameters=path_ids)
    http = requests.Session()

    @settings(
        max_examples=2,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def probe(case: Any) -> None:
        if not isinstance(case.body, dict):
            return
        original = dict(case.body)
        for name in fields:
            case.body = {**original, name: NUL}
            response = case.call(base_url=base_url, session=http)
            if response.status_code >= 500:
                method, path = label(operation)
                crashed.append(f"{method} {path} {name}: {response.status_code}")

    try:
        probe()
    finally:
        http.close()


def test_nul_characters_are_refused_not_crashed(fuzzing: Fuzzing, live_server: LiveServer) -> None:
    """PostgreSQL text cannot hold NUL: a string with one must be refused (422), never a 500.

    Each string field of each body, in an otherwise valid request, gets a NUL character.
    """
    schema = schemathesis.openapi.from_url(
        f"{live_server.url}/api/v1/openapi.json", config=schemathesis.Config()
    )
    doc = fuzzing.client.get("/api/v1/openapi.json").json()
    crashed: list[str] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        fields = string_fields(doc, *label(operation))
        if fields and label(operation) not in SKIPPED:
            nul_probe(operation, fields, fuzzing, live_server.url, crashed)
    assert sorted(set(crashed)) == [], "\n".join(sorted(set(crashed)))
