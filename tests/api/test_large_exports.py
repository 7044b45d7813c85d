"""A large export, served as deployed (gunicorn, one gevent worker, PostgreSQL): it keeps no
other member of the process waiting while it is read and written out."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine, create_engine, insert

from service.models import Bid, RepairMessage
from tests.support.client import ApiClient, Person
from tests.support.served import reach_serve

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

# About 8 MB of JSON: a couple that wrote every day for years.
WRITTEN = 5000


def years_of_writing(engine: Engine, ana: Person, ben: Person, couple: str, repair: str) -> None:
    """Ana's bids (long since expired) and messages, written straight into the database."""
    now = datetime.now(UTC)
    me, partner = uuid.UUID(ana.id), uuid.UUID(ben.id)
    with engine.begin() as connection:
        connection.execute(
            insert(Bid),
            [
                {
                    "id": uuid.uuid4(),
                    "couple_id": uuid.UUID(couple),
                    "sender_id": me,
                    "recipient_id": partner,
                    "client_id": uuid.uuid4(),
                    "kind": "share",
                    "note": "n" * 280,
                    "status": "expired",
                    "created_at": now - timedelta(hours=i),
                    "reachable_at": now - timedelta(hours=i),
                    "expires_at": now - timedelta(hours=i - 24),
                    "expired_at": now - timedelta(hours=i - 24),
                }
                for i in range(WRITTEN, 0, -1)
            ],
        )
        connection.execute(
            insert(RepairMessage),
            [
                {
                    "id": uuid.uuid4(),
                    "repair_id": uuid.UUID(repair),
                    "seq": seq,
                    "author_id": me,
                    "client_id": uuid.uuid4(),
                    "body": "m" * 1000,
                    "emotions": ["hurt"],
                    "created_at": now,
                }
                for seq in range(1, WRITTEN + 1)
            ],
        )


def test_a_large_export_keeps_no_other_request_waiting(tmp_path: Path, database_url: str) -> None:
    """Ana exports years of writing; meanwhile Ben, served by the same process, opens the app.
    The export was built in one go, which held the process: each of Ben's requests waited
    until it was done (seconds), as did every bid and socket event of the process."""
    engine = create_engine(database_url)
    secret = "export-test-" + uuid.uuid4().hex * 2
    with reach_serve(tmp_path, DATABASE_URL=database_url, SECRET_KEY=secret) as url:
        api = ApiClient(url)
        ana, ben = api.couple()
        couple = api.get("/api/v1/couple", as_=ana).json()["id"]
        repair = api.post(
            "/api/v1/repairs", as_=ana, json={"client_id": str(uuid.uuid4()), "topic": "us"}
        ).json()["id"]
        years_of_writing(engine, ana, ben, couple, repair)
        exported: dict[str, requests.Response] = {}
        done = threading.Event()

        def export() -> None:
            exported["answer"] = requests.get(
                f"{url}/api/v1/me/export", headers=ana.headers, timeout=120
            )
            done.set()

        began = time.monotonic()
        threading.Thread(target=export, daemon=True).start()
        waits = []
        while not done.is_set():
            asked = time.monotonic()
            assert api.get("/api/v1/me", as_=ben).status_code == 200
            waits.append(time.monotonic() - asked)
        took = time.monotonic() - began
        api.http.close()
    engine.dispose()

    answer = exported["answer"]
    assert answer.status_code == 200
    body = answer.json()
    assert len(body["bids_sent"]) == len(body["repair_messages"]) == WRITTEN
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    longest = max(waits)
    assert longest < took / 5, f"Ben waited {longest:.2f} s of an export of {took:.2f} s"
