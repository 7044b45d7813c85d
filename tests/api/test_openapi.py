"""The generated OpenAPI document is enough to use the API."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests
from openapi_spec_validator import validate

from schemas.sync import EVENT_TYPES
from service.clock import clock
from service.domain import bids as bid_rules
from service.domain import devices as device_rules
from service.domain import repairs as repair_rules
from service.worker.runner import Worker
from tests.support import repairs as repair_helpers
from tests.support.client import PASSWORD, ApiClient, Person
from tests.support.documented import document
from tests.support.phones import Phone


class DocumentedApi:
    """Calls operations found only through the OpenAPI document, and checks the answers."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.doc: dict[str, Any] = client.get("/api/v1/openapi.json").json()

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return dict(self.doc["components"]["schemas"][name])
        return schema

    def operation(self, method: str, path: str) -> dict[str, Any]:
        assert path in self.doc["paths"], f"{path} is not documented"
        op = self.doc["paths"][path][method.lower()]
        assert op.get("summary"), f"{method} {path} has no summary"
        return dict(op)

    def call(
        self, method: str, path: str, body: dict[str, Any] | None, token: str | None
    ) -> requests.Response:
        op = self.operation(method, path)
        if body is not None:
            schema = self._resolve(op["requestBody"]["content"]["application/json"]["schema"])
            assert set(schema.get("required", [])) <= set(body), (path, schema.get("required"))
            assert set(body) <= set(schema["properties"]), (path, set(body))
        if token is not None:
            assert op.get("security") == [{"bearerAuth": []}], f"{path} must document bearer auth"
            schemes = self.doc["components"]["securitySchemes"]
            assert schemes["bearerAuth"] == {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
            }
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.client.request(method, path, json=body, headers=headers)
        documented = op["responses"]
        assert str(response.status_code) in documented or "default" in documented, (
            path,
            response.status_code,
            list(documented),
        )
        if response.ok and response.content:
            content = documented[str(response.status_code)]["content"]["application/json"]
            schema = self._resolve(content["schema"])
            assert set(response.json()) <= set(schema["properties"]), (path, response.json())
            assert set(schema.get("required", [])) <= set(response.json()), (path, schema)
        return response


def test_document_is_openapi_3_with_problem_errors(client: ApiClient) -> None:
    doc = DocumentedApi(client).doc
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "Reach"
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code", "errors"} <= set(problem["properties"])


def test_a_client_with_only_the_document_pairs_two_people_and_connects(
    client: ApiClient, phone: Callable[[str | None], Phone]
) -> None:
    api = DocumentedApi(client)
    tokens = []
    for name in ("Ana", "Ben"):
        registered = api.call(
            "POST",
            "/api/v1/auth/register",
            {
                "email": f"{name.lower()}@doc.test",
                "password": PASSWORD,
                "display_name": name,
                "timezone": "Europe/Lisbon",
            },
            None,
        )
        assert registered.status_code == 201
        tokens.append(registered.json()["access_token"])
    ana, ben = tokens

    invite = api.call("POST", "/api/v1/couple/invites", None, ana)
    assert invite.status_code == 201
    joined = api.call("POST", "/api/v1/couple/join", {"code": invite.json()["code"]}, ben)
    assert joined.status_code == 201
    device = api.call(
        "POST", "/api/v1/devices", {"platform": "android", "push_token": "doc-token-1234"}, ben
    )
    assert device.status_code == 201
    couple = api.call("GET", "/api/v1/couple", None, ana)
    assert couple.json()["partner"]["display_name"] == "Ben"

    ana_phone = phone(ana)
    assert ana_phone.client.connected

    stranger = api.call(
        "POST",
        "/api/v1/auth/register",
        {"email": "sol@doc.test", "password": PASSWORD, "display_name": "Sol", "timezone": "UTC"},
        None,
    ).json()["access_token"]
    not_found = api.call("GET", "/api/v1/couple", None, stranger)
    assert not_found.status_code == 404
    assert not_found.json()["code"] == "not_found"


def test_every_operation_documents_its_errors(client: ApiClient) -> None:
    doc = DocumentedApi(client).doc
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if method == "parameters":
                continue
            responses = op["responses"]
            if op.get("security"):
                assert "401" in responses or "default" in responses, (method, path)
            if "requestBody" in op:
                assert "422" in responses, (method, path)
            # A body not sent as JSON: only an operation that reads one refuses it.
            assert ("415" in responses) == ("requestBody" in op), (method, path)


def test_response_shapes_say_every_field_is_always_sent(client: ApiClient) -> None:
    """docs/mobile.md tells phones to generate their models from the document. A field a
    response schema does not list as required is optional in every generated model (`id?`,
    `status?`), though the service sends each one in every answer (null when it has none)."""
    schemas = DocumentedApi(client).doc["components"]["schemas"]
    responses = {
        name: schema
        for name, schema in schemas.items()
        if all(prop.get("readOnly") for prop in schema["properties"].values())
    }
    assert {"Bid", "BidResponse", "Repair", "RepairMessage", "BidEvent", "SyncPage"} <= set(
        responses
    )
    # Sent only sometimes: couple.ended's `reason`, after an account deletion; a problem's
    # field `errors` (validation) and `retry_after` (429, 503).
    sometimes = {"CoupleEnded": {"reason"}, "Problem": {"errors", "retry_after"}}
    for name, schema in responses.items():
        always = set(schema["properties"]) - sometimes.get(name, set())
        assert sorted(schema.get("required", [])) == sorted(always), name


def test_answers_may_gain_fields_and_request_bodies_may_not(client: ApiClient) -> None:
    """docs/mobile.md: answers may gain fields, so a phone ignores those it does not know; the
    service refuses unknown fields in a request body. A decoder generated from an answer's
    shape with `additionalProperties: false` (swift-openapi-generator's) throws on the first
    new field instead. The tests still hold every answer to the listed fields (`checked`)."""
    doc = document(client.base_url)
    schemas = doc.doc["components"]["schemas"]
    answers = [name for name, schema in schemas.items() if _every_field_read_only(schema)]
    assert {"Bid", "SyncPage", "Problem", "Export", "OtherEvent"} <= set(answers)
    closed = [name for name in answers if "additionalProperties" in schemas[name]]
    assert closed == []
    bodies = {"Register", "BidCreate", "RepairMessageCreate", "DeviceCreate", "ProfileUpdate"}
    assert all(schemas[name]["additionalProperties"] is False for name in bodies)

    ana = client.register("Ana")
    device = client.post(
        "/api/v1/devices", as_=ana, json={"platform": "ios", "push_token": "gain-fields-1"}
    ).json()
    device_shape = {"$ref": "#/components/schemas/Device"}
    assert doc.body_faults(device_shape, device) == []
    assert doc.body_faults(device_shape, {**device, "nickname": "Ana's"}) != []


def _every_field_read_only(schema: dict[str, Any]) -> bool:
    properties = schema.get("properties", {}).values()
    return bool(properties) and all(prop.get("readOnly") for prop in properties)


def test_the_document_is_valid_openapi(client: ApiClient) -> None:
    validate(client.get("/api/v1/openapi.json").json())


# A generated client names its methods after these: renaming one breaks every app built on it.
OPERATION_IDS = {
    ("POST", "/api/v1/auth/register"): "register",
    ("POST", "/api/v1/auth/login"): "login",
    ("POST", "/api/v1/auth/refresh"): "refreshTokens",
    ("POST", "/api/v1/auth/logout"): "logout",
    ("POST", "/api/v1/auth/password-reset"): "requestPasswordReset",
    ("POST", "/api/v1/auth/password-reset/confirm"): "resetPassword",
    ("GET", "/api/v1/me"): "getProfile",
    ("PATCH", "/api/v1/me"): "updateProfile",
    ("DELETE", "/api/v1/me"): "deleteAccount",
    ("GET", "/api/v1/me/export"): "exportData",
    ("POST", "/api/v1/me/password"): "changePassword",
    ("POST", "/api/v1/me/email"): "changeEmail",
    ("POST", "/api/v1/me/email/confirm"): "confirmEmailChange",
    ("GET", "/api/v1/me/sessions"): "listSessions",
    ("DELETE", "/api/v1/me/sessions"): "signOutEverywhere",
    ("DELETE", "/api/v1/me/sessions/{session_id}"): "endSession",
    ("POST", "/api/v1/couple/invites"): "createInvite",
    ("GET", "/api/v1/couple/invites"): "getInvite",
    ("DELETE", "/api/v1/couple/invites"): "withdrawInvite",
    ("POST", "/api/v1/couple/join"): "joinCouple",
    ("GET", "/api/v1/couple"): "getCouple",
    ("DELETE", "/api/v1/couple"): "unpair",
    ("GET", "/api/v1/devices"): "listDevices",
    ("POST", "/api/v1/devices"): "registerDevice",
    ("DELETE", "/api/v1/devices/{device_id}"): "deleteDevice",
    ("GET", "/api/v1/bids"): "listBids",
    ("POST", "/api/v1/bids"): "sendBid",
    ("GET", "/api/v1/bids/{bid_id}"): "getBid",
    ("POST", "/api/v1/bids/{bid_id}/delivered"): "markBidDelivered",
    ("POST", "/api/v1/bids/{bid_id}/seen"): "markBidSeen",
    ("POST", "/api/v1/bids/{bid_id}/responses"): "respondToBid",
    ("GET", "/api/v1/repairs"): "listRepairs",
    ("POST", "/api/v1/repairs"): "startRepair",
    ("GET", "/api/v1/repairs/{repair_id}"): "getRepair",
    ("GET", "/api/v1/repairs/{repair_id}/messages"): "listRepairMessages",
    ("POST", "/api/v1/repairs/{repair_id}/messages"): "writeRepairMessage",
    ("POST", "/api/v1/repairs/{repair_id}/read"): "markRepairRead",
    ("POST", "/api/v1/repairs/{repair_id}/pause"): "pauseRepair",
    ("POST", "/api/v1/repairs/{repair_id}/resume"): "resumeRepair",
    ("POST", "/api/v1/repairs/{repair_id}/resolve"): "resolveRepair",
    ("GET", "/api/v1/insights"): "getInsights",
    ("GET", "/api/v1/checkins"): "listCheckIns",
    ("POST", "/api/v1/checkins"): "answerCheckIn",
    ("GET", "/api/v1/checkins/current"): "getCurrentCheckIn",
    ("GET", "/api/v1/sync"): "sync",
}


def test_every_operation_has_its_stable_operation_id(client: ApiClient) -> None:
    """Without operationIds, Swift and Kotlin generators make method names from the path
    (`apiV1BidsBidIdSeenPost`), and a new path parameter renames them."""
    doc = client.get("/api/v1/openapi.json").json()
    found = {
        (method.upper(), path): op.get("operationId")
        for path, operations in doc["paths"].items()
        for method, op in operations.items()
        if method != "parameters"
    }
    assert found == OPERATION_IDS
    for path, operations in doc["paths"].items():
        for parameter in operations.get("parameters", []):
            assert parameter["schema"] == {"type": "string", "format": "uuid"}, (path, parameter)


def test_fields_from_a_fixed_set_list_it(client: ApiClient) -> None:
    """A generated model decodes these as enums; each lists what the service sends."""
    schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]

    def enum(schema: str, field: str) -> list[Any]:
        prop = schemas[schema]["properties"][field]
        return list(prop.get("items", prop).get("enum", []))

    assert enum("Bid", "kind") == list(bid_rules.KINDS)
    assert enum("Bid", "status") == ["sent", "delivered", "seen", "answered", "expired"]
    assert enum("Bid", "response") == [*bid_rules.RESPONSE_KINDS, None]
    assert enum("BidResponse", "kind") == list(bid_rules.RESPONSE_KINDS)
    assert enum("Device", "platform") == ["ios", "android", "web"]
    assert enum("Device", "disabled_reason") == [*device_rules.DISABLED_REASONS, None]
    assert enum("Repair", "status") == list(repair_rules.STATUSES)
    assert enum("RepairMessage", "step") == [*repair_rules.STEPS, None]
    assert enum("RepairMessage", "emotions") == list(repair_rules.EMOTIONS)
    assert enum("TokenPair", "token_type") == ["Bearer"]
    problem = schemas["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}


def test_every_answer_field_says_what_it_holds(client: ApiClient) -> None:
    """A generated model decodes an object the document leaves open (`type: object` with no
    properties) as an untyped map: `export.devices[0].platform` would not be there to use."""
    schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]

    def open_object(prop: dict[str, Any]) -> bool:
        if {"$ref", "oneOf", "anyOf"} & set(prop):
            return False
        types = prop.get("type", [])
        types = types if isinstance(types, list) else [types]
        if "array" in types:
            return open_object(prop.get("items", {}))
        return not types or (
            "object" in types and "properties" not in prop and not prop.get("additionalProperties")
        )

    # What an event of a type the document does not name yet carries is unknown until then.
    open_by_design = {"OtherEvent.data"}
    untyped = [
        f"{name}.{field}"
        for name, schema in schemas.items()
        for field, prop in schema.get("properties", {}).items()
        if prop.get("readOnly") and open_object(prop)
    ]
    assert set(untyped) == open_by_design


def test_a_body_too_large_is_a_documented_413_on_any_operation(client: ApiClient) -> None:
    """Every request's body is read before its operation runs, one that takes no body too:
    over 64 KiB it is refused with 413, which each operation documents (the `client` fixture
    checks the answers against the document)."""
    ana = client.register("Ana")
    too_large = b"{" + b" " * 70_000 + b"}"
    json_type = {"Content-Type": "application/json"}
    for method, path in (("GET", "/api/v1/me"), ("GET", "/api/v1/sync"), ("DELETE", "/api/v1/me")):
        refused = client.request(method, path, as_=ana, data=too_large, headers=json_type)
        assert refused.status_code == 413, (method, path, refused.text)
        assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert client.get("/api/v1/me", as_=ana).status_code == 200


def test_waited_out_errors_say_how_long_in_retry_after(client: ApiClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    named = doc["components"]["responses"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if method == "parameters":
                continue
            assert "503" in op["responses"], (method, path)
            for status in ("429", "503"):
                response = op["responses"].get(status)
                if response is None:
                    continue
                response = named[response["$ref"].rsplit("/", 1)[-1]]
                assert "Retry-After" in response["headers"], (method, path, status)
                assert "application/problem+json" in response["content"], (method, path)


def test_retry_after_is_documented_as_at_least_one_second(client: ApiClient) -> None:
    """The service waits a client out for 1 s or more (`service.errors.wait_for`, the 503's
    5 s): a generated client that trusts a documented 0 may retry at once, in a loop."""
    doc = client.get("/api/v1/openapi.json").json()
    for name in ("RATE_LIMITED", "UNAVAILABLE"):
        header = doc["components"]["responses"][name]["headers"]["Retry-After"]
        assert header["schema"] == {"type": "integer", "minimum": 1}, name
    retry_after = doc["components"]["schemas"]["Problem"]["properties"]["retry_after"]
    assert retry_after["minimum"] == 1


def test_every_schema_of_the_document_is_one_the_api_uses(client: ApiClient) -> None:
    """A generator makes a model of every component schema: one no operation reaches (a
    library's own, left in) is a model an app carries for nothing, and a reader of the
    document looks for where it is sent."""
    doc = client.get("/api/v1/openapi.json").json()
    reached: set[str] = set()
    pending: list[Any] = [doc["paths"]]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref not in reached:
                reached.add(ref)
                _, _, kind, name = ref.split("/")
                pending.append(doc["components"][kind][name])
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    for kind, components in doc["components"].items():
        if kind == "securitySchemes":
            continue
        unused = sorted(f"#/components/{kind}/{name}" for name in components)
        assert [ref for ref in unused if ref not in reached] == [], kind


def test_every_event_type_is_described_and_what_is_sent_matches(
    client: ApiClient, worker: Worker, phone: Callable[[str | None], Phone]
) -> None:
    """A phone decodes `GET /sync` and socket events by `type`: the document maps each type
    to the shape of its `data`, and every event the service sends matches that shape."""
    doc = document(client.base_url)
    items = doc.doc["components"]["schemas"]["SyncPage"]["properties"]["events"]["items"]
    mapping = items["discriminator"]["mapping"]
    assert items["discriminator"]["propertyName"] == "type"
    assert set(mapping) == set(EVENT_TYPES)

    ana, ben = client.couple()
    clock.freeze(datetime.now(UTC))
    renamed = {"display_name": "Ana B.", "timezone": "Asia/Tokyo"}
    assert client.patch("/api/v1/me", as_=ana, json=renamed).ok
    answered = send_bid(client, ben, "Thinking of you")
    for step in ("delivered", "seen"):
        assert client.post(f"/api/v1/bids/{answered['id']}/{step}", as_=ana).ok
    response = {"client_id": str(uuid.uuid4()), "kind": "toward"}
    assert client.post(f"/api/v1/bids/{answered['id']}/responses", as_=ana, json=response).ok
    repair = repair_helpers.start(client, ana, bid_id=answered["id"])
    repair_helpers.write(client, ben, repair["id"], step="what_i_felt", emotions=["hurt"])
    path = f"/api/v1/repairs/{repair['id']}"
    assert client.post(f"{path}/read", as_=ana, json={"seq": 1}).ok
    assert client.post(f"{path}/pause", as_=ana, json={"minutes": 20}).ok
    assert client.post(f"{path}/resume", as_=ana).ok
    assert client.post(f"{path}/resolve", as_=ana).ok
    assert client.post(f"{path}/resolve", as_=ben).ok
    for who in (ana, ben):
        scores = {"accessible": 4, "responsive": 3, "engaged": 5}
        checkin = {"client_id": str(uuid.uuid4()), **scores}
        assert client.post("/api/v1/checkins", as_=who, json=checkin).ok
    in_tokyo = clock.now().astimezone(ZoneInfo("Asia/Tokyo"))
    hour = timedelta(hours=1)
    quiet = {"start": f"{in_tokyo - hour:%H:%M}", "end": f"{in_tokyo + hour:%H:%M}"}
    assert client.patch("/api/v1/me", as_=ana, json={"quiet_hours": quiet}).ok
    send_bid(client, ben, None)  # it waits for the end of Ana's quiet hours
    assert client.patch("/api/v1/me", as_=ana, json={"quiet_hours": None}).ok
    clock.advance(timedelta(days=2))
    assert worker.run_once().expired_bids == 1
    ana = client.fresh(ana)

    page = client.get("/api/v1/sync", as_=ana, params={"limit": 1000}).json()
    events = page["events"]
    page_schema = {"$ref": "#/components/schemas/SyncPage"}
    assert doc.body_faults(page_schema, page) == []
    ana_phone = phone(ana.access_token)
    assert client.delete("/api/v1/couple", as_=client.fresh(ben)).status_code == 204
    events.append(ana_phone.wait_for("couple.ended"))
    assert {event["type"] for event in events} == set(EVENT_TYPES)
    for event in events:
        faults = doc.body_faults({"$ref": mapping[event["type"]]}, event)
        assert faults == [], (event["type"], faults)


def send_bid(client: ApiClient, who: Person, note: str | None) -> dict[str, Any]:
    body = {"client_id": str(uuid.uuid4()), "kind": "connect", "note": note}
    sent = client.post("/api/v1/bids", as_=who, json=body)
    assert sent.status_code == 201, sent.text
    return dict(sent.json())
