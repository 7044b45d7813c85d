"""Passwords hash beside a served process's event loop, not on it: while sign-ins hash, the
process (gunicorn, one gevent worker, as deployed) goes on answering everyone else."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.support.client import ApiClient
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
