"""Run as `python -m tests.support.mail_child SMTP_URL`, patched for gevent as `reach serve`
is: delivers one mail to the relay and one to a relay that never answers, and prints one JSON
line of what became of them while a greenlet ticked every 10 ms."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402

from service import create_app  # noqa: E402
from service.mail import Mail, deliver  # noqa: E402
from tests.support.green_ticker import Ticker  # noqa: E402
from tests.support.settings import make_settings  # noqa: E402


def counted(kind: str, outcome: str) -> float:
    labels = {"kind": kind, "outcome": outcome}
    return REGISTRY.get_sample_value("reach_mails_total", labels) or 0.0


def main(smtp_url: str) -> dict[str, object]:
    settings = {
        "SOCKETIO_ASYNC_MODE": "",
        "MAIL_BACKEND": "smtp",
        "MAIL_TIMEOUT_SECONDS": 1,
        "MAIL_ATTEMPTS": 1,  # the silent relay fails its one try
    }
    sender = "Reach <no-reply@reach.test>"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent_url = f"smtp://127.0.0.1:{silent.getsockname()[1]}"
        relay = create_app(
            make_settings("sqlite://", SMTP_URL=smtp_url, MAIL_FROM=sender, **settings)
        )
        nowhere = create_app(
            make_settings("sqlite://", SMTP_URL=silent_url, MAIL_FROM=sender, **settings)
        )
        with Ticker() as ticker:
            began = time.monotonic()
            with nowhere.app_context():
                deliver(Mail("ben@example.com", "Code", "Dein Code: 111111", kind="green_silent"))
            with relay.app_context():
                deliver(Mail("ana@example.com", "Code", "Dein Code: 222222", kind="green_relay"))
            returned = time.monotonic() - began
            deadline = began + 10
            while time.monotonic() < deadline and not (
                counted("green_relay", "sent") and counted("green_silent", "failed")
            ):
                gevent.sleep(0.01)
    return {
        "async_mode": relay.extensions["socketio"].async_mode,
        "returned": returned,
        "sent": counted("green_relay", "sent"),
        "failed": counted("green_silent", "failed"),
        "ticks": ticker.ticks,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
