"""The service's rate limiter (service/extensions/route_limiter.py `RouteLimiter`): limits on
routes and blueprints hold as flask-limiter enforces them, no work before requests it does not
limit, app-wide limits refused."""

from __future__ import annotations

from collections import Counter

import pytest
from flask import Blueprint, Flask

from service.extensions import RouteLimiter
from service.security.rate_counters import storage_uri


def _app(limiter: RouteLimiter) -> Flask:
    app = Flask(__name__)
    app.config["RATELIMIT_STORAGE_URI"] = storage_uri(None)
    limiter.init_app(app)

    @app.post("/limited")
    @limiter.limit("2 per minute")
    def limited() -> str:
        return "sent"

    @app.get("/plain")
    def plain() -> str:
        return "read"

    return app


def test_a_route_limit_holds_and_answers_with_its_headers() -> None:
    client = _app(RouteLimiter(lambda: "user:a", headers_enabled=True)).test_client()

    answers = [client.post("/limited") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert int(answers[2].headers["Retry-After"]) in range(1, 61)
    # Only the refusal says to wait: a client honouring Retry-After on any answer paused
    # after each accepted request.
    assert [("Retry-After" in a.headers) for a in answers] == [False, False, True]


def test_a_request_without_route_limits_is_not_looked_at() -> None:
    looked_at: Counter[str] = Counter()

    def identify() -> str:
        from flask import request

        looked_at[request.path] += 1
        return request.endpoint or ""

    client = _app(RouteLimiter(lambda: "user:a", request_identifier=identify)).test_client()

    assert client.get("/plain").status_code == 200
    assert client.post("/limited").status_code == 200

    # flask-limiter's before_request check identifies every request; the route's decorator
    # identifies only the limited one.
    assert looked_at["/plain"] == 0
    assert looked_at["/limited"] > 0


def test_a_limit_on_a_blueprint_still_holds_on_its_undecorated_routes() -> None:
    limiter = RouteLimiter(lambda: "user:a")
    app = _app(limiter)
    pairing = Blueprint("pairing", __name__)

    @pairing.post("/join")
    def join() -> str:
        return "joined"

    limiter.limit("1 per minute")(pairing)
    app.register_blueprint(pairing)
    client = app.test_client()

    assert [client.post("/join").status_code for _ in range(2)] == [200, 429]


@pytest.mark.parametrize(
    "option", ["default_limits", "application_limits", "meta_limits", "in_memory_fallback"]
)
def test_app_wide_limits_are_refused_when_built(option: str) -> None:
    with pytest.raises(TypeError, match=option):
        RouteLimiter(lambda: "user:a", **{option: ["1 per second"]})


@pytest.mark.parametrize(
    "setting",
    [
        "RATELIMIT_DEFAULT",
        "RATELIMIT_APPLICATION",
        "RATELIMIT_META",
        "RATELIMIT_IN_MEMORY_FALLBACK",
    ],
)
def test_app_wide_limits_are_refused_from_the_config(setting: str) -> None:
    app = Flask(__name__)
    app.config[setting] = "1 per second"

    with pytest.raises(ValueError, match=setting):
        RouteLimiter(lambda: "user:a").init_app(app)
