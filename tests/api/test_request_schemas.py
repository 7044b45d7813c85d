"""A request's body and query are parsed with schemas built when the routes were declared."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow
import pytest

from tests.support.client import ApiClient


def test_parsing_requests_builds_no_schema(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana, ben = client.couple()
    built: list[str] = []
    original = marshmallow.Schema.__init__

    def counted(self: marshmallow.Schema, *args: Any, **kwargs: Any) -> None:
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(marshmallow.Schema, "__init__", counted)

    sent = client.post(
        "/api/v1/bids", as_=ana, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
    )
    assert sent.status_code == 201, sent.text
    listed = client.get("/api/v1/bids?limit=5", as_=ben)
    assert listed.status_code == 200, listed.text
    assert [bid["id"] for bid in listed.json()["items"]] == [sent.json()["id"]]
    refused = client.post("/api/v1/bids", as_=ana, json={"kind": "connect", "mood": 1})
    assert refused.status_code == 422, refused.text
    assert set(refused.json()["errors"]) == {"client_id", "mood"}

    assert built == []
