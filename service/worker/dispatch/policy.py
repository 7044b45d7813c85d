"""How long a push FCM could not take waits before it is tried again, and for how long."""

from __future__ import annotations

import random
from dataclasses import dataclass

# The longest a worker claims nothing after FCM said it is overloaded (503 with Retry-After).
MAX_PAUSE_SECONDS = 600.0

# How long a push waits, not an attempt, when its device was held by another transaction (a
# registration or a deletion of that phone): long enough that the queue behind it goes first,
# as short as a registration takes.
HELD_DEVICE_SECONDS = 1.0


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
