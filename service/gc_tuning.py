"""Garbage-collection policy of an API process (installed by service.server.post_worker_init).

Why: an API process holding thousands of sockets has a heap of over a million long-lived
objects (sockets, their queues, greenlets and frames). CPython's full (generation 2) collection
walks all of them: 0.6-0.9 s pauses a few times a minute with 5,000 sockets, which every request
and every socket event in the process waits out (bench/RESULTS.md, section 2).

What: `gc.freeze()` moves every object the collector tracks into a permanent generation that
collections skip. The policy freezes once after start-up, then every `check_s` seconds runs a
young collection (so that fresh cyclic garbage is freed, not frozen) and freezes again when more
than `refreeze_objects` objects have reached the oldest generation since, i.e. while
long-lived objects (new sockets) accumulate; collections then only ever walk what is young.

The cost: cyclic garbage among frozen objects (a socket that was frozen and then closed) is not
reclaimed until the next full collection. Every `full_s` seconds (default hourly; 0 = never) the
policy unfreezes, runs one full collection (one long pause) and freezes again.

Settings (service/config.py): GC_FREEZE (on; off = CPython's defaults), GC_CHECK_SECONDS,
GC_REFREEZE_OBJECTS, GC_FULL_SECONDS (0 = never), GC_GEN0_THRESHOLD (0 = CPython's 700).
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from typing import Any

from service.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GcPolicy:
    enabled: bool = True
    check_s: float = 5.0
    refreeze_objects: int = 20_000
    full_s: float = 3600.0
    gen0_threshold: int = 0


def policy_of(settings: Settings) -> GcPolicy:
    return GcPolicy(
        enabled=settings.GC_FREEZE,
        check_s=float(settings.GC_CHECK_SECONDS),
        refreeze_objects=settings.GC_REFREEZE_OBJECTS,
        full_s=float(settings.GC_FULL_SECONDS),
        gen0_threshold=settings.GC_GEN0_THRESHOLD,
    )


class GcTuner:
    """One step of the policy per `tick()`; `run()` loops it in a greenlet (or thread)."""

    def __init__(self, policy: GcPolicy, clock: Any = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self.last_full = clock()
        self.freezes = 0
        self.full_collections = 0

    def start(self) -> None:
        """After start-up: free what start-up left behind, freeze the rest."""
        if self.policy.gen0_threshold > 0:
            _, g1, g2 = gc.get_threshold()
            gc.set_threshold(self.policy.gen0_threshold, g1, g2)
        gc.collect()
        self.freeze()

    def freeze(self) -> None:
        gc.freeze()
        self.freezes += 1

    def tick(self) -> str:
        """What this check did: 'full', 'freeze' or 'none'."""
        if self.policy.full_s > 0 and self.clock() - self.last_full >= self.policy.full_s:
            started = time.perf_counter()
            gc.unfreeze()
            freed = gc.collect()
            self.freeze()
            self.last_full = self.clock()
            self.full_collections += 1
            log.info(
                "full garbage collection: %d objects freed in %.0f ms, %d frozen",
                freed,
                (time.perf_counter() - started) * 1000,
                gc.get_freeze_count(),
            )
            return "full"
        gc.collect(1)  # young generations only: cheap, and frees fresh cyclic garbage
        if len(gc.get_objects(2)) > self.policy.refreeze_objects:
            self.freeze()
            return "freeze"
        return "none"

    def run(self, sleep: Any) -> None:
        while True:
            sleep(self.policy.check_s)
            try:
                self.tick()
            except Exception:  # pragma: no cover - never let the tuner die silently
                log.exception("garbage-collection tuner step failed")


def install(policy: GcPolicy) -> GcTuner | None:
    """Apply the policy in this (gevent) process: freeze now and keep re-freezing."""
    if not policy.enabled:
        return None
    tuner = GcTuner(policy)
    tuner.start()
    try:
        from gevent import monkey

        patched = monkey.is_module_patched("threading")
    except ImportError:  # pragma: no cover - gevent is a dependency
        patched = False
    if patched:
        import gevent

        gevent.spawn(tuner.run, gevent.sleep)
    else:
        import threading

        threading.Thread(target=tuner.run, args=(time.sleep,), daemon=True).start()
    return tuner
