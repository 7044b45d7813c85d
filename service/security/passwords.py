"""Password hashing with argon2id, off the event loop.

argon2id at argon2-cffi's defaults (3 passes over 64 MiB in 4 lanes) costs about 150 ms of
CPU a hash (100 ms of wall time on a 2-core VM, measured alone), by design. An API process
serves all its sockets and requests from one gevent loop, so a sign-in that hashed on the loop
would hold every bid, event and heartbeat of the process for that long. argon2-cffi lets go
of the GIL while it hashes, so under gevent the hash runs on a thread of gevent's pool and the
loop goes on serving; at most `HASHING_AT_ONCE` at a time per process, since each holds its
64 MiB while it runs and more than the machine's cores would not finish sooner. Without
gevent (threads, the CLI, tests) the calling thread hashes.

Passwords are hashed in NFKC form (`service.domain.passwords.normalize`). Those hashed before
were hashed as typed: a sign-in checks the NFKC form, then the password as typed, and a match
of the latter is stale, to be hashed again.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from argon2 import Parameters, PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from gevent import get_hub, monkey
from gevent.lock import BoundedSemaphore

from service.domain.passwords import normalize

HASHING_AT_ONCE = 2

T = TypeVar("T")

_hasher = PasswordHasher()
# Verified against when the email is unknown, so both paths cost the same: a hash made with the
# hasher's own parameters (tests/unit/test_passwords.py holds it to them), written out rather
# than computed at import, which cost every process (and every `reach` command) ~150 ms of CPU.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$IF99Mi2ANDMYu1DtpXLFbQ"
    "$3BIWLDoS8xn19bPraXh1Fx5hRM47b/SL0Z6SKzvF9rI"
)
_unknown_hash = _DUMMY_HASH
_hashing = BoundedSemaphore(HASHING_AT_ONCE)


def hash_with(parameters: Parameters) -> None:
    """Hash and check with other argon2 parameters from now on, in this process; what an
    unknown email is checked against is made with them too, so both paths still cost alike.

    For the test suite, which hashes with argon2-cffi's cheapest (`argon2.profiles.CHEAPEST`):
    at 150 ms of CPU a hash, by design, hashing would be most of the CPU its tests spend."""
    global _hasher, _unknown_hash
    _hasher = PasswordHasher.from_parameters(parameters)
    stale = _hasher.check_needs_rehash(_DUMMY_HASH)
    _unknown_hash = _hasher.hash(secrets.token_urlsafe(24)) if stale else _DUMMY_HASH


@dataclass(frozen=True)
class Checked:
    """What a sign-in's password check found: whether it `matches`, and whether the stored
    hash is `stale` (made with other argon2 parameters than the hasher's, or of the password
    as typed, before passwords were normalised): to be made again with `hash_password`."""

    matches: bool
    stale: bool = False


def hash_password(password: str) -> str:
    """The argon2id hash of the password's NFKC form."""
    return _off_the_loop(_hasher.hash, normalize(password))


def check_password(password_hash: str | None, password: str) -> Checked:
    """Check a password against an account's hash (None: no such account, which never
    matches, at the cost of a real check)."""
    return _off_the_loop(_check, password_hash, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    return check_password(password_hash, password).matches


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def _check(password_hash: str | None, password: str) -> Checked:
    stored = password_hash or _unknown_hash
    normal = normalize(password)
    if _matches(stored, normal):
        known = password_hash is not None
        return Checked(known, stale=known and _hasher.check_needs_rehash(stored))
    # A hash made before passwords were normalised is of the password as typed. Checked for an
    # unknown account too (against the dummy hash), so that one costs what a known one does.
    if normal != password and _matches(stored, password):
        return Checked(password_hash is not None, stale=True)
    return Checked(False)


def _matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _off_the_loop(work: Callable[..., T], *args: object) -> T:
    """`work(*args)` on a thread of gevent's pool when this process runs on gevent's patches
    (the loop serves others meanwhile), else on the calling thread."""
    if not monkey.is_module_patched("threading"):
        return work(*args)
    with _hashing:
        result: T = get_hub().threadpool.apply(work, args)
        return result
