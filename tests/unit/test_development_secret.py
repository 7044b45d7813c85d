"""The embedded default's generated secret (service/config.py): owner-only, one per instance."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

# Imports first, then every process reads the secret at the same moment (argv[1], a time).
_READ_SECRET = """
import sys, time
from service.config import Settings
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
print(Settings().secret_key)
"""


def _processes_reading_the_secret(instance: Path, count: int) -> list[str]:
    env = {**os.environ, "REACH_INSTANCE_DIR": str(instance)}
    env.pop("SECRET_KEY", None)
    at = str(time.time() + 3.0)
    started = [
        subprocess.Popen(
            [sys.executable, "-c", _READ_SECRET, at], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    return [process.communicate(timeout=60)[0].strip() for process in started]


def test_processes_starting_together_share_one_secret_that_only_its_owner_reads(
    tmp_path: Path,
) -> None:
    instance = tmp_path / "instance"
    umask = os.umask(0)  # the most permissive: the file's mode is the code's own
    try:
        secrets = _processes_reading_the_secret(instance, 6)
    finally:
        os.umask(umask)
    assert len(set(secrets)) == 1 and len(secrets[0]) >= 48, secrets
    path = instance / "secret_key"
    assert path.read_text().strip() == secrets[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in instance.iterdir()] == ["secret_key"]  # no written copy left
    # Later starts keep it: tokens signed before a restart stay valid.
    assert _processes_reading_the_secret(instance, 1) == secrets[:1]
