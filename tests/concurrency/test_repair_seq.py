"""Real concurrency on PostgreSQL: both partners write into one conversation at once."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.client import ApiClient, Person

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def all_events(client: ApiClient, who: Person) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    since = 0
    while True:
        page = client.get("/api/v1/sync", as_=who, params={"since": since, "limit": 100}).json()
        events.extend(page["events"])
        since = page["next"]
        if not page["has_more"]:
            return events


def test_both_partners_writing_at_once_never_duplicate_or_skip_a_seq(client: ApiClient) -> None:
    ana, ben = client.couple()
    repair = client.post("/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4())}).json()
    rid = repair["id"]

    def write(author: Person, count: int) -> list[dict[str, Any]]:
        session = ApiClient(client.base_url)
        made = []
        for n in range(count):
            response = session.post(
                f"/api/v1/repairs/{rid}/messages",
                as_=author,
                json={"client_id": str(uuid.uuid4()), "body": f"{author.id} {n}"},
            )
            assert response.status_code == 201, response.text
            made.append(response.json())
        return made

    def read_along(reader: Person) -> list[int]:
        # Read receipts race the writers; each must name a seq that exists.
        session = ApiClient(client.base_url)
        seen = []
        for _ in range(10):
            last = session.get(f"/api/v1/repairs/{rid}", as_=reader).json()["last_seq"]
            if last:
                response = session.post(
                    f"/api/v1/repairs/{rid}/read", as_=reader, json={"seq": last}
                )
                assert response.status_code == 200, response.text
                seen.append(last)
        return seen

    with ThreadPoolExecutor(max_workers=10) as pool:
        writers = [pool.submit(write, who, 15) for who in (ana, ben) * 4]
        readers = [pool.submit(read_along, who) for who in (ana, ben)]
        written = [message for future in writers for message in future.result()]
        for future in readers:
            future.result()
    assert len(written) == 120
    assert sorted(m["seq"] for m in written) == list(range(1, 121))

    listed: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get(
            f"/api/v1/repairs/{rid}/messages", as_=ben, params={"after_seq": after, "limit": 50}
        ).json()
        listed.extend(page["items"])
        if page["next"] is None:
            break
        after = page["next"]
    assert [m["seq"] for m in listed] == list(range(1, 121))
    assert {m["id"] for m in listed} == {m["id"] for m in written}
    assert client.get(f"/api/v1/repairs/{rid}", as_=ana).json()["last_seq"] == 120

    events = all_events(client, ana)
    assert [e["cursor"] for e in events] == list(range(1, len(events) + 1))
    said = [e["data"]["seq"] for e in events if e["type"] == "repair.message"]
    # The stream carries each message once, in the order the seqs were taken.
    assert said == list(range(1, 121))


def test_a_retry_racing_the_original_writes_one_message(client: ApiClient) -> None:
    ana, _ = client.couple()
    repair = client.post("/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4())}).json()
    body = {"client_id": str(uuid.uuid4()), "body": "once, please"}

    def send(_: int) -> tuple[int, str, int]:
        response = ApiClient(client.base_url).post(
            f"/api/v1/repairs/{repair['id']}/messages", as_=ana, json=body
        )
        answer = response.json()
        return response.status_code, answer["id"], answer["seq"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(send, range(6)))
    assert sorted(status for status, _, _ in results) == [200] * 5 + [201]
    assert {(message_id, seq) for _, message_id, seq in results} == {(results[0][1], 1)}
    types = [e["type"] for e in all_events(client, ana)]
    assert types == ["couple.paired", "repair.started", "repair.message"]


def test_two_phones_sending_other_words_under_one_client_id_at_once_keep_one(
    client: ApiClient,
) -> None:
    """Ana's phone and tablet each send a message under the same client_id at once, with other
    words: one is stored (201), the other refused (409) rather than answered with the first,
    in one conversation or two."""
    ana, _ = client.couple()
    repairs = [
        client.post("/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4())}).json()
        for _ in range(2)
    ]
    for first, second in ((repairs[0], repairs[0]), (repairs[0], repairs[1])):
        client_id = str(uuid.uuid4())
        sent = [(first, "From the phone.", client_id), (second, "From the tablet.", client_id)]

        def send(which: tuple[dict[str, Any], str, str]) -> int:
            repair, body, client_id = which
            return (
                ApiClient(client.base_url)
                .post(
                    f"/api/v1/repairs/{repair['id']}/messages",
                    as_=ana,
                    json={"client_id": client_id, "body": body},
                )
                .status_code
            )

        with ThreadPoolExecutor(max_workers=2) as pool:
            statuses = sorted(pool.map(send, sent))
        assert statuses == [201, 409]
    said = [e["data"]["body"] for e in all_events(client, ana) if e["type"] == "repair.message"]
    assert len(said) == 2
