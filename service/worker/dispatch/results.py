"""What became of a pass's pushes: the rows that record it, and when each retry is due."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service import metrics
from service.clock import clock
from service.domain.quiet_hours import QuietHours
from service.push import EXPIRED, PushResult
from service.services import devices
from service.worker.dispatch.plan import _Plan, _Planned
from service.worker.dispatch.policy import RetryPolicy

log = logging.getLogger("reach.push")

# The deliveries that failed for good (FCM refused the message itself, a permanent failure,
# retries given up): their job is dead-lettered, for operators to see and send again.
GAVE_UP = ("invalid", "failed", "dead")


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
    # when each job FCM asked to try again is due again (`_schedule`)
    due: dict[int, datetime] = field(default_factory=dict)
    job_of: dict[int, int] = field(default_factory=dict)  # each delivery's job
    unsent: int = 0


def _results(
    policy: RetryPolicy,
    lease_seconds: float,
    worker: str,
    plan: _Plan,
    results: Sequence[PushResult],
    started: datetime,
) -> _Recorded:
    """What became of every push sent, as the rows that record it (counted and logged)."""
    now = clock.now()
    recorded = _Recorded(now)
    verbose = log.isEnabledFor(logging.INFO)
    for send, result in zip(plan.sends, results, strict=True):
        message = send.message
        if result.outcome == "unsent":
            # Its delivery stays pending, with its attempts as they were. One whose bid expired
            # meanwhile is not due again: the next pass finds its job expired.
            if result.error != EXPIRED:
                recorded.unsent += 1
            continue
        recorded.tried.add(send.job_id)
        recorded.job_of[send.delivery_id] = send.job_id
        tries = send.attempts + 1
        state: str = result.outcome
        if state == "retry":
            if tries >= policy.max_attempts:
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
        if state in ("invalid", "failed"):
            _refused(worker, send, result)
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
                "lease_seconds": lease_seconds,
            },
        )
    return recorded


def _refused(worker: str, send: _Planned, result: PushResult) -> None:
    """One line for operators about a push refused for good: its job, what it announces and
    FCM's code (or our reason), never the message's words nor FCM's text about them."""
    log.warning(
        "push refused for good: dead-lettered",
        extra={
            "job_id": send.job_id,
            "push_kind": send.message.data.get("type"),
            "platform": send.message.platform,
            "outcome": result.outcome,
            "error": result.error,
            "worker": worker,
        },
    )


def _schedule(policy: RetryPolicy, plan: _Plan, recorded: _Recorded) -> None:
    """When each job FCM asked to try again is due again: after its backoff (or FCM's
    Retry-After), and if that falls in its recipient's quiet hours, when they end. A job
    whose own backoff ends only once what it announces has expired is of no more use: its
    pushes FCM could not take are dead-lettered now. Decided once per pass, however often
    its results must be written."""
    given_up: set[int] = set()
    for job in plan.jobs:
        if job.id not in recorded.retry_after or not plan.waits(job.id):
            continue
        backoff = policy.backoff(job.attempts + 1)
        next_try = recorded.now + timedelta(seconds=backoff)
        if job.expires_at is not None and next_try >= job.expires_at:
            given_up.add(job.id)
            continue
        # FCM may ask for longer: it is obeyed, and a push whose bid expires meanwhile is
        # withdrawn with it (as one never pushed), not dead-lettered.
        delay = max(backoff, policy.asked(recorded.retry_after[job.id]))
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
