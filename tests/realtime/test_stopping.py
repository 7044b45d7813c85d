"""A stopping API process spreads its WebSockets' closes over SOCKET_CLOSE_SPREAD_SECONDS, so
that their phones do not all reconnect and sync against the other processes at one instant."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from service.demo import embedded_service
from tests.support.client import ApiClient
from tests.support.phones import Phone

GRACEFUL_TIMEOUT = 10
PHONES = 6


# A window longer than the graceful timeout allows is cut to it: 10 s less 2 for the exit and
# 3 for the last close.
@pytest.mark.parametrize(("spread", "window"), [(3, 3), (60, 5)])
def test_a_stopping_process_spreads_its_socket_closes_and_still_stops_in_time(
    tmp_path: Path, spread: int, window: int
) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(
        REACH_INSTANCE_DIR=str(tmp_path / "instance"),
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        GUNICORN_GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT),
        SOCKET_CLOSE_SPREAD_SECONDS=str(spread),
    )
    log = tmp_path / "serve.log"
    closed_at: list[float] = []
    lock = threading.Lock()
    with log.open("wb") as stderr, embedded_service(env, stderr=stderr) as (url, server):
        api = ApiClient(url)
        phones = []
        for n in range(PHONES // 2):
            for person in api.couple(f"A{n}", f"B{n}"):
                phone = Phone(url, person.access_token)

                def disconnected(reason: object = None, phone: Phone = phone) -> None:
                    with lock:
                        closed_at.append(time.monotonic())
                    phone._record("disconnect", reason)

                phone.client.on("disconnect", disconnected)
                phones.append(phone.connect(("websocket",)))

        stopped_at = time.monotonic()
        server.send_signal(signal.SIGTERM)
        for phone in phones:
            said = phone.wait_for("disconnect", timeout=GRACEFUL_TIMEOUT)
            assert said == "server disconnect"  # an Engine.IO CLOSE, not a transport error
        assert server.wait(timeout=GRACEFUL_TIMEOUT + 5) == 0
        took = time.monotonic() - stopped_at

    # Evenly over the window: one every window / PHONES seconds, the first at once.
    closes = sorted(at - stopped_at for at in closed_at)
    assert len(closes) == PHONES
    assert closes[0] < 1.0, closes
    gaps = [later - earlier for earlier, later in itertools.pairwise(closes)]
    assert min(gaps) > 0.25, closes
    assert closes[-1] - closes[0] >= window * (PHONES - 1) / PHONES * 0.8, closes
    assert took < GRACEFUL_TIMEOUT, f"stopping took {took:.1f}s"
    text = log.read_text()
    assert "graceful timeout" not in text and "SIGKILL" not in text
    assert "Traceback" not in text
    lines = [json.loads(raw) for raw in text.splitlines() if raw.startswith("{")]
    told = [
        line for line in lines if line["msg"] == "closing the sockets spread over the close window"
    ]
    assert told and told[0]["websockets"] == PHONES and told[0]["window_seconds"] == window
