"""Run as `python -m tests.support.cutoff_child`, patched for gevent as `reach worker` is:
sends three pushes to a stand-in, two of whose answers trickle in; prints one JSON line of the
outcomes and how long the batch took."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

from service.push import PushMessage  # noqa: E402
from service.push.fcm import FcmBackend  # noqa: E402
from tests.support.fcm_standin import FcmStandIn, trickling  # noqa: E402

TIMEOUT_SECONDS = 0.5


def main() -> None:
    standin = FcmStandIn().start()
    folder = Path(tempfile.mkdtemp())
    backend = FcmBackend(
        str(standin.write_credentials(folder / "sa.json")),
        standin.url,
        max_concurrency=4,
        timeout_seconds=TIMEOUT_SECONDS,
    )
    standin.script("after-200", trickling(0.2, body_only=True))
    standin.script("no-status", trickling(0.2))
    pushes = [
        PushMessage(str(n), uuid.uuid4(), "android", token, {"n": str(n)}, "c")
        for n, token in enumerate(("after-200", "no-status", "prompt"))
    ]
    began = time.monotonic()
    try:
        results = backend.send_batch(pushes, time.monotonic() + 5)
    finally:
        took = time.monotonic() - began
        backend.close()
        standin.stop()
    print(json.dumps({"outcomes": [[r.outcome, r.error] for r in results], "seconds": took}))


if __name__ == "__main__":
    main()
