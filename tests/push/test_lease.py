"""A pass never sends once its lease may have run out: by then another worker may have taken
its jobs and be sending them too. What it could not start in time goes back to the queue,
untried, and goes out once, in a later pass."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from service.clock import clock
from service.extensions import db
from service.models import PushAttempt, PushDelivery, PushJob
from service.push import PushMessage, PushResult
from service.push.fcm import FcmBackend
from service.push.log import LogBackend
from service.worker.dispatch import Dispatcher
from service.worker.runner import Tick, Worker
from tests.push.test_delivery import bid, device, jobs
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn
from tests.support.waiting import wait_until

# FCM answers each send in a quarter of a second, and a worker sends one at a time, giving up
# after a second: a send may take 3 s (two connection attempts and the answer). A lease of 5 s,
# of which the pass keeps 0.5 s to record what it sent, leaves 1.5 s to start sends in.
ANSWER_SECONDS = 0.25
TIMEOUT_SECONDS = 1.0
LEASE_SECONDS = 5.0
SPARE_SECONDS = 0.5
NOW = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def slow_standin() -> Iterator[FcmStandIn]:
    server = FcmStandIn(default_delay=ANSWER_SECONDS).start()
    yield server
    server.stop()


@pytest.fixture
def leased_worker(
    app: Flask, slow_standin: FcmStandIn, tmp_path: Path
) -> Iterator[Callable[[str], Worker]]:
    """Workers named as asked, each with its own firebase app, holding claims LEASE_SECONDS."""
    credentials = slow_standin.write_credentials(tmp_path / "service-account.json")
    backends: list[FcmBackend] = []

    def make(name: str) -> Worker:
        backend = FcmBackend(
            str(credentials),
            slow_standin.url,
            max_concurrency=1,
            timeout_seconds=TIMEOUT_SECONDS,
        )
        backends.append(backend)
        dispatcher = Dispatcher(backend, lease_seconds=LEASE_SECONDS, spare_seconds=SPARE_SECONDS)
        return Worker(app, name=name, dispatcher=dispatcher)

    yield make
    for backend in backends:
        backend.close()


def unfinished(worker: Worker) -> int:
    """Push jobs still to be sent (pending or claimed)."""
    with worker.app.app_context(), db.scope() as session:
        waiting = PushJob.state.in_(("pending", "claimed"))
        return int(session.scalar(select(func.count()).where(waiting)) or 0)


def drain(worker: Worker, seconds: float) -> list[Tick]:
    """Passes of `worker` until no push job is left to send; fails after `seconds`."""
    ticks: list[Tick] = []
    give_up = time.monotonic() + seconds
    while unfinished(worker):
        assert time.monotonic() < give_up, f"pushes still unsent after {seconds} s"
        ticks.append(worker.run_once(housekeeping=False))
    return ticks


def deliveries(worker: Worker) -> list[tuple[str, int]]:
    """Every delivery's state and attempts, in the order they were added."""
    with worker.app.app_context(), db.scope() as session:
        rows = session.execute(
            select(PushDelivery.state, PushDelivery.attempts).order_by(PushDelivery.id)
        )
        return [(state, attempts) for state, attempts in rows]


def attempts(worker: Worker) -> int:
    with worker.app.app_context(), db.scope() as session:
        return int(session.scalar(select(func.count()).select_from(PushAttempt)) or 0)


def unsent_counted() -> float:
    return REGISTRY.get_sample_value("reach_push_unsent_total") or 0.0


@pytest.mark.committed
def test_a_worker_taking_over_after_the_lease_sends_nothing_twice_and_every_push_goes_once(
    client: ApiClient,
    leased_worker: Callable[[str], Worker],
    slow_standin: FcmStandIn,
) -> None:
    """24 pushes, one at a time, take 6 s: more than a 5 s lease. The second worker passes
    as soon as the first one's lease has run out, taking whatever the first still holds."""
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    bids = [bid(client, ana)["id"] for _ in range(24)]
    first, second = leased_worker("first-worker"), leased_worker("second-worker")
    ended: list[float] = []

    def first_pass() -> Tick:
        tick = first.run_once(housekeeping=False)
        ended.append(time.monotonic())
        return tick

    with ThreadPoolExecutor(max_workers=1) as pool:
        began = time.monotonic()
        passing = pool.submit(first_pass)
        lapsed = began + LEASE_SECONDS + 0.2
        wait_until(lambda: time.monotonic() > lapsed, LEASE_SECONDS + 5, "the lease to run out")
        taken_over = second.run_once(housekeeping=False)
        first_tick = passing.result(timeout=60)
    later = drain(second, 60)

    received = Counter(message["data"]["bid_id"] for message in slow_standin.messages())
    assert max(received.values()) == 1, f"sent twice: {received.most_common(3)}"
    assert received == Counter(bids)
    # The first pass started what fitted in its lease, had every answer before it ran out,
    # and left the rest untried.
    assert ended[0] - began < LEASE_SECONDS
    assert 3 <= first_tick.pushes <= 8
    assert first_tick.pushes + first_tick.unsent == 24
    ticks = [first_tick, taken_over, *later]
    assert sum(tick.pushes for tick in ticks) == 24
    # Each push counted one attempt: the untried were not attempts.
    assert deliveries(second) == [("sent", 1)] * 24
    assert attempts(second) == 24
    assert {(job.state, job.attempts) for job in jobs(second)} == {("done", 1)}


class Unsent(LogBackend):
    """The log backend as if each batch's deadline came once its first `sent` messages had
    gone out (the very first answered as `first`, when given)."""

    def __init__(self, sent: int = 0, first: PushResult | None = None) -> None:
        super().__init__()
        self.sent = sent
        self.first = first

    def send_batch(
        self, messages: Sequence[PushMessage], deadline: float | None = None
    ) -> list[PushResult]:
        done = super().send_batch(messages[: self.sent])
        if self.first is not None:
            done[:1] = [dataclasses.replace(self.first, key=messages[0].key)]
        return done + super().send_batch(messages[self.sent :], deadline=0.0)


def bid_to_two_devices(client: ApiClient) -> None:
    """A couple, Ben with two phones, and Ana's bid to him at NOW: one job, two pushes."""
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    device(client, ben, "ben-tablet")
    clock.freeze(NOW)
    bid(client, client.fresh(ana))


def test_a_job_none_of_whose_pushes_could_start_goes_back_untouched_and_due_at_once(
    app: Flask, client: ApiClient, worker: Worker
) -> None:
    bid_to_two_devices(client)
    [queued] = jobs(worker)
    counted = unsent_counted()
    late = Worker(app, name="late-worker", dispatcher=Dispatcher(Unsent()))

    tick = late.run_once(housekeeping=False)

    assert (tick.pushes, tick.unsent, tick.more_due) == (0, 2, True)
    [job] = jobs(worker)
    assert (job.state, job.claimed_by, job.claimed_until, job.attempts) == (
        "pending",
        None,
        None,
        0,
    )
    assert (job.available_at, job.last_error) == (queued.available_at, None)
    assert deliveries(worker) == [("pending", 0), ("pending", 0)]
    assert attempts(worker) == 0
    assert unsent_counted() == counted + 2

    assert worker.run_once(housekeeping=False).pushes == 2
    assert [(job.state, job.attempts) for job in jobs(worker)] == [("done", 1)]
    assert deliveries(worker) == [("sent", 1), ("sent", 1)]
    assert attempts(worker) == 2


@pytest.mark.parametrize(
    ("first", "due_in"),
    [
        (None, timedelta(0)),  # sent: the other one is due at once
        (PushResult("", "retry", error="UNAVAILABLE", retry_after=30.0), timedelta(seconds=30)),
    ],
)
def test_a_job_with_pushes_both_tried_and_unsent_waits_only_as_long_as_the_tried_ask(
    app: Flask,
    client: ApiClient,
    worker: Worker,
    first: PushResult | None,
    due_in: timedelta,
) -> None:
    bid_to_two_devices(client)
    halfway = Worker(app, name="halfway-worker", dispatcher=Dispatcher(Unsent(1, first)))

    tick = halfway.run_once(housekeeping=False)

    assert (tick.pushes, tick.unsent) == (1, 1)
    [job] = jobs(worker)
    assert (job.state, job.claimed_by, job.attempts) == ("pending", None, 1)
    assert job.available_at == NOW + due_in  # FCM's Retry-After, longer than the backoff
    tried = "sent" if first is None else "pending"
    assert deliveries(worker) == [(tried, 1), ("pending", 0)]
    assert attempts(worker) == 1


def test_the_deadline_keeps_the_last_answer_and_the_spare_inside_the_lease(
    app: Flask, client: ApiClient
) -> None:
    """A lease of 60 s, a backend whose sends take up to 20 s, 5 s spare: sends start for 35 s."""

    class Slow(LogBackend):
        longest_send = 20.0

        def __init__(self) -> None:
            super().__init__()
            self.deadlines: list[float | None] = []

        def send_batch(
            self, messages: Sequence[PushMessage], deadline: float | None = None
        ) -> list[PushResult]:
            self.deadlines.append(deadline)
            return super().send_batch(messages, deadline)

    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    bid(client, ana)
    backend = Slow()
    dispatcher = Dispatcher(backend, lease_seconds=60)
    before = time.monotonic()
    with app.app_context(), db.scope() as session:
        assert dispatcher.run(session, "timed-worker") == 1
    after = time.monotonic()

    [deadline] = backend.deadlines
    assert deadline is not None
    assert before + 35 <= deadline <= after + 35


def test_a_lease_with_no_time_to_start_a_send_is_refused() -> None:
    class Slow(LogBackend):
        longest_send = 30.0

    assert Dispatcher(Slow(), lease_seconds=36).sending_seconds == 1
    with pytest.raises(ValueError, match="a lease of 35 s leaves no time to start a send"):
        Dispatcher(Slow(), lease_seconds=35)


def latest_attempt_error(worker: Worker) -> str | None:
    with worker.app.app_context(), db.scope() as session:
        last = select(PushAttempt.error).order_by(PushAttempt.id.desc()).limit(1)
        return session.scalar(last)


@pytest.mark.committed
def test_an_answer_trickling_in_past_the_lease_is_cut_off_and_the_push_goes_once(
    client: ApiClient,
    leased_worker: Callable[[str], Worker],
    slow_standin: FcmStandIn,
) -> None:
    """FCM takes the message and answers 200 at once, then the rest of its answer a byte every
    0.5 s: each byte well within the 1 s timeout, the whole answer over 30 s, far past the 5 s
    lease. The pass cuts the send off at its time and ends inside its lease, the push recorded
    as sent; the worker that comes after the lease finds nothing to send again."""
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    sent = bid(client, ana)
    slow_standin.script("ben-phone", fcm.trickling(0.5, body_only=True))
    first, second = leased_worker("first-worker"), leased_worker("second-worker")
    ticks: list[Tick] = []
    ended: list[float] = []

    def first_pass() -> None:
        ticks.append(first.run_once(housekeeping=False))
        ended.append(time.monotonic())

    began = time.monotonic()
    passing = threading.Thread(target=first_pass, daemon=True)
    passing.start()
    lapsed = began + LEASE_SECONDS + 0.2
    wait_until(lambda: time.monotonic() > lapsed, LEASE_SECONDS + 5, "the lease to run out")
    taken_over = second.run_once(housekeeping=False)

    assert [m["data"]["bid_id"] for m in slow_standin.messages()] == [sent["id"]]
    assert taken_over.pushes == 0
    assert ended and ended[0] - began < LEASE_SECONDS
    assert ticks[0].pushes == 1
    assert deliveries(second) == [("sent", 1)]
    assert [(job.state, job.attempts) for job in jobs(second)] == [("done", 1)]
    assert latest_attempt_error(second) == "ANSWER_CUT_OFF"
    wait_until(lambda: slow_standin.answers_cut == 1, 5, "the stand-in to see the hang-up")


def test_an_answer_trickling_from_its_first_byte_is_cut_off_and_tried_again(
    leased_worker: Callable[[str], Worker],
    slow_standin: FcmStandIn,
    client: ApiClient,
) -> None:
    """Not even the status line has come when the send's time is up: whether FCM took the
    message is unknown, so it is tried again after a backoff, as after a timeout."""
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    bid(client, ana)
    slow_standin.script("ben-phone", fcm.trickling(0.5))
    worker = leased_worker("only-worker")

    began = time.monotonic()
    tick = worker.run_once(housekeeping=False)

    assert time.monotonic() - began < LEASE_SECONDS - SPARE_SECONDS
    assert tick.pushes == 1
    assert deliveries(worker) == [("pending", 1)]
    [job] = jobs(worker)
    assert (job.state, job.attempts, job.last_error) == ("pending", 1, "retrying")
    assert latest_attempt_error(worker) == "DEADLINE_EXCEEDED"

    drain(worker, 30)
    assert deliveries(worker) == [("sent", 2)]
    assert len(slow_standin.messages()) == 2


class HeldUp(LogBackend):
    """FCM asks for every push to be tried again, answering only once `meanwhile` has run: as
    if the pass were held up (by a lock, a database away) until after its lease ran out."""

    def __init__(self, meanwhile: Callable[[], object]) -> None:
        super().__init__()
        self.meanwhile = meanwhile

    def send_batch(
        self, messages: Sequence[PushMessage], deadline: float | None = None
    ) -> list[PushResult]:
        self.meanwhile()
        return [PushResult(m.key, "retry", error="UNAVAILABLE") for m in messages]


def held_up_worker(app: Flask, meanwhile: Callable[[], object]) -> Worker:
    """The worker "held-up-worker", whose pass is held up by `meanwhile` (`HeldUp`)."""
    dispatcher = Dispatcher(
        HeldUp(meanwhile), lease_seconds=LEASE_SECONDS, spare_seconds=SPARE_SECONDS
    )
    return Worker(app, name="held-up-worker", dispatcher=dispatcher)


@pytest.mark.parametrize("taker", ["second-worker", "held-up-worker"])
def test_a_pass_held_up_past_its_lease_leaves_the_results_of_whoever_took_its_jobs_over(
    app: Flask, client: ApiClient, worker: Worker, taker: str
) -> None:
    """Its lease ran out while its pushes were out; another worker (or a later pass of the same
    one) took the job over and sent both pushes. The held-up pass's answers come last: they are
    not written over the sent deliveries, nor does the job go back to the queue."""
    bid_to_two_devices(client)
    taking_over = Worker(app, name=taker, dispatcher=Dispatcher(LogBackend()))

    def lease_runs_out_and_the_job_is_taken_over() -> None:
        clock.advance(timedelta(seconds=LEASE_SECONDS + 1))
        assert taking_over.run_once(housekeeping=False).pushes == 2

    held_up = held_up_worker(app, lease_runs_out_and_the_job_is_taken_over)

    assert held_up.run_once(housekeeping=False).pushes == 2

    assert [(job.state, job.attempts) for job in jobs(worker)] == [("done", 1)]
    assert deliveries(worker) == [("sent", 1), ("sent", 1)]
    with worker.app.app_context(), db.scope() as session:
        sent = session.execute(select(PushDelivery.message_id, PushDelivery.last_error)).all()
        outcomes = sorted(session.scalars(select(PushAttempt.outcome)))
    assert all(message_id is not None and error is None for message_id, error in sent), sent
    assert outcomes == ["retry", "retry", "sent", "sent"]  # both passes' tries, as they were
    assert worker.run_once(housekeeping=False).pushes == 0  # nothing to send again


def test_a_pass_held_up_past_its_lease_leaves_the_job_to_the_later_lease_of_its_own_worker(
    app: Flask, client: ApiClient, worker: Worker
) -> None:
    """The same worker's later pass took the job over (a new lease, the same name) and its
    pushes are out: the held-up pass's answers touch neither the job nor its deliveries."""
    bid_to_two_devices(client)
    later_lease = NOW + timedelta(seconds=2 * LEASE_SECONDS + 1)

    def lease_runs_out_and_a_later_pass_claims_the_job() -> None:
        clock.advance(timedelta(seconds=LEASE_SECONDS + 1))
        with app.app_context(), db.scope() as session:
            job = session.execute(select(PushJob)).scalar_one()
            job.claimed_until = later_lease  # still "held-up-worker", with another lease
            session.commit()

    held_up = held_up_worker(app, lease_runs_out_and_a_later_pass_claims_the_job)

    assert held_up.run_once(housekeeping=False).pushes == 2

    [job] = jobs(worker)
    assert (job.state, job.claimed_by, job.claimed_until, job.attempts) == (
        "claimed",
        "held-up-worker",
        later_lease,
        0,
    )
    assert deliveries(worker) == [("pending", 0), ("pending", 0)]
    assert attempts(worker) == 2  # they did go out
