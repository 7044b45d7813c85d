"""Push dispatch: claim due jobs from the outbox, send to every active device, record it all.

A pass issues the same few statements whatever the number of jobs it takes (Core, not ORM
objects: the unit of work was most of the worker's CPU):

1. one transaction: claim the jobs (`UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED
   LIMIT n) RETURNING`); add the missing deliveries for every recipient's active devices (one
   `INSERT ... SELECT ... ON CONFLICT DO NOTHING`); read every delivery of the jobs with its
   device (one SELECT); mark expired jobs, and skip the deliveries whose device was disabled or
   moved meanwhile (one UPDATE each, only if any); COMMIT -- the deliveries exist before
   anything leaves the process (the claim is committed on its own first when some of its jobs
   have expired: `Dispatcher.run`);
2. the batch goes out, each send started only while the lease leaves room for its answer
   (`service/push/timing.py`): what the pass could not start in time stays pending, untried;
3. one transaction: the jobs still held with the pass's lease (one SELECT ... FOR NO KEY
   UPDATE: only their results are recorded, not over those of a worker that took one over),
   the jobs by outcome (one UPDATE for the done, one for the dead, one
   executemany for those that wait to be retried, one UPDATE for those none of whose pushes
   could be started, one executemany for those whose recipient is in quiet hours now, each only
   if any), then dead tokens (one UPDATE, and one INSERT remembering those dead for good, only
   if any), then the held jobs' deliveries' results (one executemany UPDATE) and every
   attempt (one INSERT); COMMIT. The pushes have left by then: a
   connection the database dropped meanwhile does not lose their results (the transaction is
   tried again while the lease lasts), or they would go out again.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Dialect,
    Executable,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from service import metrics
from service.clock import clock
from service.domain.quiet_hours import QuietHours
from service.errors import database_said, is_unavailable
from service.models import DeadPushToken, Device, PushAttempt, PushDelivery, PushJob, User
from service.push import PushBackend, PushMessage, PushResult
from service.push.timing import LEASE_SPARE_SECONDS, sending_window
from service.services import devices, scans

log = logging.getLogger("reach.push")

# While the database is away after a pass's pushes went out: the first wait before writing
# their results again, doubled after each failure up to the second.
RECORD_PAUSE_SECONDS = 0.2
RECORD_PAUSE_MAX_SECONDS = 2.0

TERMINAL = ("sent", "unregistered", "invalid", "failed", "dead", "skipped")

JOBS = cast(Table, PushJob.__table__)
DELIVERIES = cast(Table, PushDelivery.__table__)
ATTEMPTS = cast(Table, PushAttempt.__table__)
DEVICES = cast(Table, Device.__table__)
DEAD_TOKENS = cast(Table, DeadPushToken.__table__)
USERS = cast(Table, User.__table__)


# The longest a worker claims nothing after FCM said it is overloaded (503 with Retry-After).
MAX_PAUSE_SECONDS = 600.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped at `max_seconds`; FCM's Retry-After wins when it
    asks for longer, up to `max_retry_after_seconds` (a day): an absurd one would overflow the
    retry's time and fail the pass after its pushes went out, and they would all go out again
    after the lease.

    A push FCM could not take (429, 5xx, a timeout, FCM or the network away) is tried again for
    as long as it is of use: until what it announces expires (a bid's push: its bid's expiry),
    and at most `max_attempts` times per device -- at the capped backoff, over a day (a push with
    no expiry of its own, a repair message's or a break's reminder, is given up after that).
    Only then is it dead-lettered: an outage of FCM shorter than that loses no push."""

    base_seconds: float = 2.0
    max_seconds: float = 300.0
    max_attempts: int = 600
    max_retry_after_seconds: float = 86400.0

    def backoff(self, attempts: int) -> float:
        """The wait after `attempts` tries, jittered."""
        doublings = min(max(0, attempts - 1), 60)  # past the cap long before; never overflows
        backoff = min(self.max_seconds, self.base_seconds * 2**doublings)
        return backoff * random.uniform(0.5, 1.0)

    def asked(self, retry_after: float | None) -> float:
        """The wait FCM's Retry-After asks for, an absurd one cut to a day."""
        return min(retry_after or 0.0, self.max_retry_after_seconds)


@dataclass
class _Planned:
    """One delivery going out in this pass."""

    delivery_id: int
    job_id: int
    attempts: int  # before this try
    message: PushMessage


@dataclass
class _Plan:
    jobs: list[Row[Any]]  # the claimed jobs that are not expired, in claim order
    # every delivery state of those jobs, by job; the planned ones are overwritten in _record
    states: dict[int, dict[int, str]]
    sends: list[_Planned]
    # the quiet hours (start, end, time zone) of the recipients of the non-urgent jobs with a
    # pending delivery, by job: a job is deferred by them, and a retry waits them out
    quiet: dict[int, tuple[str | None, str | None, str]] = field(default_factory=dict)
    # the non-urgent jobs whose recipient is in quiet hours now (the workers were away when they
    # came due, or the hours changed): none of their pushes go, and they wait until these end
    deferred: dict[int, datetime] = field(default_factory=dict)
    # the end of this pass's lease, as written in its claim: the jobs are its own only while
    # they are still claimed by its worker with this very lease
    until: datetime | None = None


@dataclass
class _Recorded:
    """The rows that record a pass's results, made once however often they are written."""

    now: datetime
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    unregistered: dict[str, list[Any]] = field(default_factory=dict)
    # the tokens FCM declared dead for good, by their SHA-256: their reason
    dead_tokens: dict[str, str] = field(default_factory=dict)
    retry_after: dict[int, float] = field(default_factory=dict)
    tried: set[int] = field(default_factory=set)  # the jobs some of whose pushes went out
    # when each job FCM asked to try again is due again (`Dispatcher._schedule`)
    due: dict[int, datetime] = field(default_factory=dict)
    job_of: dict[int, int] = field(default_factory=dict)  # each delivery's job
    unsent: int = 0


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
        plan = self._plan(session, sql, live, now)
        plan.until = until
        session.commit()  # claims and deliveries exist before anything leaves the process
        started = clock.now()
        sends = plan.sends
        deadline = leased + self.sending_seconds
        results = self.backend.send_batch([s.message for s in sends], deadline) if sends else []
        recorded = self._results(worker, plan, results, started)
        self._schedule(plan, recorded)
        self.last_unsent = recorded.unsent
        self._pause_for(worker, results, recorded.now)
        self._record(session, sql, worker, plan, recorded, leased + self.lease_seconds)
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

    def _plan(
        self, session: Session, sql: _Statements, jobs: list[Row[Any]], now: datetime
    ) -> _Plan:
        """A delivery for every active device of each recipient; the still pending ones go."""
        plan = _Plan(jobs, {job.id: {} for job in jobs}, [])
        if not jobs:
            return plan
        ids = [job.id for job in jobs]
        session.execute(sql.add_missing, {"ids": ids, "now": now})
        by_job: dict[int, list[Any]] = {job_id: [] for job_id in ids}
        for row in session.execute(sql.deliveries, {"ids": ids}):
            plan.states[row.job_id][row.id] = row.state
            by_job[row.job_id].append(row)
        skipped: list[int] = []
        for job in jobs:
            common = _common(job.payload, job.expires_at, now)
            for row in by_job[job.id]:
                if row.state != "pending":
                    continue
                if not row.active or row.user_id != job.recipient_id:
                    # Disabled, or moved to someone else, since: this push is not for it. Its
                    # delivery ends here, or the job would wait for it forever.
                    skipped.append(row.id)
                    plan.states[job.id][row.id] = "skipped"
                    continue
                if not job.urgent:
                    plan.quiet[job.id] = (row.quiet_start, row.quiet_end, row.timezone)
                    reachable = _reachable(plan.quiet[job.id], now)
                    if reachable > now:
                        plan.deferred[job.id] = reachable
                        continue
                message = PushMessage(
                    key=f"{job.id}:{row.device_id}",
                    device_id=row.device_id,
                    platform=row.platform,
                    token=row.push_token,
                    **{**common, "body": _body(job.payload, row.notes_on_lock_screen)},
                )
                plan.sends.append(_Planned(row.id, job.id, row.attempts, message))
        if skipped:
            session.execute(sql.skip, {"ids": skipped, "now": now})
        return plan

    def _results(
        self, worker: str, plan: _Plan, results: Sequence[PushResult], started: datetime
    ) -> _Recorded:
        """What became of every push sent, as the rows that record it (counted and logged)."""
        now = clock.now()
        recorded = _Recorded(now)
        verbose = log.isEnabledFor(logging.INFO)
        for send, result in zip(plan.sends, results, strict=True):
            message = send.message
            if result.outcome == "unsent":
                recorded.unsent += 1  # its delivery stays pending, with its attempts as they were
                continue
            recorded.tried.add(send.job_id)
            recorded.job_of[send.delivery_id] = send.job_id
            tries = send.attempts + 1
            state: str = result.outcome
            if state == "retry":
                if tries >= self.policy.max_attempts:
                    state = "dead"
                else:
                    state = "pending"
                    wait = recorded.retry_after.get(send.job_id, 0.0)
                    recorded.retry_after[send.job_id] = max(wait, result.retry_after or 0.0)
            elif state == "unregistered":
                reason = devices.disabled_reason_of(result.error)
                recorded.unregistered.setdefault(reason, []).append(message.device_id)
                if reason in devices.DEAD:
                    recorded.dead_tokens[devices.token_sha256(message.token)] = reason
            plan.states[send.job_id][send.delivery_id] = state
            sent = state == "sent"
            # Only pending deliveries are sent, so message_id and sent_at were still empty.
            recorded.deliveries.append(
                {
                    "delivery_id": send.delivery_id,
                    "state": state,
                    "attempts": tries,
                    "last_error": result.error,
                    "message_id": result.message_id if sent else None,
                    "sent_at": now if sent else None,
                    "updated_at": now,
                }
            )
            recorded.attempts.append(
                {
                    "delivery_id": send.delivery_id,
                    "worker": worker,
                    "outcome": result.outcome,
                    "error": result.error,
                    "retry_after": result.retry_after,
                    "started_at": started,
                    "finished_at": now,
                }
            )
            metrics.push_outcome(result.outcome, message.platform)
            if verbose:
                log.info(
                    "push %s",
                    result.outcome,
                    extra={
                        "push_key": message.key,
                        "platform": message.platform,
                        "error": result.error,
                        "worker": worker,
                    },
                )
        if recorded.unsent:
            metrics.pushes_unsent(recorded.unsent)
            log.warning(
                "pushes left for the next pass: the lease had no time left for their answers",
                extra={
                    "worker": worker,
                    "pushes": recorded.unsent,
                    "lease_seconds": self.lease_seconds,
                },
            )
        return recorded

    def _schedule(self, plan: _Plan, recorded: _Recorded) -> None:
        """When each job FCM asked to try again is due again: after its backoff (or FCM's
        Retry-After), and if that falls in its recipient's quiet hours, when they end. A job
        whose own backoff ends only once what it announces has expired is of no more use: its
        pushes FCM could not take are dead-lettered now. Decided once per pass, however often
        its results must be written."""
        given_up: set[int] = set()
        for job in plan.jobs:
            if job.id not in recorded.retry_after or "pending" not in plan.states[job.id].values():
                continue
            backoff = self.policy.backoff(job.attempts + 1)
            next_try = recorded.now + timedelta(seconds=backoff)
            if job.expires_at is not None and next_try >= job.expires_at:
                given_up.add(job.id)
                continue
            # FCM may ask for longer: it is obeyed, and a push whose bid expires meanwhile is
            # withdrawn with it (as one never pushed), not dead-lettered.
            delay = max(backoff, self.policy.asked(recorded.retry_after[job.id]))
            due = recorded.now + timedelta(seconds=delay)
            # A retry that would fall in the recipient's quiet hours waits them out (a bid that
            # expires meanwhile is then withdrawn as one never pushed, not dead-lettered).
            quiet = QuietHours.of(*plan.quiet[job.id]) if job.id in plan.quiet else None
            recorded.due[job.id] = quiet.reachable_from(due) if quiet is not None else due
        if not given_up:
            return
        for row in recorded.deliveries:
            job_id = recorded.job_of[row["delivery_id"]]
            if job_id in given_up and row["state"] == "pending":
                row["state"] = "dead"
                plan.states[job_id][row["delivery_id"]] = "dead"

    def _record(
        self,
        session: Session,
        sql: _Statements,
        worker: str,
        plan: _Plan,
        recorded: _Recorded,
        lease_ends: float,
    ) -> None:
        """Write what became of the pushes sent, and commit. They have left: if the database
        drops the connection meanwhile (a restart), the write is tried again on a new one while
        the lease lasts. Given up, the lease would run out and the pushes go out a second time."""
        pause = RECORD_PAUSE_SECONDS
        while True:
            try:
                self._write(session, sql, worker, plan, recorded)
                session.commit()
                return
            except Exception as exc:
                if not is_unavailable(exc) or time.monotonic() + pause >= lease_ends:
                    raise
                log.warning(
                    "recording pushes sent failed: database unavailable; trying again",
                    extra={"worker": worker, "error": database_said(exc)},
                )
                session.rollback()
            time.sleep(pause)
            pause = min(2 * pause, RECORD_PAUSE_MAX_SECONDS)

    def _write(
        self, session: Session, sql: _Statements, worker: str, plan: _Plan, recorded: _Recorded
    ) -> None:
        # The jobs, then the devices, then their deliveries: the order deleting an account (its
        # couple's jobs, then its devices, whose deliveries go with them) or a device takes
        # them. Any other order deadlocks with a deletion under way.
        #
        # Only what this pass still holds is recorded: a pass held up past its lease (by a lock,
        # a database away) must not write over the results of the worker that took its jobs
        # over. Its jobs are locked first, those still claimed with its lease, so none can be
        # taken over before this commits; the rest belong to someone else now.
        now = recorded.now
        lease = {"worker": worker, "until": plan.until}
        held: set[int] = set()
        if plan.jobs:
            ids = [job.id for job in plan.jobs]
            held = set(session.scalars(sql.holding, {"ids": ids, **lease}))
        self._finish_jobs(session, sql, plan, recorded.due, recorded.tried, now, lease)
        for reason, device_ids in recorded.unregistered.items():
            session.execute(sql.unregister, {"ids": device_ids, "reason": reason, "now": now})
        if recorded.dead_tokens:
            # Remembered beyond their devices: registering one again stays refused.
            dead = sorted(recorded.dead_tokens.items())  # one order for every worker
            rows = [{"token_sha256": h, "reason": r, "created_at": now} for h, r in dead]
            session.execute(sql.bury, rows)
        ours = [row for row in recorded.deliveries if recorded.job_of[row["delivery_id"]] in held]
        if ours:
            session.execute(sql.delivered, ours)
        if recorded.attempts:  # what went out, whoever holds its job now
            session.execute(sql.attempts, recorded.attempts)

    def _finish_jobs(
        self,
        session: Session,
        sql: _Statements,
        plan: _Plan,
        retry_due: dict[int, datetime],
        tried: set[int],
        now: datetime,
        lease: dict[str, Any],
    ) -> None:
        """Done, dead-lettered, or pending again -- from every delivery's state: after a backoff
        if FCM asked for a retry, at once if only pushes left unsent wait, and untouched (not an
        attempt, its place in the queue kept) if none of its pushes could be started.

        Only the jobs this worker still holds: one cancelled meanwhile (an unpair, a deleted
        account) stays cancelled, and one whose lease ran out belongs to whoever took it over.
        """
        done: list[int] = []
        dead: list[int] = []
        again: list[dict[str, Any]] = []
        released: list[int] = []
        deferred: list[dict[str, Any]] = []
        for job in plan.jobs:
            states = plan.states[job.id].values()
            if job.id in plan.deferred:
                until = plan.deferred[job.id]
                deferred.append({"job_id": job.id, "available_at": until, **lease})
            elif "pending" in states and job.id not in tried:
                released.append(job.id)
            elif "pending" in states:
                due = retry_due.get(job.id, now)
                again.append({"job_id": job.id, "available_at": due, **lease})
            elif "dead" in states or "failed" in states:
                dead.append(job.id)  # dead-lettered: operators can see it and send it again
            else:
                done.append(job.id)
        if done:
            session.execute(sql.done, {"ids": done, "now": now, **lease})
        if dead:
            session.execute(sql.dead, {"ids": dead, "now": now, **lease})
        if again:
            session.execute(sql.again, again)
        if released:
            session.execute(sql.release, {"ids": released, **lease})
        if deferred:
            session.execute(sql.defer, deferred)


class _Statements:
    """A pass's statements, built once per dialect and batch size: built anew on every pass,
    they cost more CPU than running them does (the SQL is compiled once either way)."""

    def __init__(self, dialect: Dialect, batch: int) -> None:
        def param(name: str, column: ColumnElement[Any]) -> BindParameter[Any]:
            return bindparam(name, type_=column.type)

        ids: BindParameter[Any] = bindparam("ids", expanding=True)
        now = param("now", JOBS.c.available_at)
        self.pick = _pick(now, batch, lock=dialect.name == "postgresql")
        claimed = (
            JOBS.c.id,
            JOBS.c.recipient_id,
            JOBS.c.payload,
            JOBS.c.available_at,
            JOBS.c.expires_at,
            JOBS.c.attempts,
            JOBS.c.urgent,
        )
        lease = {
            "state": "claimed",
            "claimed_by": param("worker", JOBS.c.claimed_by),
            "claimed_until": param("until", JOBS.c.claimed_until),
        }
        self.claim = None
        if dialect.update_returning:
            claim = update(JOBS).where(JOBS.c.id.in_(self.pick)).values(lease)
            self.claim = claim.returning(*claimed)
        self.lease = update(JOBS).where(JOBS.c.id.in_(ids)).values(lease)
        self.claimed = select(*claimed).where(JOBS.c.id.in_(ids))
        # Still this pass's: claimed by its worker with its lease (not taken over since, by
        # another worker or by a later pass of the same one).
        held = and_(
            JOBS.c.state == "claimed",
            JOBS.c.claimed_by == param("worker", JOBS.c.claimed_by),
            JOBS.c.claimed_until == param("until", JOBS.c.claimed_until),
        )
        # Locks them as their UPDATE would (FOR NO KEY UPDATE), before anything is recorded.
        self.holding = (
            select(JOBS.c.id).where(JOBS.c.id.in_(ids), held).with_for_update(key_share=True)
        )
        # Only while this worker holds them: a job withdrawn meanwhile stays cancelled.
        self.expire = (
            update(JOBS)
            .where(JOBS.c.id.in_(ids), held)
            .values(
                state="expired",
                finished_at=now,
                last_error="expired",
                claimed_by=None,
                claimed_until=None,
            )
        )

        # Every (job, active device of its recipient) pair that has no delivery yet.
        pairs = (
            select(JOBS.c.id, DEVICES.c.id, DEVICES.c.platform, now)
            .join_from(JOBS, DEVICES, DEVICES.c.user_id == JOBS.c.recipient_id)
            .where(JOBS.c.id.in_(ids), DEVICES.c.active.is_(True))
        )
        self.add_missing = _insert_new(
            dialect,
            DELIVERIES,
            ["job_id", "device_id"],
            ["job_id", "device_id", "platform", "updated_at"],
            pairs,
        )
        self.deliveries = (
            select(
                DELIVERIES.c.id,
                DELIVERIES.c.job_id,
                DELIVERIES.c.state,
                DELIVERIES.c.attempts,
                DEVICES.c.id.label("device_id"),
                DEVICES.c.user_id,
                DEVICES.c.platform,
                DEVICES.c.push_token,
                DEVICES.c.active,
                USERS.c.notes_on_lock_screen,
                USERS.c.timezone,
                USERS.c.quiet_start,
                USERS.c.quiet_end,
            )
            .join_from(DELIVERIES, DEVICES, DEVICES.c.id == DELIVERIES.c.device_id)
            .join(USERS, USERS.c.id == DEVICES.c.user_id)
            .where(DELIVERIES.c.job_id.in_(ids))
            .order_by(DELIVERIES.c.id)
        )

        self.skip = (
            update(DELIVERIES)
            .where(DELIVERIES.c.id.in_(ids))
            .values(state="skipped", last_error="device disabled or moved", updated_at=now)
        )
        self.delivered = update(DELIVERIES).where(DELIVERIES.c.id == bindparam("delivery_id"))
        # Only for the deliveries still there: a device deleted while its push was out takes
        # its deliveries with it, and the rest of the pass must still be recorded. The lock
        # makes a deletion under way either wait for this pass or be seen as done.
        delivery = param("delivery_id", ATTEMPTS.c.delivery_id)
        still_there = (
            select(DELIVERIES.c.id)
            .where(DELIVERIES.c.id == delivery)
            .with_for_update(read=True, key_share=True)
            .exists()
        )
        tried = ("worker", "outcome", "error", "retry_after", "started_at", "finished_at")
        self.attempts = insert(ATTEMPTS).from_select(
            ["delivery_id", *tried],
            select(delivery, *(param(name, ATTEMPTS.c[name]) for name in tried)).where(still_there),
        )
        self.bury = _insert_new(dialect, DEAD_TOKENS, ["token_sha256"])
        self.unregister = (
            update(DEVICES)
            .where(DEVICES.c.id.in_(ids))
            .values(
                active=False,
                disabled_reason=param("reason", DEVICES.c.disabled_reason),
                updated_at=now,
            )
        )
        finished = {"attempts": JOBS.c.attempts + 1, "claimed_by": None, "claimed_until": None}
        self.done = (
            update(JOBS)
            .where(JOBS.c.id.in_(ids), held)
            .values(state="done", finished_at=now, **finished)
        )
        self.dead = (
            update(JOBS)
            .where(JOBS.c.id.in_(ids), held)
            .values(state="dead", finished_at=now, last_error="gave up: see attempts", **finished)
        )
        self.again = (
            update(JOBS)
            .where(JOBS.c.id == bindparam("job_id"), held)
            .values(state="pending", last_error="retrying", **finished)
        )
        self.release = (
            update(JOBS)
            .where(JOBS.c.id.in_(ids), held)
            .values(state="pending", claimed_by=None, claimed_until=None)
        )
        # Not an attempt: the job waits for its recipient's quiet hours to end.
        self.defer = (
            update(JOBS)
            .where(JOBS.c.id == bindparam("job_id"), held)
            .values(state="pending", claimed_by=None, claimed_until=None)
        )


def _pick(now: BindParameter[Any], batch: int, lock: bool) -> Select[Any]:
    """The ids of up to `batch` jobs to claim: first those whose worker's lease ran out, then
    the pending ones whose time has come, in due order (`lock`: each row locked, the ones
    another worker holds skipped). Each kind is an ordered scan of `ix_push_jobs_due` that
    stops at `batch` (`scans.first_of_each`), however long the queue has grown."""
    kinds = (
        (JOBS.c.state == "claimed", JOBS.c.claimed_until < now),
        (JOBS.c.state == "pending", JOBS.c.available_at <= now),
    )
    each = [select(JOBS.c.id).where(*where).order_by(JOBS.c.available_at) for where in kinds]
    if lock:
        each = [scan.with_for_update(skip_locked=True) for scan in each]
    due = scans.first_of_each(each, batch, "due_jobs")
    return select(due.c.id).limit(scans.literal_limit(batch))


def _insert_new(
    dialect: Dialect,
    table: Table,
    keys: list[str],
    columns: list[str] | None = None,
    rows: Select[Any] | None = None,
) -> Executable:
    """INSERT (... SELECT `rows`, if given) that skips the rows whose unique `keys` are there."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement: Any = postgresql.insert(table)
    elif dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(table)
    else:
        raise NotImplementedError(
            f"push dispatch supports PostgreSQL and SQLite, not {dialect.name}"
        )
    if rows is not None:
        statement = statement.from_select(columns, rows)
    return statement.on_conflict_do_nothing(index_elements=keys)


@functools.lru_cache(maxsize=16)
def _statements(dialect: Dialect, batch: int) -> _Statements:
    return _Statements(dialect, batch)


def _reachable(quiet: tuple[str | None, str | None, str], now: datetime) -> datetime:
    """When a recipient with these quiet hours (start, end, time zone) can be reached."""
    hours = QuietHours.of(*quiet)
    return now if hours is None else hours.reachable_from(now)


def _body(payload: dict[str, Any], notes_on_lock_screen: bool) -> str | None:
    """The notification's text: a bid's note only while its recipient shows notes on the lock
    screen, decided as it is sent (they may have stopped since the bid was queued)."""
    note = payload.get("note")
    if note and notes_on_lock_screen:
        return str(note)
    body = payload.get("body")
    return None if body is None else str(body)


def _common(payload: dict[str, Any], expires_at: datetime | None, now: datetime) -> dict[str, Any]:
    """The parts of a job's message that are the same for every device."""
    ttl = 86400
    if expires_at is not None:
        ttl = max(1, int((expires_at - now).total_seconds()))
    extra = {key: payload[key] for key in ("thread_id", "channel_id") if payload.get(key)}
    return {
        "data": {k: str(v) for k, v in payload["data"].items()},
        "collapse_key": payload["collapse_key"],
        "title": payload.get("title"),
        "body": payload.get("body"),
        "priority": payload.get("priority", "high"),
        "ttl_seconds": ttl,
        "category": payload.get("category"),
        "extra": extra,
    }
