"""psycopg's waits on gevent's loop (`service.green_waits`), in a process patched as the
service's API and worker processes are."""

from __future__ import annotations

import pytest
from psycopg import waiting

from service import green_waits
from tests.support.commands import child_result


@pytest.mark.postgres
def test_a_patched_process_waits_for_postgresql_on_gevents_loop(database_url: str) -> None:
    result = child_result("tests.support.green_waits_child", database_url)
    assert result["installed"] is True
    # Six statements sleeping 0.3 s each overlap (one after another: 1.8 s), and the hub
    # kept ticking every 10 ms meanwhile.
    assert result["sleepers"]["elapsed"] < 1.0
    assert result["sleepers"]["ticks"] >= 15
    assert result["pipelined"] == sum(range(500))
    readiness = result["readiness"]
    assert readiness["got"] == "ping"
    # Woken with nothing ready at each interval before the other end wrote, then readable.
    assert readiness["seen"][-1] == int(waiting.Ready.R)
    assert readiness["seen"][:-1] and set(readiness["seen"][:-1]) == {0}
    assert readiness["timed_out"] == "_WaitTimeout"
    assert 0.15 < readiness["waited"] < 1.0


def test_an_unpatched_process_keeps_psycopgs_own_wait() -> None:
    before = waiting.wait
    assert green_waits.install() is False
    assert waiting.wait is before
