"""Real concurrency on PostgreSQL: both partners write at once; cursors stay gapless."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.client import ApiClient, Person

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def test_both_partners_writing_at_once_never_duplicate_or_skip_a_cursor(
    client: ApiClient,
) -> None:
    ana, ben = client.couple()

    def reach(sender: Person, count: int) -> list[dict]:  # type: ignore[type-arg]
        session = ApiClient(client.base_url)
        made = []
        for _ in range(count):
            response = session.post(
                "/api/v1/bids", as_=sender, json={"client_id": str(uuid.uuid4()), "kind": "connect"}
            )
            assert response.status_code == 201, response.text
            made.append(response.json())
        return made

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(reach, who, 15) for who in (ana, ben) * 4]
        created = [bid for future in futures for bid in future.result()]
    assert len(created) == 120

    # Each partner answers the other's bids, again all at once.
    def answer(bid: dict) -> int:  # type: ignore[type-arg]
        responder = ben if bid["sender_id"] == ana.id else ana
        response = ApiClient(client.base_url).post(
            f"/api/v1/bids/{bid['id']}/responses",
            as_=responder,
            json={"client_id": str(uuid.uuid4()), "kind": "toward"},
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(answer, created)) == {201}

    events = []
    since = 0
    while True:
        page = client.get("/api/v1/sync", as_=ana, params={"since": since, "limit": 100}).json()
        events.extend(page["events"])
        since = page["next"]
        if not page["has_more"]:
            break
    cursors = [e["cursor"] for e in events]
    assert cursors == list(range(1, 1 + 1 + 120 + 120))
    assert sum(e["type"] == "bid.created" for e in events) == 120
    assert sum(e["type"] == "bid.answered" for e in events) == 120


def test_a_retry_racing_the_original_creates_one_bid(client: ApiClient) -> None:
    ana, _ = client.couple()
    client_id = str(uuid.uuid4())

    def send(_: int) -> tuple[int, str]:
        response = ApiClient(client.base_url).post(
            "/api/v1/bids", as_=ana, json={"client_id": client_id, "kind": "share"}
        )
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(send, range(6)))
    assert sorted(status for status, _ in results) == [200] * 5 + [201]
    assert len({bid_id for _, bid_id in results}) == 1
    types = [e["type"] for e in client.get("/api/v1/sync", as_=ana).json()["events"]]
    assert types == ["couple.paired", "bid.created"]
