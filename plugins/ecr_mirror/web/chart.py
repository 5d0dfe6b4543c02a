"""Geometry of the "tags over time" chart: stacked bars per time bucket, drawn as inline SVG by the
``_chart.html`` template.

Written here rather than with a charting library: the chart is a handful of rectangles and
labels, rendered on the server with the page (no JavaScript, no extra dependency), and the
template escapes every text it draws.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from ecr_mirror.web.queries import CHART_STATUSES, Series

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 40
#: what each charted status is called in the legend
LABELS = {"pulled": "mirrored", "stale": "stale", "failed": "failed"}


@dataclass
class Segment:
    status: str
    y: float
    height: float
    count: int


@dataclass
class Bar:
    x: float
    width: float
    label: str
    title: str
    counts: dict[str, int]
    segments: list[Segment] = field(default_factory=list)


@dataclass
class Chart:
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    plot_right: int
    bars: list[Bar]
    #: (y, value) of the horizontal grid lines
    y_ticks: list[tuple[float, int]]
    #: (x, text) under the bars, thinned so they do not overlap
    x_labels: list[tuple[float, str]]
    legend: list[tuple[str, str]]
    step: str


def _label(series: Series, index: int) -> str:
    start = series.buckets[index].start
    if series.step < timedelta(days=1):
        return start.strftime("%m-%d %H:00")
    return start.strftime("%Y-%m-%d")


def _nice_steps() -> Iterator[int]:
    magnitude = 1
    while True:
        yield from (magnitude, 2 * magnitude, 5 * magnitude)
        magnitude *= 10


def _ticks(top: int) -> list[int]:
    """Grid values from 0 to at least ``top`` in at most four round steps (1, 2, 5, 10, 20, ...)."""
    if top <= 0:
        return [0, 1]
    step = next(s for s in _nice_steps() if math.ceil(top / s) <= 4)
    return list(range(0, step * math.ceil(top / step) + 1, step))


def layout(series: Series) -> Chart:
    """Place the bars of ``series`` in a WIDTH x HEIGHT box, bottom-up in ``CHART_STATUSES`` order."""
    statuses = [s for s in CHART_STATUSES if any(s in b.counts for b in series.buckets)]
    peak = max((sum(b.counts.get(s, 0) for s in statuses) for b in series.buckets), default=0)
    ticks = _ticks(peak)
    scale_top = ticks[-1]
    plot_h = HEIGHT - TOP - BOTTOM
    plot_w = WIDTH - LEFT - RIGHT
    slot = plot_w / max(len(series.buckets), 1)
    width = max(min(slot * 0.7, 48), 2)
    step_name = {timedelta(hours=1): "hour", timedelta(days=1): "day"}.get(series.step, "week")
    bars = []
    for i, bucket in enumerate(series.buckets):
        x = LEFT + slot * i + (slot - width) / 2
        label = _label(series, i)
        counts = {s: bucket.counts.get(s, 0) for s in statuses}
        summary = ", ".join(f"{n} {LABELS.get(s, s)}" for s, n in counts.items())
        bar = Bar(x, width, label, f"{label} UTC ({step_name}): {summary}", counts)
        base: float = TOP + plot_h
        for status in statuses:
            height = plot_h * counts[status] / scale_top
            if counts[status]:
                bar.segments.append(Segment(status, base - height, height, counts[status]))
            base -= height
        bars.append(bar)
    every = max(1, round(len(bars) / 6))
    x_labels = [(b.x + b.width / 2, b.label) for i, b in enumerate(bars) if i % every == 0]
    y_ticks = [(TOP + plot_h - plot_h * t / scale_top, t) for t in ticks]
    return Chart(
        WIDTH,
        HEIGHT,
        LEFT,
        TOP + plot_h,
        WIDTH - RIGHT,
        bars,
        y_ticks,
        x_labels,
        [(s, LABELS.get(s, s)) for s in statuses],
        step_name,
    )
