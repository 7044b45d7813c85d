"""Fixtures for push tests: the FCM stand-in, credentials for it, a worker that uses it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from service.push.fcm import FcmBackend
from service.worker.dispatch import Dispatcher, RetryPolicy
from service.worker.runner import Worker
from tests.support.fcm_standin import FcmStandIn

RETRIES = RetryPolicy(base_seconds=2.0, max_seconds=60.0, max_attempts=4)


@pytest.fixture
def standin() -> Iterator[FcmStandIn]:
    server = FcmStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def credentials_file(standin: FcmStandIn, tmp_path: Path) -> Path:
    return standin.write_credentials(tmp_path / "service-account.json")


@pytest.fixture
def fcm_worker_on(standin: FcmStandIn, credentials_file: Path) -> Iterator[Callable[..., Worker]]:
    """Make real workers of an app, sending through firebase-admin to the stand-in:
    `fcm_worker_on(app, timeout_seconds=5, policy=RETRIES, lease_seconds=120)`."""
    backends: list[FcmBackend] = []

    def make(
        app: Flask,
        *,
        timeout_seconds: float = 5,
        policy: RetryPolicy = RETRIES,
        lease_seconds: float = 120,
        name: str = "fcm-test-worker",
    ) -> Worker:
        backend = FcmBackend(
            str(credentials_file), standin.url, max_concurrency=8, timeout_seconds=timeout_seconds
        )
        backends.append(backend)
        dispatcher = Dispatcher(backend, policy, lease_seconds=lease_seconds)
        return Worker(app, name=name, dispatcher=dispatcher)

    yield make
    for backend in backends:
        backend.close()


@pytest.fixture
def fcm_worker(app: Flask, fcm_worker_on: Callable[..., Worker]) -> Worker:
    """The real worker of the app under test, sending through firebase-admin to the stand-in."""
    return fcm_worker_on(app)
