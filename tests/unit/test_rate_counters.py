"""The in-process rate-limit counters (service/security/rate_counters.py) under a moved clock:
fixed windows that end and start again, and ended windows swept out, without a timer."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from service.security import rate_counters
from service.security.rate_counters import MemoryRateCounters, storage_uri

T0 = 1_800_000_000.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The counters' clock, moved by hand: `clock.now`."""
    fake = SimpleNamespace(now=T0)
    monkeypatch.setattr(rate_counters, "time", SimpleNamespace(time=lambda: fake.now))
    return fake


def test_without_redis_the_service_counts_in_the_process() -> None:
    assert isinstance(storage_from_string(storage_uri(None)), MemoryRateCounters)


def test_a_window_counts_until_it_ends_and_a_new_one_starts(clock: SimpleNamespace) -> None:
    limiter = FixedWindowRateLimiter(MemoryRateCounters())
    limit = parse("2 per minute")

    assert [limiter.hit(limit, "user:a") for _ in range(3)] == [True, True, False]
    assert limiter.get_window_stats(limit, "user:a") == (T0 + 60, 0)
    assert limiter.hit(limit, "user:b")  # every key has its own window

    clock.now = T0 + 59.9
    assert not limiter.hit(limit, "user:a")
    clock.now = T0 + 60
    assert limiter.get_window_stats(limit, "user:a") == (T0 + 60, 2)
    assert limiter.hit(limit, "user:a")
    assert limiter.get_window_stats(limit, "user:a") == (T0 + 120, 1)


def test_ended_windows_are_swept_out_by_a_later_count_without_a_thread(
    clock: SimpleNamespace,
) -> None:
    counters = MemoryRateCounters()
    limiter = FixedWindowRateLimiter(counters)
    limit = parse("5 per second")
    threads = threading.active_count()
    for n in range(100):
        limiter.hit(limit, f"user:{n}")
    assert counters.held() == 100
    assert threading.active_count() == threads

    clock.now = T0 + 30  # every window has ended, but the sweep is not due
    limiter.hit(limit, "user:late")
    assert counters.held() == 101
    clock.now = T0 + counters.sweep_seconds
    limiter.hit(limit, "user:later")
    assert counters.held() == 1  # only "later": "late" ended at T0 + 31
