"""The `reach` command run as an operator runs it, and other Python processes the tests start."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def reach(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, stderr: bool = False
) -> str:
    """Run a command that succeeds; its output (followed by its stderr if `stderr`)."""
    result = subprocess.run(
        [sys.executable, "-m", "service.entry", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr if stderr else result.stdout


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


def lines_until(process: subprocess.Popen[str], wanted: str, seconds: float) -> list[str]:
    """The lines a process wrote until one containing `wanted` (or `seconds` passed)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (seen and wanted in seen[-1]):
        try:
            seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            break
    return seen


def child_result(module: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run `python -m module args...` from the project's root: what it printed last, as JSON
    (the child's whole stderr if it failed)."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
