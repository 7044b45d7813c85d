"""The API process's garbage-collection policy (service/gc_tuning.py)."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Iterator

import pytest

from service import gc_tuning
from service.config import Settings, from_environment


def test_the_policy_comes_from_the_settings() -> None:
    assert gc_tuning.policy_of(Settings()) == gc_tuning.GcPolicy()
    tuned = gc_tuning.policy_of(
        from_environment(
            {"GC_CHECK_SECONDS": "2", "GC_FULL_SECONDS": "0", "GC_GEN0_THRESHOLD": "5000"}
        )
    )
    assert (tuned.check_s, tuned.full_s, tuned.gen0_threshold) == (2.0, 0.0, 5000)
    off = gc_tuning.policy_of(from_environment({"GC_FREEZE": "false"}))
    assert not off.enabled
    assert gc_tuning.install(off) is None


@pytest.fixture
def thawed() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


@pytest.mark.usefixtures("thawed")
def test_tuner_freezes_long_lived_objects_and_reclaims_them_with_a_full_collection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    tuner = gc_tuning.GcTuner(
        gc_tuning.GcPolicy(refreeze_objects=1000, full_s=60, gen0_threshold=5000),
        clock=lambda: now[0],
    )
    tuner.start()
    assert gc.get_threshold()[0] == 5000
    assert gc.get_freeze_count() > 0
    assert tuner.tick() == "none"  # nothing new has grown old

    kept = [_Node() for _ in range(5000)]  # long-lived (sockets)
    gc.collect(1)
    gc.collect(1)  # now in the oldest generation
    frozen_before = gc.get_freeze_count()
    assert tuner.tick() == "freeze"
    # Frozen: in no generation the collector walks. (The frozen count alone is not exact:
    # other threads of the test process free objects frozen earlier at any moment.)
    walked = {id(obj) for generation in range(3) for obj in gc.get_objects(generation)}
    assert not any(id(node) in walked for node in kept[::100])
    assert gc.get_freeze_count() >= frozen_before + 4900

    probes = [weakref.ref(node) for node in kept[::500]]
    del kept  # closed after being frozen: cyclic garbage the collector no longer sees
    now[0] = 61.0
    assert all(probe() is not None for probe in probes)
    with caplog.at_level(logging.INFO, logger=gc_tuning.__name__):
        assert tuner.tick() == "full"
    assert all(probe() is None for probe in probes)  # reclaimed
    # What the full collection freed: all 5,000, plus any garbage of the test process's other
    # threads. (Not the frozen count: those threads' new objects are frozen again with the rest.)
    (freed,) = [r.args[0] for r in caplog.records if r.getMessage().startswith("full garbage")]
    assert isinstance(freed, int) and freed >= 5000
    assert gc.get_freeze_count() > 0  # frozen again
    assert tuner.full_collections == 1
