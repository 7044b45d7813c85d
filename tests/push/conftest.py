"""Fixtures for push tests: the FCM stand-in, credentials for it, a worker that uses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from service.push.fcm import FcmBackend
from service.worker.dispatch import Dispatcher, RetryPolicy
from service.worker.runner import Worker
from tests.support.fcm_standin import FcmStandIn


@pytest.fixture
def standin() -> Iterator[FcmStandIn]:
    server = FcmStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def credentials_file(standin: FcmStandIn, tmp_path: Path) -> Path:
    return standin.write_credentials(tmp_path / "service-account.json")


@pytest.fixture
def fcm_worker(app: Flask, standin: FcmStandIn, credentials_file: Path) -> Iterator[Worker]:
    """The real worker, sending through firebase-admin to the stand-in."""
    backend = FcmBackend(str(credentials_file), standin.url, max_concurrency=8, timeout_seconds=5)
    policy = RetryPolicy(base_seconds=2.0, max_seconds=60.0, max_attempts=4)
    yield Worker(app, name="fcm-test-worker", dispatcher=Dispatcher(backend, policy))
    backend.close()
