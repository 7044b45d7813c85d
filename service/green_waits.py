"""psycopg's waits on gevent's event loop, without the monkey-patched `select`.

Under gevent's patches psycopg waits for its socket through `select.poll`, which gevent
rebuilds in Python on every call: a poll object, an IO watcher per descriptor, a result
object and a `Timeout`. A statement waits two or three times (send, then read), a worker's
pipelined batch once per round of results, so that machinery cost the worker about a quarter
of its CPU (bench/RESULTS.md, "What changed" 34). `wait` parks the greenlet on one libev IO
watcher of the connection's socket instead, and keeps psycopg's contract for a wait function:
`interval` wakes the generator with "nothing ready", `timeout` raises `_WaitTimeout`.

`install()` puts it in place of `psycopg.waiting.wait`, the function every synchronous
connection calls through that module, when this process runs on gevent's patches.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import Any

from gevent import get_hub, monkey
from gevent.hub import Waiter
from psycopg import errors, waiting

log = logging.getLogger("reach.db")

# psycopg's Wait and Ready values are libev's EV_READ (1) and EV_WRITE (2) and their sum, so
# they go to the watcher and come back from it as they are; "nothing ready" is 0.
_NOTHING_READY = 0


def wait(gen: Any, fileno: int, interval: float = 0.0, timeout: float | None = None) -> Any:
    """Consume a psycopg generator, parking the greenlet whenever it would block."""
    if interval is None:
        raise ValueError("indefinite wait not supported")
    hub = get_hub()
    loop = hub.loop
    deadline = None if timeout is None else monotonic() + timeout
    try:
        wanted = next(gen)
        io = loop.io(fileno, int(wanted))
        try:
            while True:
                seconds = interval if interval > 0 else None
                if deadline is not None:
                    left = max(0.0, deadline - monotonic())
                    seconds = left if seconds is None else min(seconds, left)
                waiter = Waiter(hub)
                io.start(waiter.switch, pass_events=True)
                timer = None
                if seconds is not None:
                    timer = loop.timer(seconds)
                    timer.start(waiter.switch, _NOTHING_READY)
                try:
                    ready = waiter.get()
                finally:
                    io.stop()
                    if timer is not None:
                        timer.close()
                now_wanted = gen.send(ready)
                if now_wanted != wanted:
                    wanted = now_wanted
                    io.close()
                    io = loop.io(fileno, int(wanted))
                if deadline is not None and monotonic() >= deadline:
                    raise errors._WaitTimeout("wait timeout expired")
        finally:
            io.close()
    except StopIteration as done:
        return done.value


def install() -> bool:
    """Use `wait` for psycopg's synchronous connections if gevent has patched `select`."""
    if not monkey.is_module_patched("select"):
        return False
    if waiting.wait is not wait:
        waiting.wait = wait
        log.debug("psycopg waits on gevent's loop")
    return True
