"""The local FCM stand-in (tests/support/fcm_standin.py) as a process of its own.

  python -m bench.fcm_standin_server --delay 0.02 --credentials PATH --url-file PATH \
      [--lifetime 1800]

Writes a service-account JSON whose token_uri points at the stand-in, writes its base URL to
--url-file, then serves until SIGTERM or --lifetime seconds (bounded). On exit it prints how
many sends it received and the highest number in flight.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tests.support.fcm_standin import FcmStandIn


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--delay", type=float, default=0.02)
    p.add_argument("--credentials", required=True)
    p.add_argument("--url-file", required=True)
    p.add_argument("--lifetime", type=float, default=1800)
    args = p.parse_args()
    standin = FcmStandIn(default_delay=args.delay)
    # Only counts are needed: keep the received list from growing without bound.
    standin.state.received = _Counter()  # type: ignore[assignment]
    standin.start()
    standin.write_credentials(Path(args.credentials))
    Path(args.url_file).write_text(standin.url)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait(args.lifetime)
    print(
        f"stand-in: {standin.state.received.count} requests, max in flight {standin.max_in_flight}"
    )
    standin.stop()
    sys.exit(0)


class _Counter(list):  # type: ignore[type-arg]
    count = 0

    def append(self, _item: object) -> None:
        self.count += 1


if __name__ == "__main__":
    main()
