"""The small parts of /ops: percentiles, chart axes, the request window, origins, cookies."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service import create_app
from service.config import Settings
from service.dashboard.charts import bar_chart, nice_max
from service.dashboard.filters import duration
from service.dashboard.live import same_origin_or
from service.metrics import RequestWindow
from service.services.ops import percentile
from tests.support.server import LiveServer


def test_percentiles_use_the_nearest_rank() -> None:
    values = list(range(1, 11))
    assert percentile(values, 0.5) == 5
    assert percentile(values, 0.9) == 9
    assert percentile([42], 0.9) == 42
    assert percentile([], 0.5) is None


@pytest.mark.parametrize(
    ("top", "axis"), [(0, 2), (1, 2), (3, 4), (5, 10), (11, 20), (30, 40), (41, 100)]
)
def test_chart_axes_end_on_a_round_number_with_a_whole_half(top: float, axis: float) -> None:
    assert nice_max(top) == axis
    assert (axis / 2).is_integer()


def test_a_chart_escapes_labels_and_says_when_it_has_no_data() -> None:
    svg = str(bar_chart("c", "T <b>", [("<script>", 0)]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "no data in this window" in svg
    assert svg.count('class="bar"') == 1


def test_durations_read_like_a_person_would_say_them() -> None:
    assert [duration(s) for s in (None, 4, 200, 7500, 200000)] == [
        "—",
        "4 s",
        "3 min 20 s",
        "2 h 5 min",
        "2 d 7 h",
    ]


def test_the_request_window_forgets_what_is_older_than_an_hour() -> None:
    window = RequestWindow()
    window.record(200, 0.010, now=0)
    window.record(500, 0.300, now=30)
    window.record(200, 0.020, now=90)
    summary = window.summary(now=100)
    assert (summary["requests"], summary["errors"]) == (3, 1)
    assert summary["error_rate"] == pytest.approx(1 / 3)
    assert summary["latency_p50_ms"] == 20.0
    assert window.summary(now=3600 + 59)["requests"] == 1  # the minute of 0 s has gone
    assert RequestWindow().summary()["error_rate"] is None


def test_the_request_window_gives_no_latency_of_requests_older_than_an_hour() -> None:
    """A process idle for a while shows no latency figure from before the hour it covers."""
    window = RequestWindow()
    window.record(200, 4.0, now=0)
    window.record(200, 0.010, now=3000)
    assert window.summary(now=3100)["latency_p90_ms"] == 4000.0
    later = window.summary(now=3600 + 60)
    assert (later["requests"], later["latency_p50_ms"], later["latency_p90_ms"]) == (1, 10.0, 10.0)
    idle = window.summary(now=3 * 3600)
    assert (idle["requests"], idle["latency_p50_ms"], idle["latency_p90_ms"]) == (0, None, None)


def test_sockets_accept_configured_origins_and_the_services_own() -> None:
    allowed = same_origin_or(("https://app.example",))
    environ = {"wsgi.url_scheme": "https", "HTTP_HOST": "reach.example"}
    assert allowed("https://app.example", environ)
    assert allowed("https://reach.example", environ)
    assert not allowed("https://evil.example", environ)
    assert not allowed("http://reach.example", environ)


def test_the_cookie_is_secure_in_production_and_over_https(
    server_with: Callable[..., LiveServer],
) -> None:
    import requests

    production = create_app(
        Settings(DATABASE_URL="postgresql://u@127.0.0.1:1/none", SECRET_KEY="x" * 40)
    )
    assert production.config["SESSION_COOKIE_SECURE"] is True
    server = server_with(TRUSTED_PROXIES=1)
    plain = requests.get(f"{server.url}/ops/login", timeout=10)
    assert "Secure" not in plain.headers["Set-Cookie"]
    https = requests.get(
        f"{server.url}/ops/login", headers={"X-Forwarded-Proto": "https"}, timeout=10
    )
    assert "; Secure" in https.headers["Set-Cookie"]
