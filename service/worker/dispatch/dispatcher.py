"""The Dispatcher: one worker's passes, each claiming due jobs, sending, recording."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from service.clock import clock
from service.push import PushBackend, PushResult
from service.push.timing import LEASE_SPARE_SECONDS, sending_window
from service.worker.dispatch.plan import _plan
from service.worker.dispatch.policy import MAX_PAUSE_SECONDS, RetryPolicy
from service.worker.dispatch.record import _record
from service.worker.dispatch.results import _results, _schedule
from service.worker.dispatch.statements import _Statements, _statements

log = logging.getLogger("reach.push")


@dataclass
class Dispatcher:
    """Runs the passes of one worker: claims due jobs for `lease_seconds`, sends, records.

    Once a lease has run out another worker may claim the same jobs and send them again. So a
    pass starts sends only while its lease leaves room for the last one's answer (the
    backend's `longest_send`) and `spare_seconds` more to record them; whatever it could not
    start in time goes back to the queue, due at once and not counted as an attempt.
    """

    backend: PushBackend
    policy: RetryPolicy = RetryPolicy()
    batch: int = 32
    lease_seconds: float = 120
    spare_seconds: float = LEASE_SPARE_SECONDS
    # How many jobs the last pass claimed: a whole batch means more may be due at once.
    last_claimed: int = 0
    # How many pushes the last pass left untried, their turn past its deadline: due at once.
    last_unsent: int = 0
    # FCM said it is overloaded (503 with Retry-After): no pass claims anything until then.
    paused_until: datetime | None = None

    def __post_init__(self) -> None:
        if self.sending_seconds <= 0:
            raise ValueError(
                f"a lease of {self.lease_seconds:g} s leaves no time to start a send: one send "
                f"of the {self.backend.name} backend may take {self.backend.longest_send:g} s, "
                f"and a pass keeps {self.spare_seconds:g} s of its lease to record it"
            )

    @property
    def sending_seconds(self) -> float:
        """How long after its claim a pass may still start a send."""
        return sending_window(self.lease_seconds, self.backend.longest_send, self.spare_seconds)

    def run(self, session: Session, worker: str) -> int:
        """Claim, send and record one batch. Returns how many messages were sent out."""
        sql = _statements(session.get_bind().dialect, self.batch)
        leased = time.monotonic()  # no later than the lease's start: the deadline errs early
        now = clock.now()
        self.last_claimed = self.last_unsent = 0
        if self.paused_until is not None and now < self.paused_until:
            return 0  # every send would be refused, and count as one of its push's attempts
        until = now + timedelta(seconds=self.lease_seconds)
        claimed = self._claim(session, sql, worker, now, until)
        self.last_claimed = len(claimed)
        if not claimed:
            session.commit()
            return 0
        live, gone = [], []
        for job in claimed:
            if job.expires_at is not None and job.expires_at <= now:
                gone.append(job.id)
            else:
                live.append(job)
        if gone:
            # The claim is committed first. PostgreSQL checks a row's foreign keys again when
            # one transaction updates it twice, so expiring a job this transaction claimed
            # would lock its couple (FOR KEY SHARE): a bid's expiry or answer holds the couple
            # as it withdraws that very job, waiting for this claim -- a deadlock.
            session.commit()
            lease = {"worker": worker, "until": until}
            session.execute(sql.expire, {"ids": gone, "now": now, **lease})
        plan = _plan(session, sql, live, now)
        plan.until = until
        session.commit()  # claims and deliveries exist before anything leaves the process
        started = clock.now()
        sends = plan.sends
        deadline = leased + self.sending_seconds
        results = self.backend.send_batch([s.message for s in sends], deadline) if sends else []
        recorded = _results(self.policy, self.lease_seconds, worker, plan, results, started)
        _schedule(self.policy, plan, recorded)
        self.last_unsent = recorded.unsent
        self._pause_for(worker, results, recorded.now)
        _record(session, sql, worker, plan, recorded, leased + self.lease_seconds)
        return len(sends) - self.last_unsent

    def _pause_for(self, worker: str, results: Sequence[PushResult], now: datetime) -> None:
        """FCM answers 503 when it is overloaded, and its Retry-After is for every send, not
        only that one: until then this worker claims nothing, rather than have each push it
        would send refused too, one attempt nearer to being dead-lettered."""
        overloaded = [
            result.retry_after
            for result in results
            if result.error == "UNAVAILABLE" and result.retry_after
        ]
        if not overloaded:
            return
        seconds = min(max(overloaded), MAX_PAUSE_SECONDS)  # an absurd one: 10 min
        self.paused_until = now + timedelta(seconds=seconds)
        log.warning(
            "FCM is overloaded: no pushes are sent until its Retry-After has passed",
            extra={"worker": worker, "retry_after": seconds},
        )

    def _claim(
        self, session: Session, sql: _Statements, worker: str, now: datetime, until: datetime
    ) -> list[Row[Any]]:
        """Take up to `batch` due jobs (or jobs whose worker's lease ran out), in due order,
        leased until `until`."""
        lease = {"now": now, "worker": worker, "until": until}
        if sql.claim is not None:
            rows = list(session.execute(sql.claim, lease))
        else:  # SQLite before 3.35: select, then update what was selected
            ids = list(session.scalars(sql.pick, {"now": now}))
            if not ids:
                return []
            session.execute(sql.lease, {**lease, "ids": ids})
            rows = list(session.execute(sql.claimed, {"ids": ids}))
        rows.sort(key=lambda job: (job.available_at, job.id))
        return rows
