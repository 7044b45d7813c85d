"""PostgreSQL dropping the worker's connections while its pushes are out: what FCM accepted is
still recorded, and nothing is sent twice."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from service import create_app
from service.clock import clock
from service.extensions import db
from service.models import PushAttempt, PushDelivery, PushJob
from service.push.fcm import FcmBackend
from service.worker.dispatch import Dispatcher
from service.worker.runner import Worker
from tests.push.test_delivery import bid, device
from tests.support import fcm_standin as fcm
from tests.support.backends import drop_backends, named
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn
from tests.support.server import LiveServer
from tests.support.settings import make_settings
from tests.support.waiting import wait_until


@pytest.mark.postgres
@pytest.mark.committed
def test_connections_dropped_while_pushes_are_out_still_record_them_and_send_nothing_twice(
    database_url: str,
    server_with: Callable[..., LiveServer],
    standin: FcmStandIn,
    credentials_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = ApiClient(server_with().url)
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone")
    name = f"reach-worker-{uuid.uuid4().hex[:8]}"
    app = create_app(make_settings(named(database_url, name)))
    backend = FcmBackend(str(credentials_file), standin.url, timeout_seconds=5)
    worker = Worker(app, name="dropped-worker", dispatcher=Dispatcher(backend, lease_seconds=60))
    sent = bid(client, ana)
    standin.script("ben-phone", fcm.slow(1.0))
    failed: list[BaseException] = []

    def one_pass() -> None:
        try:
            worker.run_once()
        except Exception as exc:
            failed.append(exc)

    try:
        with caplog.at_level(logging.WARNING, logger="reach.push"):
            passing = threading.Thread(target=one_pass)
            passing.start()
            wait_until(lambda: standin.received() != [], 10, "the push out to FCM")
            assert drop_backends(database_url, name) >= 1  # as a restart does
            passing.join(20)
        # Past the lease: a job left claimed would be taken again and sent a second time.
        clock.freeze(clock.now() + timedelta(seconds=120))
        worker.run_once()
    finally:
        backend.close()
    assert [m["token"] for m in standin.messages()] == ["ben-phone"]
    assert failed == []
    with app.app_context(), db.scope() as session:
        job = session.scalars(select(PushJob)).one()
        delivery = session.scalars(select(PushDelivery)).one()
        attempts = session.scalars(select(PushAttempt)).all()
    assert job.dedupe_key == f"bid.created:{sent['id']}"
    assert (job.state, delivery.state, delivery.attempts) == ("done", "sent", 1)
    assert [a.outcome for a in attempts] == ["sent"]
    retried = [r for r in caplog.records if r.name == "reach.push" and r.levelname == "WARNING"]
    assert [r.getMessage() for r in retried] == [
        "recording pushes sent failed: database unavailable; trying again"
    ]
