"""The embedded default's generated secret (service/config.py): owner-only, one per instance."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

# Imports first; then each process says it is ready and reads the secret once told to go, so
# that all of them ask for it at the same moment.
_READ_SECRET = """
import sys
from service.config import Settings
print("ready", flush=True)
sys.stdin.readline()
print(Settings().secret_key, flush=True)
"""


def _processes_reading_the_secret(instance: Path, count: int) -> list[str]:
    env = {**os.environ, "REACH_INSTANCE_DIR": str(instance)}
    env.pop("SECRET_KEY", None)
    started = [
        subprocess.Popen(
            [sys.executable, "-c", _READ_SECRET],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for process in started:  # a barrier: every one has imported the service and waits
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in started:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
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
