"""How long one send may take, and so how long into its lease a worker's pass may start sends.

A pass claims its jobs for PUSH_LEASE_SECONDS; once that lease has run out, another worker may
claim the same jobs and send them again. So a pass starts no send later than its lease's end less
the longest a send can take and a spare, and every send it starts has its answer, and the pass
its results recorded, while the jobs are still its own.
"""

from __future__ import annotations

import time

CONNECT_ATTEMPTS = 2
"""Connection attempts per FCM send: the first, and one more when it could not connect (the
request never left). An answer is never asked for twice (`service/push/fcm/sdk.py`)."""

CUT_GRACE_SECONDS = 0.25
"""How long a batch waits, past the last cutoff of its sends (`service/push/cutoff.py`), for a
send cut off to come back; one that has not is of unknown outcome. Taken from the spare."""

LEASE_SPARE_SECONDS = 5.0
"""What a pass keeps of its lease after its last answer can have come: to record the pass, and
for worker hosts whose clocks differ a little."""


def longest_fcm_send(timeout_seconds: float) -> float:
    """The longest one FCM send can take: each connection attempt, and then the wait for the
    answer, gives up after `timeout_seconds`; and the whole send is cut off after that long,
    however the answer trickles in."""
    return timeout_seconds * (CONNECT_ATTEMPTS + 1)


def deadline_passed(deadline: float | None) -> bool:
    """Whether `deadline` (a `time.monotonic()` reading; None: none) has come."""
    return deadline is not None and time.monotonic() >= deadline


def sending_window(
    lease_seconds: float, longest_send: float, spare_seconds: float = LEASE_SPARE_SECONDS
) -> float:
    """How long after its claim a pass may still start a send: what is left of the lease once
    the last send's longest time and the spare are kept back."""
    return lease_seconds - longest_send - spare_seconds
