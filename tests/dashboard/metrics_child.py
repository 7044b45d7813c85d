"""A process for the multiprocess metrics test: serves requests, holds sockets, or scrapes."""

from __future__ import annotations

import json
import sys

from service import create_app, metrics
from service.dashboard import live
from service.extensions import db


def main(role: str, requests: int = 0, sockets: int = 0) -> None:
    app = create_app()
    client = app.test_client()
    if role == "serve":
        for _ in range(requests):
            assert client.get("/healthz").status_code == 200
        for n in range(sockets):
            metrics.sockets.connected("members", f"held-{n}")
        print("ready", flush=True)
        sys.stdin.readline()  # hold on (live gauges count) until the test lets go
        return
    body = client.get("/metrics").get_data(as_text=True)
    with app.app_context():
        overview = live.overview_now(db.session)
    print(json.dumps({"metrics": body, "sockets": overview["sockets"]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], *(int(arg) for arg in sys.argv[2:]))
