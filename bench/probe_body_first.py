"""What reading a request's body first (`service.bodies.read_first`) adds to a bid's request.

Inside a request context for POST /api/v1/bids with a bid's JSON body, the body's read as the
service does it (`read_first`, then `get_json`, which takes it from memory) and `get_json`
alone, alternated `--reps` times; CPU per request (`time.process_time`), median of the reps.
A hot loop: compare the two, not these figures with a request's under load.

Usage: .venv/bin/python -m bench.probe_body_first [--calls 5000] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any

from bench import common
from bench.common import log


def _per_request_us(app: Any, body: bytes, first: bool, calls: int) -> float:
    from flask import request

    from service.bodies import read_first

    started = time.process_time()
    for _ in range(calls):
        with app.test_request_context(
            "/api/v1/bids", method="POST", data=body, content_type="application/json"
        ):
            if first:
                read_first()
            request.get_json()
    return (time.process_time() - started) / calls * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    app = common.memory_app()
    body = json.dumps(
        {"client_id": str(uuid.uuid4()), "kind": "connect", "note": "thinking of you"}
    ).encode()
    runs: dict[bool, list[float]] = {False: [], True: []}
    for rep in range(args.reps):
        for first in (False, True):
            runs[first].append(_per_request_us(app, body, first, args.calls))
        without, with_ = runs[False][-1], runs[True][-1]
        log(f"rep {rep + 1}/{args.reps}: without {without:.1f} µs, with {with_:.1f}")
    for first, label in ((False, "get_json alone"), (True, "read_first, then get_json")):
        values = ", ".join(f"{v:.1f}" for v in runs[first])
        print(f"{label}: median {statistics.median(runs[first]):.1f} µs per request ({values})")


if __name__ == "__main__":
    main()
