"""A device deleted while its push is out: the pass still records every push it sent, so no
other phone gets the same push twice, and the deleted one is never tried again."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from service.clock import clock
from service.worker.runner import Worker
from tests.push.test_delivery import bid, device, jobs
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn
from tests.support.waiting import wait_until


@pytest.mark.committed
def test_a_device_deleted_while_its_push_is_out_leaves_the_pass_recorded(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    tablet = device(client, ben, "ben-tablet")
    standin.script("ben-tablet", fcm.Answer(delay=1.0))
    bid(client, ana)
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(fcm_worker.run_once)
        wait_until(lambda: len(standin.messages()) == 2, what="both pushes on their way to FCM")
        gone = client.delete(f"/api/v1/devices/{tablet['id']}", as_=ben)
        assert gone.status_code == 204
        assert sending.result(timeout=10).pushes == 2
    assert [job.state for job in jobs(fcm_worker)] == ["done"]
    # Long after any lease has run out, nothing goes out again.
    clock.advance(timedelta(hours=1))
    assert fcm_worker.run_once().pushes == 0
    assert sorted(m["token"] for m in standin.messages()) == ["ben-phone", "ben-tablet"]
