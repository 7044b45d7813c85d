"""The `reach` command run as an operator runs it: a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys


def reach(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run a command that succeeds; its output."""
    result = subprocess.run(
        [sys.executable, "-m", "service.entry", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def reach_refuses(*args: str, env: dict[str, str], timeout: float = 60, exit_code: int = 1) -> str:
    """Run a command an operator got wrong: it fails with one line saying what to do (exit
    code 1; 2 for a command line click refuses)."""
    result = subprocess.run(
        [sys.executable, "-m", "service.entry", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    said = result.stdout + result.stderr
    assert result.returncode == exit_code, said
    assert "Traceback" not in said, said
    return result.stderr
