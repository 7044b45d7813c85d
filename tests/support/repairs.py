"""Helpers for repair-conversation tests: start one, write in it, read it back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import requests

from tests.support.client import ApiClient, Person


def start(client: ApiClient, who: Person, **body: Any) -> dict[str, Any]:
    body.setdefault("client_id", str(uuid.uuid4()))
    response = client.post("/api/v1/repairs", as_=who, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def post_message(client: ApiClient, who: Person, repair_id: str, **body: Any) -> requests.Response:
    body.setdefault("client_id", str(uuid.uuid4()))
    body.setdefault("body", "When you left the room I felt alone.")
    return client.post(f"/api/v1/repairs/{repair_id}/messages", as_=who, json=body)


def write(client: ApiClient, who: Person, repair_id: str, **body: Any) -> dict[str, Any]:
    response = post_message(client, who, repair_id, **body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def event_types(client: ApiClient, who: Person) -> list[str]:
    return [e["type"] for e in client.get("/api/v1/sync", as_=who).json()["events"]]


def messages(client: ApiClient, who: Person, repair_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/repairs/{repair_id}/messages", as_=who, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
