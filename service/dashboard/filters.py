"""Template filters for /ops: UTC times, durations, shares, and the bars of each chart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask

from service.dashboard.charts import bar_chart


def utc(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """12 s, 3 min 20 s, 2 h 5 min, 3 d 4 h."""
    if seconds is None:
        return "—"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def percent(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.1f} %"


def hour_label(iso_start: str) -> str:
    """A bar's start to the minute, in UTC ("14:32"): the hours are rolling, ending now."""
    return iso_start[11:16]


def per_hour_bars(per_hour: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(hour_label(bucket["start"]), bucket["count"]) for bucket in per_hour]


def labelled_bars(rows: list[dict[str, Any]], key: str) -> list[tuple[str, float]]:
    return [(str(row[key]), row["count"]) for row in rows]


def register(app: Flask) -> None:
    app.add_template_filter(utc, "utc")
    app.add_template_filter(duration, "duration")
    app.add_template_filter(percent, "percent")
    app.add_template_global(per_hour_bars, "per_hour_bars")
    app.add_template_global(labelled_bars, "labelled_bars")
    app.add_template_global(bar_chart, "bar_chart")
