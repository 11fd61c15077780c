"""Inline SVG charts for the admin pages, drawn server-side with pygal (pure).

The charts carry no script (pygal's tooltip JavaScript is switched off) and no
external reference, so the dashboard works without JavaScript and under a
strict Content-Security-Policy. Every chart also comes with its numbers as a
table on the page, for screen readers and for anyone who wants exact values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pygal
from pygal.style import Style

from .recovery_report import Stage
from .summary import DayCount, StepDropOff

__all__ = ["COLORS", "count_ticks", "daily_chart", "drop_off_chart", "recovery_chart"]

COLORS = {
    "started": "#1d4ed8",
    "completed": "#047857",
    "abandoned": "#b91c1c",
    "reached": "#1d4ed8",
    "stopped": "#b91c1c",
    "recovery": "#047857",
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
    label_font_size=15,
    major_label_font_size=15,
    value_font_size=15,
    legend_font_size=16,
    title_font_size=16,
    tooltip_font_size=15,
    guide_stroke_color="#e5e7eb",
    guide_stroke_dasharray="0",
    major_guide_stroke_color="#e5e7eb",
    major_guide_stroke_dasharray="0",
    stroke_width=3,
)

_COMMON = {
    "js": [],  # no script, no CDN
    "disable_xml_declaration": True,
    "legend_at_bottom": True,
    "legend_box_size": 16,
    "truncate_label": -1,
    "truncate_legend": -1,
    "include_x_axis": True,  # counts start at zero
    "max_scale": 6,
    "margin": 12,
    "print_zeroes": True,
    "no_data_text": "No data for this period",
    "show_y_guides": True,
    "human_readable": False,
}


def count_ticks(top: int, most: int = 5) -> list[int]:
    """Y-axis ticks for counts: whole numbers from 0, steps of 1, 2 or 5 times a power
    of ten, at most ``most`` steps, the last at or above ``top``.

    pygal's own ticks split small ranges into fractions (0.2 sessions); counts have
    none.
    """
    top = max(top, 1)
    power = 1
    while True:
        for step in (power, 2 * power, 5 * power):
            steps = -(-top // step)  # ceiling division
            if steps <= most:
                return list(range(0, step * steps + 1, step))
        power *= 10


def _count_axis(values: Sequence[int]) -> dict[str, object]:
    ticks = count_ticks(max(values, default=0))
    return {"y_labels": ticks, "range": (0, ticks[-1])}


def _style(*series: str) -> Style:
    return Style(colors=tuple(COLORS[name] for name in series), **_STYLE_ARGS)


_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def _svg(chart: pygal.graph.graph.Graph) -> str:
    """The chart's SVG without pygal's inline config script and banner comments."""
    svg = str(chart.render(is_unicode=True))
    return _COMMENT.sub("", _SCRIPT.sub("", svg))


def drop_off_chart(steps: Sequence[StepDropOff], *, width: int = 600, height: int = 340) -> str:
    """Grouped bars per flow step: sessions that reached it, and stopped at it."""
    chart = pygal.Bar(
        style=_style("reached", "stopped"),
        width=width,
        height=height,
        print_values=True,
        print_values_position="top",
        legend_at_bottom_columns=2,
        y_title="Sessions",
        **_count_axis([step.reached for step in steps]),
        **_COMMON,
    )
    chart.x_labels = [step.step for step in steps]
    if steps:
        chart.add("Reached this step", [step.reached for step in steps])
        chart.add("Abandoned at this step", [step.stopped for step in steps])
    return _svg(chart)


def daily_chart(days: Sequence[DayCount], *, width: int = 600, height: int = 340) -> str:
    """Sessions started, completed and abandoned per UTC day."""
    every = max(1, -(-len(days) // 6))  # at most about six date labels
    chart = pygal.Line(
        style=_style("started", "completed", "abandoned"),
        width=width,
        height=height,
        dots_size=3,
        legend_at_bottom_columns=3,
        show_minor_x_labels=False,
        y_title="Sessions",
        **_count_axis([max(d.started, d.completed, d.abandoned) for d in days]),
        **_COMMON,
    )
    chart.x_labels = [day.day[5:] for day in days]  # MM-DD; the period is shown above
    chart.x_labels_major = [day.day[5:] for i, day in enumerate(days) if i % every == 0]
    if days:
        chart.add("Started", [day.started for day in days])
        chart.add("Completed", [day.completed for day in days])
        chart.add("Abandoned", [day.abandoned for day in days])
    return _svg(chart)


STAGE_LABELS = {
    "abandoned": "Abandoned",
    "contactable": "With contact",
    "reminded": "Reminded",
    "opened": "Link opened",
    "recovered": "Recovered",
    "completed": "Completed",
}


def recovery_chart(stages: Sequence[Stage], *, width: int = 760, height: int = 340) -> str:
    """One bar per stage, abandoned -> with contact -> reminded -> link opened ->
    recovered -> completed after recovery."""
    chart = pygal.Bar(
        style=_style("recovery"),
        width=width,
        height=height,
        print_values=True,
        print_values_position="top",
        show_legend=False,
        y_title="Sessions",
        **_count_axis([stage.count for stage in stages]),
        **_COMMON,
    )
    chart.x_labels = [STAGE_LABELS.get(stage.stage, stage.stage) for stage in stages]
    if stages:
        chart.add("Sessions", [stage.count for stage in stages])
    return _svg(chart)
