"""The requests docs/mobile.md shows for the writes a phone keeps as drafts are ones the server
takes as shown, the `couple_id` the guide tells phones to send included."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import ApiClient

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "mobile.md"
# The writes the guide tells a phone to send with the couple's id (a draft of an ended pairing
# is then refused, not delivered to a new partner).
DRAFTED = ("/api/v1/bids", "/api/v1/repairs", "/api/v1/checkins")


def shown_request(path: str) -> dict[str, Any]:
    """The body of the guide's `POST <path> {...}` (it may wrap over the lines after it)."""
    text = GUIDE.read_text()
    start = re.search(rf"^POST {re.escape(path)} (?=\{{)", text, re.MULTILINE)
    assert start is not None, f"the guide shows no POST {path} with a body"
    body, _ = json.JSONDecoder().raw_decode(text, start.end())
    return dict(body)


@pytest.mark.parametrize("path", DRAFTED)
def test_the_guides_request_is_taken_as_shown_with_its_couple_id(
    client: ApiClient, path: str
) -> None:
    shown = shown_request(path)
    assert "couple_id" in shown, f"the guide's POST {path} leaves out the couple_id it asks for"
    ana, ben = client.couple()
    couple_id = client.get("/api/v1/couple", as_=ana).json()["id"]
    bid = {"client_id": str(uuid.uuid4()), "kind": "connect"}
    bid_id = client.post("/api/v1/bids", as_=ben, json=bid).json()["id"]
    # The guide's placeholders and captured ids, as this couple has them.
    ids = {"client_id": str(uuid.uuid4()), "couple_id": couple_id, "bid_id": bid_id}
    body = {name: ids.get(name, value) for name, value in shown.items()}
    sent = client.post(path, as_=ana, json=body)
    assert sent.status_code == 201, sent.text
