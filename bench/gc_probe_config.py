"""gunicorn settings = Reach's own (service/gunicorn_config.py) plus a garbage-collector probe.

  gunicorn -c python:bench.gc_probe_config ...   with BENCH_GC_STATS=/path/stats.json

The probe times every collection (gc.callbacks) and writes, once a second, per generation:
collections, total and longest pause, and the pauses over 5 ms. It changes nothing else: the
service's own garbage-collection policy (service/gc_tuning.py, installed by post_worker_init)
applies as configured; GC_FREEZE=false measures CPython's defaults.
BENCH_GC_FREEZE=1 additionally calls gc.freeze() once a second (the experiment that led to the
service's policy).
"""

from __future__ import annotations

import gc
import json
import os
import time
from typing import Any

from service import gunicorn_config as _base
from service.gunicorn_config import *  # noqa: F403 - every setting of the service

_stats: dict[str, Any] = {
    "gen": {str(g): {"collections": 0, "total_ms": 0.0, "max_ms": 0.0} for g in range(3)},
    "pauses_over_5ms": [],
    "freezes": 0,
}
_started: list[float] = []


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
        return
    if not _started:
        return
    ms = (time.perf_counter() - _started.pop()) * 1000
    g = _stats["gen"][str(info["generation"])]
    g["collections"] += 1
    g["total_ms"] += ms
    g["max_ms"] = max(g["max_ms"], ms)
    if ms > 5 and len(_stats["pauses_over_5ms"]) < 2000:
        _stats["pauses_over_5ms"].append(
            [round(time.time(), 3), info["generation"], round(ms, 2), info.get("collected", 0)]
        )


def _writer(path: str, freeze: bool) -> None:
    import gevent

    while True:
        gevent.sleep(1.0)
        if freeze:
            gc.freeze()
            _stats["freezes"] += 1
        _stats["frozen_objects"] = gc.get_freeze_count()
        _stats["threshold"] = gc.get_threshold()
        _stats["at"] = time.time()
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(_stats, f)
        os.replace(tmp, path)


def post_worker_init(worker: Any) -> None:  # type: ignore[no-redef]
    _base.post_worker_init(worker)
    path = os.environ.get("BENCH_GC_STATS")
    if not path:
        return
    gc.callbacks.append(_on_gc)
    import gevent

    gevent.spawn(_writer, path, os.environ.get("BENCH_GC_FREEZE") == "1")
