"""Passwords hash beside a served process's event loop, not on it, and outside any database
transaction: while sign-ins hash, the process (gunicorn, one gevent worker, as deployed) goes
on answering everyone else, requests that read the database included."""

from __future__ import annotations

import itertools
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.dashboard.conftest import OpsClient
from tests.support.client import ApiClient, Person
from tests.support.served import reach_serve

UNLIMITED = {"RATELIMIT_AUTH": "1000 per minute", "RATELIMIT_AUTH_EMAIL": "1000 per minute"}


def test_the_process_keeps_answering_while_sign_ins_hash(tmp_path: Path) -> None:
    with reach_serve(tmp_path, **UNLIMITED) as url:
        ana = ApiClient(url).register("Ana")
        wrong = {"email": ana.email, "password": "not Ana's password"}

        def sign_in() -> float:
            started = time.perf_counter()
            response = requests.post(f"{url}/api/v1/auth/login", json=wrong, timeout=60)
            assert response.status_code == 401, response.text
            return time.perf_counter() - started

        # One sign-in alone: about one hash, the longest the loop could be held by one.
        one_hash = statistics.median(sign_in() for _ in range(3))

        waits = []
        with ThreadPoolExecutor(max_workers=4) as pool, requests.Session() as http:
            sign_ins = [pool.submit(sign_in) for _ in range(12)]
            while not all(done.done() for done in sign_ins):
                started = time.perf_counter()
                http.get(f"{url}/healthz", timeout=60).raise_for_status()
                waits.append(time.perf_counter() - started)
            for done in sign_ins:
                done.result()

    assert len(waits) >= 5, f"only {len(waits)} answers while 12 sign-ins hashed"
    # On the loop, a request that came during a hash would wait for the rest of it: half a
    # hash at the median. Beside the loop it waits for nothing but a share of the CPU.
    assert statistics.median(waits) < one_hash / 4, (
        f"/healthz took {statistics.median(waits) * 1000:.1f} ms at the median while sign-ins"
        f" hashed (a sign-in alone {one_hash * 1000:.1f} ms)"
    )


def _sign_in(url: str, ana: Person, n: int) -> None:
    wrong = {"email": ana.email, "password": "not Ana's password"}
    response = requests.post(f"{url}/api/v1/auth/login", json=wrong, timeout=60)
    assert response.status_code == 401, response.text


def _sign_up(url: str, ana: Person, n: int) -> None:
    body = {
        "email": f"sam-{n}-{uuid.uuid4().hex[:8]}@example.test",
        "password": "a password long enough",
        "display_name": "Sam",
        "timezone": "UTC",
    }
    response = requests.post(f"{url}/api/v1/auth/register", json=body, timeout=60)
    assert response.status_code == 201, response.text


def _operator_sign_in(url: str, ana: Person, n: int) -> None:
    ops = OpsClient(url)
    try:
        token = ops.csrf("/ops/login")
        form = {"email": "ops@example.test", "password": "not the password", "csrf_token": token}
        response = ops.post("/ops/login", data=form)
        assert response.status_code == 401, response.text
    finally:
        ops.http.close()


@pytest.mark.parametrize(
    "attempt", [_sign_in, _sign_up, _operator_sign_in], ids=["sign-in", "sign-up", "operator"]
)
def test_requests_that_read_the_database_are_not_held_by_a_hash(
    tmp_path: Path, attempt: Callable[[str, Person, int], None]
) -> None:
    """A sign-in or sign-up hashes with no transaction open: one held open meanwhile keeps the
    process's one writer lock (the embedded default, SQLite) or a pooled connection
    (PostgreSQL) from everyone else for as long as the hash and its wait for a hashing slot."""
    with reach_serve(tmp_path, **UNLIMITED) as url:
        ana = ApiClient(url).register("Ana")
        counter = itertools.count()

        def hashing() -> float:
            started = time.perf_counter()
            attempt(url, ana, next(counter))
            return time.perf_counter() - started

        one_attempt = statistics.median(hashing() for _ in range(3))

        waits = []
        with ThreadPoolExecutor(max_workers=4) as pool, requests.Session() as http:
            attempts = [pool.submit(hashing) for _ in range(12)]
            while not all(done.done() for done in attempts):
                started = time.perf_counter()
                http.get(f"{url}/api/v1/me", headers=ana.headers, timeout=60).raise_for_status()
                waits.append(time.perf_counter() - started)
            for done in attempts:
                done.result()

    assert len(waits) >= 5, f"only {len(waits)} answers while 12 attempts hashed"
    assert statistics.median(waits) < one_attempt / 4, (
        f"GET /me took {statistics.median(waits) * 1000:.1f} ms at the median while passwords"
        f" hashed (one attempt alone {one_attempt * 1000:.1f} ms)"
    )
