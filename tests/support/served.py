"""Reach as it is deployed: `reach serve` (gunicorn, one gevent worker) in a subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def reach_serve(instance_dir: Path, **settings: str) -> Iterator[str]:
    """The embedded default (SQLite in `instance_dir`) with `settings`; yields its base URL."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update({"REACH_INSTANCE_DIR": str(instance_dir), "LOG_LEVEL": "WARNING", **settings})
    server = subprocess.Popen(
        [sys.executable, "-m", "service.entry", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, f"reach serve exited with {server.returncode}"
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/readyz", timeout=5).ok:
                    break
            assert time.monotonic() < deadline, "the embedded service did not start in 30 s"
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
