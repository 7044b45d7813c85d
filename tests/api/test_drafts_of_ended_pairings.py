"""A write a phone kept offline past an unpair, sent once the user has paired again.

Ben wrote a bid, started a conversation or answered a check-in about Ana while offline; Ana
unpaired meanwhile and Ben paired with Cat before his phone sent it. A write names the couple it
was written in (`couple_id`): one of an ended pairing is refused (409), never given to Cat. In
the couple it names, or without one (an older app), it is taken as before, retries included.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.client import ApiClient, Person


@dataclass(frozen=True)
class Draft:
    path: str
    body: Callable[[], dict[str, Any]]
    # What the new partner would see of it: nothing before it is taken.
    seen_by: Callable[[ApiClient, Person], Any]


def _sync_types(client: ApiClient, who: Person) -> list[str]:
    return [e["type"] for e in client.get("/api/v1/sync", as_=who).json()["events"]]


DRAFTS = {
    "a bid": Draft(
        "/api/v1/bids",
        lambda: {"client_id": str(uuid.uuid4()), "kind": "comfort", "note": "call me?"},
        lambda client, who: client.get("/api/v1/bids", as_=who).json()["items"],
    ),
    "a conversation": Draft(
        "/api/v1/repairs",
        lambda: {"client_id": str(uuid.uuid4()), "topic": "about last night"},
        lambda client, who: client.get("/api/v1/repairs", as_=who).json()["items"],
    ),
    "a check-in answer": Draft(
        "/api/v1/checkins",
        lambda: {"client_id": str(uuid.uuid4()), "accessible": 1, "responsive": 2, "engaged": 1},
        lambda client, who: client.get("/api/v1/checkins/current", as_=who).json()[
            "partner_answered"
        ],
    ),
}


@pytest.mark.parametrize("kind", DRAFTS)
def test_a_draft_kept_past_an_unpair_never_reaches_the_new_partner(
    client: ApiClient, kind: str
) -> None:
    draft = DRAFTS[kind]
    ana, ben = client.couple()
    written_in = client.get("/api/v1/couple", as_=ben).json()["id"]
    body = {**draft.body(), "couple_id": written_in}
    assert client.delete("/api/v1/couple", as_=ana).status_code == 204
    alone = client.post(draft.path, as_=ben, json=body)
    assert alone.status_code == 404, alone.text  # not paired: as without couple_id

    cat = client.register("Cat")
    client.pair(cat, ben)
    untouched = draft.seen_by(client, cat)
    refused = client.post(draft.path, as_=ben, json=body)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "conflict"
    assert "pairing that has ended" in refused.json()["detail"]
    assert draft.seen_by(client, cat) == untouched
    assert _sync_types(client, cat) == ["couple.paired"]

    now_in = client.get("/api/v1/couple", as_=ben).json()["id"]
    taken = client.post(draft.path, as_=ben, json={**body, "couple_id": now_in})
    assert taken.status_code == 201, taken.text
    again = client.post(draft.path, as_=ben, json={**body, "couple_id": now_in})
    assert again.status_code == 200 and again.json()["id"] == taken.json()["id"]
    assert draft.seen_by(client, cat) != untouched
    older_app = client.post(draft.path, as_=cat, json=draft.body())
    assert older_app.status_code == 201, older_app.text
    wrong = client.post(draft.path, as_=ben, json={**draft.body(), "couple_id": "x"})
    assert wrong.status_code == 422 and "couple_id" in wrong.json()["errors"]
