"""Inline SVG charts for the admin pages, drawn server-side with pygal (pure).

The charts carry no script (pygal's tooltip JavaScript is switched off) and no
external reference, so the dashboard works without JavaScript and under a
strict Content-Security-Policy. Every chart also comes with its numbers as a
table on the page, for screen readers and for anyone who wants exact values.
"""

from __future__ import annotations

from collections.abc import Sequence

import pygal
from pygal.style import Style

from server.reports import DayCount, StepDropOff

__all__ = ["COLORS", "daily_chart", "drop_off_chart"]

COLORS = {
    "started": "#1d4ed8",
    "completed": "#047857",
    "abandoned": "#b91c1c",
    "reached": "#1d4ed8",
    "stopped": "#b91c1c",
}

_STYLE_ARGS = dict(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1f2937",
    foreground_strong="#111827",
    foreground_subtle="#d1d5db",
    opacity="0.9",
    opacity_hover="1",
    transition="none",
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    label_font_size=13,
    major_label_font_size=13,
    value_font_size=12,
    legend_font_size=14,
    title_font_size=16,
    tooltip_font_size=13,
)

_COMMON = {
    "js": [],  # no script, no CDN
    "disable_xml_declaration": True,
    "legend_at_bottom": True,
    "legend_box_size": 14,
    "margin": 12,
    "print_zeroes": True,
    "no_data_text": "No data for this period",
    "show_y_guides": True,
    "human_readable": False,
}


def _style(*series: str) -> Style:
    return Style(colors=tuple(COLORS[name] for name in series), **_STYLE_ARGS)


def _svg(chart: pygal.graph.graph.Graph) -> str:
    return str(chart.render(is_unicode=True))


def drop_off_chart(steps: Sequence[StepDropOff], *, width: int = 720, height: int = 340) -> str:
    """Grouped bars per flow step: sessions that reached it, and stopped at it."""
    chart = pygal.Bar(
        style=_style("reached", "stopped"),
        width=width,
        height=height,
        print_values=True,
        print_values_position="top",
        y_title="Sessions",
        **_COMMON,
    )
    chart.x_labels = [step.step for step in steps]
    if steps:
        chart.add("Reached this step", [step.reached for step in steps])
        chart.add("Abandoned at this step", [step.stopped for step in steps])
    return _svg(chart)


def daily_chart(days: Sequence[DayCount], *, width: int = 720, height: int = 340) -> str:
    """Sessions started, completed and abandoned per UTC day."""
    every = max(1, len(days) // 8)
    chart = pygal.Line(
        style=_style("started", "completed", "abandoned"),
        width=width,
        height=height,
        dots_size=2.5,
        stroke_style={"width": 2.5},
        x_label_rotation=0,
        show_minor_x_labels=False,
        y_title="Sessions",
        **_COMMON,
    )
    chart.x_labels = [day.day[5:] for day in days]  # MM-DD; the period is shown above
    chart.x_labels_major = [day.day[5:] for i, day in enumerate(days) if i % every == 0]
    if days:
        chart.add("Started", [day.started for day in days])
        chart.add("Completed", [day.completed for day in days])
        chart.add("Abandoned", [day.abandoned for day in days])
    return _svg(chart)
