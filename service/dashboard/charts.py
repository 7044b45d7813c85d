"""Bar charts as inline SVG, drawn on the server (static/ops.js redraws them the same way live)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 40


def nice_max(value: float) -> float:
    """A round axis maximum at or above `value`, at least 2, whose half is a whole number."""
    if value <= 2:
        return 2.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 4, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def bar_chart(chart_id: str, title: str, bars: Sequence[tuple[str, float]]) -> Markup:
    """An accessible SVG bar chart: one <rect> per bar, each with its label and value."""
    top = nice_max(max((value for _, value in bars), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(bars))
    label_every = max(1, math.ceil(len(bars) / 12))
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" data-chart="bar">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in (0.0, top / 2, top):
        y = TOP + plot_h - plot_h * tick / top
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_number(tick)}</text>"
        )
    for index, (label, value) in enumerate(bars):
        height = plot_h * value / top
        x = LEFT + slot * index + slot * 0.15
        y = TOP + plot_h - height
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{height:.1f}" data-label="{escape(label)}" data-value="{_number(value)}">'
            f"<title>{escape(label)}: {_number(value)}</title></rect>"
        )
        if len(bars) <= 12 and value:
            parts.append(
                f'<text class="value" x="{x + slot * 0.35:.1f}" y="{y - 3:.1f}" '
                f'text-anchor="middle">{_number(value)}</text>'
            )
        if index % label_every == 0:
            parts.append(
                f'<text class="axis" x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    if not any(value for _, value in bars):
        parts.append(
            f'<text class="empty" x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
            'text-anchor="middle">no data in this window</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
