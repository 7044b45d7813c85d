"""The worker loop: run every job, sleep a little, repeat; inline or as `reach worker`."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from flask import Flask

from service.clock import clock
from service.config import Settings
from service.errors import database_said, is_unavailable, is_unmigrated
from service.extensions import db
from service.push.backends import build_backend
from service.services import accounts, bids, push_outbox, repair_breaks
from service.worker.dispatch import Dispatcher

log = logging.getLogger("reach.worker")

# The longest wait between two passes while passes fail (the database away): 0.5 s, then twice
# as long after each failure, up to this.
FAILED_PASS_PAUSE_MAX = 10.0
# What a pass may take beyond its lease's sending time before its loop counts as stalled: the
# housekeeping and recording statements (each bounded by DATABASE_STATEMENT_TIMEOUT_MS), then
# the pause before the next pass (FAILED_PASS_PAUSE_MAX at most).
STALL_MARGIN = 60.0
# How long after a failed prune the worker tries it again (sooner if `prune_seconds` is less):
# each try may wait the statement timeout, and the pushes wait for no prune.
PRUNE_RETRY_SECONDS = 60.0


@dataclass
class Tick:
    """What one pass of the worker did."""

    expired_bids: int = 0
    resumed_repairs: int = 0
    pushes: int = 0
    # It claimed a whole batch of pushes: more may be due now.
    full: bool = False
    # Pushes it left untried, their turn past its lease's time for sending: due now.
    unsent: int = 0

    @property
    def more_due(self) -> bool:
        """Whether the next pass should start at once rather than wait for a wake-up. A pass
        that claimed less than a batch took every push due; what is queued after its claim
        comes with a wake-up (or is found by the idle pass). What it left unsent is due now."""
        return bool(self.full or self.unsent or self.expired_bids or self.resumed_repairs)


@dataclass
class _Prune:
    """One of the loop's prunes: `share` deletes a bounded share and says whether more are
    left; `due` is when its next share is (a `time.monotonic()` reading; 0: at once)."""

    what: str
    share: Callable[[], bool]
    due: float = 0.0


@dataclass
class Worker:
    app: Flask
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    idle_seconds: float = 0.5
    # The least time between the starts of two passes that wake-ups begin (PUSH_GATHER_MS;
    # None: from the settings). A wake-up after a quiet spell passes at once; under a stream of
    # commits the pushes gather for up to this long and go out together.
    gather_seconds: float | None = None
    # How often a busy loop looks for bids to expire and breaks to end, at most: each look is
    # two transactions, too dear for every pass under load. None: as often as an idle loop does
    # (every `idle_seconds`), so nothing is later than when the worker is idle.
    housekeeping_seconds: float | None = None
    # How often a running loop deletes the pushes past PUSH_RETENTION_DAYS, the expired
    # sign-ins and the dead tokens past DEAD_PUSH_TOKEN_RETENTION_DAYS (first at start), and
    # how many it deletes at a time: while more are left it goes on after the next pass.
    prune_seconds: float = 3600.0
    prune_batch: int = 1000
    prune_batches: int = 20
    dispatcher: Dispatcher | None = None
    # How long the loop may go without starting or ending a pass before `stalled` says so (the
    # liveness probe of `reach worker`'s endpoint). None: PUSH_LEASE_SECONDS + STALL_MARGIN, as
    # a pass sends for up to its lease and then waits at most FAILED_PASS_PAUSE_MAX.
    stall_seconds: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    # When the loop last started or ended a pass (time.monotonic()); its start before the first.
    _progress: float = field(default_factory=time.monotonic)
    # The last push the pushes' prune walked past, while it is under way (0: it starts over).
    _pushes_pruned_to: int = 0
    # The expired sign-ins the sign-ins' prune passed over (a device of theirs held), while it
    # is under way: the shares after it pass over them too, rather than read them again.
    _sign_ins_passed_over: frozenset[uuid.UUID] = frozenset()

    def __post_init__(self) -> None:
        settings: Settings = self.app.extensions["reach.settings"]
        if self.stall_seconds is None:
            self.stall_seconds = settings.PUSH_LEASE_SECONDS + STALL_MARGIN
        if self.gather_seconds is None:
            self.gather_seconds = settings.PUSH_GATHER_MS / 1000
        if self.dispatcher is None:
            backend = build_backend(
                settings.PUSH_BACKEND,
                settings.FIREBASE_CREDENTIALS,
                settings.FCM_ENDPOINT,
                max_concurrency=settings.PUSH_CONCURRENCY,
                timeout_seconds=settings.PUSH_TIMEOUT_SECONDS,
            )
            self.dispatcher = Dispatcher(
                backend, batch=settings.PUSH_BATCH, lease_seconds=settings.PUSH_LEASE_SECONDS
            )

    def run_once(self, housekeeping: bool = True) -> Tick:
        """One pass over every job, each in its own transaction. Without `housekeeping`, only
        the pushes: no bids expire and no breaks end in this pass."""
        tick = Tick()
        with self.app.app_context():
            if housekeeping:
                with db.scope() as session:
                    tick.expired_bids = bids.expire_due(session, clock.now())
                with db.scope() as session:
                    tick.resumed_repairs = repair_breaks.resume_due(session, clock.now())
            assert self.dispatcher is not None
            with db.scope() as session:
                tick.pushes = self.dispatcher.run(session, self.name)
            tick.full = self.dispatcher.last_claimed >= self.dispatcher.batch
            tick.unsent = self.dispatcher.last_unsent
        return tick

    def prune(self) -> int:
        """Delete the pushes that finished more than PUSH_RETENTION_DAYS ago, the expired
        sign-ins (`accounts.prune_expired_sign_ins`), the dead tokens FCM declared dead more than
        DEAD_PUSH_TOKEN_RETENTION_DAYS ago, expired password-reset codes and expired changes of
        email. How many pushes went."""
        while self._prune_sign_ins():
            pass
        while self._prune_dead_tokens():
            pass
        while self._prune_resets():
            pass
        while self._prune_email_changes():
            pass
        deleted = 0
        while (pruned := self._prune_pushes()).more:
            deleted += pruned.deleted
        return deleted + pruned.deleted

    def _prunes(self) -> list[_Prune]:
        """What the loop deletes once a period, each on its own schedule: one held up (a
        finished push locked by a transaction left open) holds up none of the others. The
        sign-ins first: a phone whose sign-in expired stops getting pushes."""
        return [
            _Prune("expired sign-ins", self._prune_sign_ins),
            _Prune("expired password-reset codes", self._prune_resets),
            _Prune("expired email-change codes", self._prune_email_changes),
            _Prune("dead push tokens", self._prune_dead_tokens),
            _Prune("finished pushes", lambda: self._prune_pushes().more),
        ]

    def _prune_pushes(self) -> push_outbox.Pruned:
        """One bounded share of the pushes' prune (`prune_batches` transactions of
        `prune_batch` jobs), going on where the share before it ended; `more` while more are
        left. A share that deletes nothing (pushes still to be sent, or held) still moves on."""
        with self.app.app_context():
            settings: Settings = self.app.extensions["reach.settings"]
            before = clock.now() - timedelta(days=settings.PUSH_RETENTION_DAYS)
            with db.scope() as session:
                pruned = push_outbox.prune_finished(
                    session,
                    before,
                    after=self._pushes_pruned_to,
                    batch=self.prune_batch,
                    most_batches=self.prune_batches,
                )
        self._pushes_pruned_to = pruned.after
        if pruned.deleted:
            log.info(
                "finished pushes deleted", extra={"worker": self.name, "pushes": pruned.deleted}
            )
        return pruned

    def _prune_sign_ins(self) -> bool:
        """One bounded share of the expired sign-ins' prune (`prune_batches` transactions of
        `prune_batch` refresh tokens); whether more are left."""
        with self.app.app_context(), db.scope() as session:
            sign_ins = accounts.prune_expired_sign_ins(
                session,
                clock.now(),
                batch=self.prune_batch,
                most_batches=self.prune_batches,
                passed_over=self._sign_ins_passed_over,
            )
        self._sign_ins_passed_over = sign_ins.passed_over if sign_ins.more else frozenset()
        if sign_ins.tokens:
            log.info(
                "expired sign-ins deleted",
                extra={
                    "worker": self.name,
                    "refresh_tokens": sign_ins.tokens,
                    "sessions": sign_ins.sessions,
                },
            )
        return sign_ins.more

    def _prune_resets(self) -> bool:
        """One batch of the expired password-reset codes' prune; whether more may be left."""
        with self.app.app_context(), db.scope() as session:
            return accounts.prune_expired_resets(session, clock.now(), batch=self.prune_batch)

    def _prune_email_changes(self) -> bool:
        """One batch of the expired email-change codes' prune; whether more may be left."""
        with self.app.app_context(), db.scope() as session:
            return accounts.prune_expired_email_changes(
                session, clock.now(), batch=self.prune_batch
            )

    def _prune_dead_tokens(self) -> bool:
        """One bounded share of the dead tokens' prune (`prune_batches` transactions of
        `prune_batch` tokens); whether more are left."""
        with self.app.app_context():
            settings: Settings = self.app.extensions["reach.settings"]
            before = clock.now() - timedelta(days=settings.DEAD_PUSH_TOKEN_RETENTION_DAYS)
            with db.scope() as session:
                pruned = push_outbox.prune_dead_tokens(
                    session, before, batch=self.prune_batch, most_batches=self.prune_batches
                )
        if pruned.deleted:
            log.info(
                "dead push tokens forgotten", extra={"worker": self.name, "tokens": pruned.deleted}
            )
        return pruned.more

    def _prune_share(self, prune: _Prune) -> float:
        """Prune one share of `prune`; when its next is due (a `time.monotonic()` reading): at
        once while more are left, after `prune_seconds` once none are. One that fails (a
        finished push locked by a transaction left open, a share that outlasts the statement
        timeout) is logged and tried again after PRUNE_RETRY_SECONDS: the pushes are sent, and
        the other prunes go on, meanwhile."""
        try:
            more = prune.share()
        except Exception as exc:
            retry = min(self.prune_seconds, PRUNE_RETRY_SECONDS)
            extra = {
                "worker": self.name,
                "prune": prune.what,
                "error_type": type(exc).__name__,
                "retry_seconds": retry,
            }
            message = "worker prune failed; pushes go on, the prune is tried again later"
            if is_unavailable(exc) or is_unmigrated(exc):
                log.warning(message, extra={**extra, "error": database_said(exc)})
            else:
                log.exception(message, extra=extra)
            return time.monotonic() + retry
        return 0.0 if more else time.monotonic() + self.prune_seconds

    def run_forever(self) -> None:
        log.info("worker started", extra={"worker": self.name})
        next_housekeeping = 0.0
        prunes = self._prunes()
        failures = 0  # passes failed in a row
        while not self._stop.is_set():
            started = self._progress = time.monotonic()
            housekeeping = started >= next_housekeeping
            for prune in prunes:
                if started >= prune.due:
                    # Pushes keep being sent between shares; a backlog is worked off pass by pass.
                    prune.due = self._prune_share(prune)
            try:
                tick = self.run_once(housekeeping)
            except Exception as exc:
                failures += 1
                self._failed(exc, failures)
                tick = Tick()
            else:
                if failures:
                    log.info(
                        "worker passes succeed again",
                        extra={"worker": self.name, "failed_passes": failures},
                    )
                failures = 0
            self._progress = time.monotonic()
            if housekeeping and not (tick.expired_bids or tick.resumed_repairs):
                # Found nothing due: look again in a while (at once while it finds some).
                every = self.housekeeping_seconds
                next_housekeeping = time.monotonic() + (
                    self.idle_seconds if every is None else every
                )
            if not tick.more_due:
                woken = self._wake.wait(self._pause(failures))
                # Woken by a commit soon after the last pass began: the commits until
                # `gather_seconds` after it join this pass. A pass costs the same few statements
                # for one push or a batch.
                gather = started + (self.gather_seconds or 0.0) - time.monotonic()
                if woken and gather > 0:
                    self._stop.wait(gather)
                self._wake.clear()
        log.info("worker stopped", extra={"worker": self.name})

    def stalled(self) -> str | None:
        """Why the loop looks stuck (no pass started or ended for `stall_seconds`), or None
        while it makes progress, failing passes included (a database away is not cured by a
        restart)."""
        assert self.stall_seconds is not None
        quiet = time.monotonic() - self._progress
        if quiet <= self.stall_seconds:
            return None
        return f"stalled: no pass started or ended for {quiet:.0f} s"

    def _pause(self, failures: int) -> float:
        """How long to wait for work before the next pass: longer and longer while passes
        fail (the database away), up to FAILED_PASS_PAUSE_MAX seconds."""
        if not failures:
            return self.idle_seconds
        return max(self.idle_seconds, min(FAILED_PASS_PAUSE_MAX, 0.5 * 2 ** min(failures, 8)))

    def _failed(self, exc: Exception, failures: int) -> None:
        """A failed pass, logged: one warning line, without a traceback, while the database is
        away or was never migrated (expected while PostgreSQL restarts, or before the migration
        of a deployment has run); anything else with its traceback."""
        extra = {"worker": self.name, "failed_passes": failures, "error_type": type(exc).__name__}
        if is_unmigrated(exc):
            log.warning(
                "worker pass failed: the database has no Reach tables; run `reach db upgrade`",
                extra={**extra, "error": database_said(exc)},
            )
        elif is_unavailable(exc):
            log.warning(
                "worker pass failed: database unavailable; retrying",
                extra={**extra, "error": database_said(exc)},
            )
        else:
            log.exception("worker pass failed; retrying", extra=extra)

    def wake(self) -> None:
        """Start the next pass now (new work was committed in this process)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


def start_inline(app: Flask) -> Worker:
    """Run the worker in the API process (embedded default): a background task of Socket.IO."""
    worker = Worker(app)
    app.extensions["reach.inline_worker"] = worker
    push_outbox.on_enqueued(worker.wake)
    app.extensions["socketio"].start_background_task(worker.run_forever)
    return worker
