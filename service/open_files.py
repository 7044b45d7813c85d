"""Open files: enough for every connection an API process is set to hold.

Every WebSocket, HTTP connection, database and Redis connection is an open file. A container
often starts with a soft limit of 1,024 under a much higher hard limit (containerd 2 and recent
Docker leave it so). A process set to hold 10,000 sockets then runs out at about a thousand,
and from then on cannot accept any connection, REST requests included (bench/RESULTS.md, "What
changed" 35). So the process raises its soft limit to what its settings allow it to hold, as far
as the hard limit allows; if that is not far enough, gunicorn's pool takes fewer connections,
and below 1,024 of them beside the sockets the process holds as many sockets as fit, so that
REST and the database keep working and one socket more is refused with 1013 (try again later)
instead of stalling, and it says what to raise.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

log = logging.getLogger("reach.server")

# Files for what is not a client connection: the listening socket, log files, Redis, and the
# database pool's connections (counted apart, from the settings), with room to spare.
FIXED = 128
# The fewest HTTP connections a process keeps room for beside its upgraded WebSockets, which
# leave gunicorn's pool: one serving a few hundred bids a second at ~10 ms each has a handful in
# flight; this leaves room for a burst of phones reconnecting (a request until upgraded).
IN_FLIGHT = 1024


@dataclass(frozen=True)
class Budget:
    """What one API process may hold within its open-files limit."""

    sockets: int  # upgraded WebSockets
    in_flight: int  # gunicorn's pool: HTTP connections, sockets in their handshake included
    short: bool  # fewer sockets than the settings ask for (logged)


def fit(
    sockets: int, in_flight: int, database_connections: int, *, in_flight_at_least: int
) -> Budget:
    """Raise this process's soft open-files limit, as far as the hard limit allows, to hold
    `sockets` upgraded WebSockets, `in_flight` HTTP connections and `database_connections`;
    what it may hold within the limit it then has. Past the limit the pool gives way first,
    down to `in_flight_at_least`; then the sockets (logged, with what to raise)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    reserved = FIXED + database_connections
    needed = sockets + in_flight + reserved
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = _raised(soft, hard, needed)
    room = needed if soft == resource.RLIM_INFINITY else soft - reserved
    if room >= sockets + in_flight:
        return Budget(sockets, in_flight, short=False)
    if room >= sockets + in_flight_at_least:
        return Budget(sockets, room - sockets, short=False)
    # Short: requests keep up to half of the room, the sockets the rest.
    room = max(2, room)
    held_in_flight = min(in_flight_at_least, max(1, room // 2)) if sockets else room
    budget = Budget(room - held_in_flight if sockets else 0, held_in_flight, short=True)
    least = sockets + in_flight_at_least + reserved
    log.warning(
        "open files limit %d is under the %d this process needs: it holds %d sockets and %d "
        "requests in flight, not %d and %d; raise the hard limit (docker run --ulimit "
        "nofile=%d, compose ulimits.nofile, systemd LimitNOFILE=%d, or the container runtime's "
        "default for Kubernetes) or lower GUNICORN_WORKER_CONNECTIONS",
        soft,
        least,
        budget.sockets,
        budget.in_flight,
        sockets,
        in_flight_at_least,
        needed,
        needed,
        extra={"limit": soft, "hard": _shown(hard), "needed": least},
    )
    return budget


def _raised(soft: int, hard: int, needed: int) -> int:
    """The soft limit after raising it toward `needed`, as far as `hard` allows."""
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target <= soft:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:  # refused: run with the limit as it is
        log.warning("could not raise the open files limit from %d: %s", soft, error)
        return soft
    log.info(
        "open files limit raised from %d to %d (hard limit %d)",
        soft,
        target,
        _shown(hard),
        extra={"limit": target, "hard": _shown(hard), "needed": needed},
    )
    return target


def _shown(limit: int) -> int:
    """The limit as a number (-1: unlimited)."""
    return -1 if limit == resource.RLIM_INFINITY else limit
