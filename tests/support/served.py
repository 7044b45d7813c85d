"""Reach as it is deployed: `reach serve` (gunicorn, one gevent worker) in a subprocess."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from service.demo import embedded_service


@contextlib.contextmanager
def reach_serve(
    instance_dir: Path, open_files: tuple[int, int] | None = None, **settings: str
) -> Iterator[str]:
    """The embedded default (SQLite in `instance_dir`) with `settings`, and with `open_files`
    as its (soft, hard) open-files limit if given; yields its base URL."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update({"REACH_INSTANCE_DIR": str(instance_dir), "LOG_LEVEL": "WARNING", **settings})
    with embedded_service(env, open_files=open_files) as (url, _):
        yield url
