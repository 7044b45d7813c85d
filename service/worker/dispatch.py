"""Push dispatch: claim due jobs from the outbox, send to every active device, record it all."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from service import metrics
from service.clock import clock
from service.models import Device, PushAttempt, PushDelivery, PushJob
from service.push import PushBackend, PushMessage, PushResult

log = logging.getLogger("reach.push")

TERMINAL = ("sent", "unregistered", "invalid", "failed", "dead")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; FCM's Retry-After wins when it asks for longer."""

    base_seconds: float = 2.0
    max_seconds: float = 600.0
    max_attempts: int = 8

    def delay(self, attempts: int, retry_after: float | None) -> float:
        backoff = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        jittered = backoff * random.uniform(0.5, 1.0)
        return max(jittered, retry_after or 0.0)


@dataclass
class Dispatcher:
    backend: PushBackend
    policy: RetryPolicy = RetryPolicy()
    batch: int = 32
    # Longer than a whole pass can take: batch x devices / concurrency x FCM timeout.
    lease_seconds: int = 120

    def run(self, session: Session, worker: str) -> int:
        """Claim, send and record one batch. Returns how many messages were sent out."""
        jobs = self._claim(session, worker)
        if not jobs:
            return 0
        now = clock.now()
        plan: list[tuple[PushDelivery, PushMessage]] = []
        for job in jobs:
            if job.expires_at is not None and job.expires_at <= now:
                job.state, job.finished_at, job.last_error = "expired", now, "expired"
                continue
            plan.extend(self._deliveries(session, job, now))
        session.commit()  # deliveries exist before anything leaves the process
        started = clock.now()
        results = self.backend.send_batch([message for _, message in plan]) if plan else []
        self._record(session, worker, jobs, plan, results, started)
        session.commit()
        return len(plan)

    def _claim(self, session: Session, worker: str) -> list[PushJob]:
        now = clock.now()
        due = or_(
            and_(PushJob.state == "pending", PushJob.available_at <= now),
            and_(PushJob.state == "claimed", PushJob.claimed_until < now),
        )
        query = select(PushJob).where(due).order_by(PushJob.available_at).limit(self.batch)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        jobs = list(session.scalars(query))
        for job in jobs:
            job.state = "claimed"
            job.claimed_by = worker
            job.claimed_until = now + timedelta(seconds=self.lease_seconds)
        session.commit()
        return jobs

    def _deliveries(
        self, session: Session, job: PushJob, now: datetime
    ) -> list[tuple[PushDelivery, PushMessage]]:
        existing = {
            d.device_id: d
            for d in session.scalars(select(PushDelivery).where(PushDelivery.job_id == job.id))
        }
        devices = session.scalars(
            select(Device).where(Device.user_id == job.recipient_id, Device.active.is_(True))
        )
        planned = []
        for device in devices:
            delivery = existing.get(device.id)
            if delivery is None:
                delivery = PushDelivery(
                    job_id=job.id, device_id=device.id, platform=device.platform, updated_at=now
                )
                session.add(delivery)
            elif delivery.state != "pending":
                continue
            planned.append((delivery, self._message(job, device, now)))
        session.flush()
        return planned

    @staticmethod
    def _message(job: PushJob, device: Device, now: datetime) -> PushMessage:
        payload = job.payload
        ttl = 86400
        if job.expires_at is not None:
            ttl = max(1, int((job.expires_at - now).total_seconds()))
        extra = {key: payload[key] for key in ("thread_id", "channel_id") if payload.get(key)}
        return PushMessage(
            key=f"{job.id}:{device.id}",
            device_id=device.id,
            platform=device.platform,  # type: ignore[arg-type]
            token=device.push_token,
            data={k: str(v) for k, v in payload["data"].items()},
            collapse_key=payload["collapse_key"],
            title=payload.get("title"),
            body=payload.get("body"),
            priority=payload.get("priority", "high"),
            ttl_seconds=ttl,
            category=payload.get("category"),
            extra=extra,
        )

    def _record(
        self,
        session: Session,
        worker: str,
        jobs: list[PushJob],
        plan: list[tuple[PushDelivery, PushMessage]],
        results: list[PushResult],
        started: datetime,
    ) -> None:
        now = clock.now()
        retry_after: dict[int, float | None] = {}
        for (delivery, message), result in zip(plan, results, strict=True):
            delivery.attempts += 1
            delivery.updated_at = now
            delivery.last_error = result.error
            session.add(
                PushAttempt(
                    delivery_id=delivery.id,
                    worker=worker,
                    outcome=result.outcome,
                    error=result.error,
                    retry_after=result.retry_after,
                    started_at=started,
                    finished_at=now,
                )
            )
            if result.outcome == "sent":
                delivery.state, delivery.message_id, delivery.sent_at = (
                    "sent",
                    result.message_id,
                    now,
                )
            elif result.outcome == "retry":
                if delivery.attempts >= self.policy.max_attempts:
                    delivery.state = "dead"
                else:
                    wait = retry_after.get(delivery.job_id)
                    retry_after[delivery.job_id] = max(wait or 0.0, result.retry_after or 0.0)
            else:
                delivery.state = result.outcome
                if result.outcome == "unregistered":
                    session.execute(
                        update(Device)
                        .where(Device.id == message.device_id)
                        .values(active=False, disabled_reason="unregistered", updated_at=now)
                    )
            metrics.push_outcome(result.outcome, message.platform)
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
        session.flush()
        for job in jobs:
            if job.state != "claimed":
                continue
            states = list(
                session.scalars(select(PushDelivery.state).where(PushDelivery.job_id == job.id))
            )
            job.attempts += 1
            job.claimed_by = job.claimed_until = None
            if "pending" in states:
                delay = self.policy.delay(job.attempts, retry_after.get(job.id))
                job.state, job.available_at = "pending", now + timedelta(seconds=delay)
                job.last_error = "retrying"
            elif "dead" in states or "failed" in states:
                # Dead-lettered: operators can see it and send it again.
                job.state, job.finished_at, job.last_error = "dead", now, "gave up: see attempts"
            else:
                job.state, job.finished_at = "done", now
