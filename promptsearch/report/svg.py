"""A small SVG plotting layer for the HTML report: no dependencies, no scripts.

Every chart is one ``<svg class="chart">`` string with a title, axes, ticks, axis
labels and, where there are several series, a legend.  Points and bars carry an SVG
``<title>`` element, which browsers show as a tooltip.  Every piece of text that
goes into the markup passes through :func:`esc`, so a series name or tooltip may
hold any characters (``<script>``, quotes, braces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from promptsearch.report.ticks import Format, nice_ticks, tick_format

__all__ = [
    "PALETTE",
    "Bar",
    "Point",
    "Series",
    "esc",
    "heatmap",
    "histogram",
    "line_chart",
    "nice_ticks",
    "scatter_chart",
    "share_bar",
]

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)
"""Categorical colours, one per searcher, in order of first appearance."""

WIDTH, HEIGHT = 640, 380  # of a chart, in pixels
_CHAR = 6.6  # estimated width of one character of 12px sans-serif text
_LEFT, _RIGHT, _BOTTOM = 62, 20, 52


def esc(text: object) -> str:
    """*text* made safe for HTML/SVG text and attribute values."""
    return escape(str(text), quote=True)


def _num(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class Point:
    """A point with its tooltip."""

    x: float
    y: float
    tip: str = ""


@dataclass(frozen=True)
class Series:
    """A named, coloured group of points: a line or a scatter group."""

    name: str
    color: str
    points: Sequence[Point]
    width: float = 2.0
    dashed: bool = False
    opacity: float = 1.0


@dataclass(frozen=True)
class Bar:
    """One stacked segment of a histogram bar."""

    name: str
    color: str
    counts: Sequence[int]
    tips: Sequence[str] = field(default_factory=tuple)


class _Frame:
    """Plot area of a chart and the mapping from data to pixels."""

    def __init__(
        self,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        top: float,
        width: int = WIDTH,
        height: int = HEIGHT,
        left: int = _LEFT,
    ) -> None:
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.left, self.right = float(left), float(width - _RIGHT)
        self.top, self.bottom = top, float(height - _BOTTOM)
        self.width, self.height = width, height

    def x(self, value: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return self.left + (value - self.x0) / span * (self.right - self.left)

    def y(self, value: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return self.bottom - (value - self.y0) / span * (self.bottom - self.top)

    def axes(
        self,
        x_ticks: Sequence[float],
        y_ticks: Sequence[float],
        x_label: str,
        y_label: str,
        x_format: Format | None = None,
    ) -> list[str]:
        fx = x_format or tick_format(x_ticks)
        fy = tick_format(y_ticks)
        parts = [
            f'<rect class="plot" x="{_num(self.left)}" y="{_num(self.top)}" '
            f'width="{_num(self.right - self.left)}" height="{_num(self.bottom - self.top)}"/>'
        ]
        for tick in y_ticks:
            y = _num(self.y(tick))
            parts.append(
                f'<line class="grid" x1="{_num(self.left)}" x2="{_num(self.right)}" '
                f'y1="{y}" y2="{y}"/>'
                f'<text class="tick" x="{_num(self.left - 6)}" y="{y}" text-anchor="end" '
                f'dominant-baseline="middle">{esc(fy(tick))}</text>'
            )
        for tick in x_ticks:
            x = _num(self.x(tick))
            parts.append(
                f'<line class="grid" x1="{x}" x2="{x}" y1="{_num(self.top)}" '
                f'y2="{_num(self.bottom)}"/>'
                f'<text class="tick" x="{x}" y="{_num(self.bottom + 16)}" '
                f'text-anchor="middle">{esc(fx(tick))}</text>'
            )
        middle_x = (self.left + self.right) / 2
        middle_y = (self.top + self.bottom) / 2
        parts.append(
            f'<line class="axis" x1="{_num(self.left)}" x2="{_num(self.right)}" '
            f'y1="{_num(self.bottom)}" y2="{_num(self.bottom)}"/>'
            f'<line class="axis" x1="{_num(self.left)}" x2="{_num(self.left)}" '
            f'y1="{_num(self.top)}" y2="{_num(self.bottom)}"/>'
            f'<text class="label" x="{_num(middle_x)}" y="{self.height - 12}" '
            f'text-anchor="middle">{esc(x_label)}</text>'
            f'<text class="label" transform="translate(16 {_num(middle_y)}) rotate(-90)" '
            f'text-anchor="middle">{esc(y_label)}</text>'
        )
        return parts


def _legend(entries: Sequence[tuple[str, str, str]], width: int = WIDTH) -> tuple[list[str], int]:
    """Legend rows under the title: (name, colour, mark) entries, mark 'line',
    'dash', 'dot' or 'box'.  Returns the SVG parts and the height used."""
    parts: list[str] = []
    x, y, row_height = float(_LEFT), 44.0, 18
    for name, color, mark in entries:
        label = _clip(name, 44)
        item = 22 + len(label) * _CHAR + 16
        if x + item > width - _RIGHT and x > _LEFT:
            x, y = float(_LEFT), y + row_height
        if mark in ("line", "dash"):
            dash = ' stroke-dasharray="5 3"' if mark == "dash" else ""
            symbol = (
                f'<line x1="{_num(x)}" x2="{_num(x + 16)}" y1="{_num(y)}" y2="{_num(y)}" '
                f'stroke="{color}" stroke-width="2.5"{dash}/>'
            )
        elif mark == "dot":
            symbol = f'<circle cx="{_num(x + 8)}" cy="{_num(y)}" r="4.5" fill="{color}"/>'
        else:
            symbol = (
                f'<rect x="{_num(x + 2)}" y="{_num(y - 6)}" width="12" height="12" fill="{color}"/>'
            )
        parts.append(
            f'<g class="legend-item"><title>{esc(name)}</title>{symbol}'
            f'<text class="legend" x="{_num(x + 22)}" y="{_num(y)}" '
            f'dominant-baseline="middle">{esc(label)}</text></g>'
        )
        x += item
    used = int(y - 44 + row_height) if entries else 0
    return parts, used


def _svg(kind: str, title: str, body: Sequence[str], height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart" data-chart="{esc(kind)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{esc(title)}">'
        f"<title>{esc(title)}</title>"
        f'<text class="title" x="{_LEFT}" y="22">{esc(title)}</text>' + "".join(body) + "</svg>"
    )


def _empty(kind: str, title: str, message: str) -> str:
    return _svg(
        kind,
        title,
        [
            f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" '
            f'text-anchor="middle">{esc(message)}</text>'
        ],
    )


def _range(values: Sequence[float], pad: float = 0.0) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    margin = (high - low) * pad
    return low - margin, high + margin


def _score_ticks(values: Sequence[float]) -> list[float]:
    """Y ticks for scores: a padded data range, kept inside [0, 1] when scores are."""
    low, high = _range(values, 0.08)
    if min(values) >= 0:
        low = max(low, 0.0)
    if max(values) <= 1:
        high = min(high, 1.0)
    return nice_ticks(low, high)


def line_chart(
    kind: str,
    title: str,
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    *,
    x_end: float | None = None,
    empty: str = "nothing to plot yet",
    extend: bool = True,
    dots: Sequence[Series] = (),
    dots_name: str = "",
) -> str:
    """Step lines (a value holds until the next point), one per series, drawn on to
    *x_end* (default: the last point of any series), or ``extend=False`` to their own;
    under them, small *dots* (one group per colour, hollow where ``dashed``), named
    *dots_name* in the legend."""
    points = [p for s in series for p in s.points]
    if not points:
        return _empty(kind, title, empty)
    scattered = [p for d in dots for p in d.points]
    end = max([1.0] + [p.x for p in points + scattered] + ([] if x_end is None else [x_end]))
    entries = [(s.name, s.color, "dash" if s.dashed else "line") for s in series]
    legend, used = _legend(entries + ([(dots_name, "#737373", "dot")] if scattered else []))
    x_ticks = nice_ticks(*_range([0.0, end]))
    y_ticks = _score_ticks([p.y for p in points + scattered])
    frame = _Frame((x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1]), top=52 + used)
    body = [*legend, *frame.axes(x_ticks, y_ticks, x_label, y_label)]
    for d in dots:
        paint = f'fill="none" stroke="{d.color}"' if d.dashed else f'fill="{d.color}"'
        body.extend(
            f'<circle class="trial" cx="{_num(frame.x(p.x))}" cy="{_num(frame.y(p.y))}" '
            f'r="2.4" {paint} opacity="{d.opacity}"><title>{esc(p.tip)}</title></circle>'
            for p in d.points
        )
    for s in series:
        if not s.points:
            continue
        coords: list[str] = []
        for i, p in enumerate(s.points):
            if i:
                coords.append(f"{_num(frame.x(p.x))},{_num(frame.y(s.points[i - 1].y))}")
            coords.append(f"{_num(frame.x(p.x))},{_num(frame.y(p.y))}")
        if extend:  # hold the last value to the end of the axis
            coords.append(f"{_num(frame.x(end))},{_num(frame.y(s.points[-1].y))}")
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        body.append(
            f'<polyline class="series" fill="none" stroke="{s.color}" '
            f'stroke-opacity="{s.opacity}" '
            f'stroke-width="{s.width}"{dash} points="{" ".join(coords)}"><title>'
            f"{esc(s.name)}</title></polyline>"
        )
        for p in s.points:
            body.append(
                f'<circle class="point" cx="{_num(frame.x(p.x))}" cy="{_num(frame.y(p.y))}" '
                f'r="{3.2 if s.width < 3 else 2.6}" fill="{s.color}"><title>{esc(p.tip)}</title>'
                "</circle>"
            )
    return _svg(kind, title, body)


def histogram(
    kind: str,
    title: str,
    edges: Sequence[float],
    bars: Sequence[Bar],
    x_label: str,
    y_label: str,
    *,
    empty: str = "nothing to plot yet",
) -> str:
    """Stacked bars between consecutive *edges*, one stack layer per :class:`Bar`."""
    totals = [sum(b.counts[i] for b in bars) for i in range(len(edges) - 1)]
    if not bars or not any(totals):
        return _empty(kind, title, empty)
    legend, used = _legend([(b.name, b.color, "box") for b in bars]) if len(bars) > 1 else ([], 0)
    y_ticks = [t for t in nice_ticks(0, max(totals)) if t == int(t)] or [0.0, 1.0]
    if len(y_ticks) < 2:
        y_ticks = [0.0, float(max(totals))]
    x_ticks = nice_ticks(edges[0], edges[-1], 6)
    x_ticks = [t for t in x_ticks if edges[0] - 1e-9 <= t <= edges[-1] + 1e-9]
    frame = _Frame((edges[0], edges[-1]), (0.0, y_ticks[-1]), top=52 + used)
    body = [*legend, *frame.axes(x_ticks, y_ticks, x_label, y_label)]
    for i in range(len(edges) - 1):
        left, right = frame.x(edges[i]) + 1, frame.x(edges[i + 1]) - 1
        base = 0
        for bar in bars:
            count = bar.counts[i]
            if not count:
                continue
            y_top, y_bottom = frame.y(base + count), frame.y(base)
            tip = bar.tips[i] if i < len(bar.tips) else f"{bar.name}: {count}"
            body.append(
                f'<rect class="bar" x="{_num(left)}" y="{_num(y_top)}" '
                f'width="{_num(max(right - left, 1))}" height="{_num(y_bottom - y_top)}" '
                f'fill="{bar.color}"><title>{esc(tip)}</title></rect>'
            )
            base += count
    return _svg(kind, title, body)


def scatter_chart(
    kind: str,
    title: str,
    groups: Sequence[Series],
    front: Sequence[Point],
    x_label: str,
    y_label: str,
    *,
    front_name: str = "Pareto front",
    empty: str = "nothing to plot yet",
) -> str:
    """Dots per group, with the *front* points ringed and joined by a step line."""
    points = [p for g in groups for p in g.points]
    if not points:
        return _empty(kind, title, empty)
    entries = [(g.name, g.color, "dot") for g in groups]
    if front:
        entries.append((front_name, "#111111", "line"))
    legend, used = _legend(entries)
    x_ticks = nice_ticks(*_range([p.x for p in points], 0.05))
    y_ticks = _score_ticks([p.y for p in points])
    frame = _Frame((x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1]), top=52 + used)
    body = [*legend, *frame.axes(x_ticks, y_ticks, x_label, y_label)]
    if front:
        ordered = sorted(front, key=lambda p: p.x)
        coords = []
        for i, p in enumerate(ordered):
            if i:  # the front holds its score until a longer prompt does better
                coords.append(f"{_num(frame.x(p.x))},{_num(frame.y(ordered[i - 1].y))}")
            coords.append(f"{_num(frame.x(p.x))},{_num(frame.y(p.y))}")
        coords.append(f"{_num(frame.right)},{_num(frame.y(ordered[-1].y))}")
        body.append(
            f'<polyline class="front" fill="none" stroke="#111111" stroke-width="1.5" '
            f'points="{" ".join(coords)}"><title>{esc(front_name)}</title></polyline>'
        )
    for g in groups:
        for p in g.points:
            body.append(
                f'<circle class="point" cx="{_num(frame.x(p.x))}" cy="{_num(frame.y(p.y))}" '
                f'r="4.5" fill="{g.color}" fill-opacity="0.75"><title>{esc(p.tip)}</title>'
                "</circle>"
            )
    for p in front:
        body.append(
            f'<circle class="front-point" cx="{_num(frame.x(p.x))}" cy="{_num(frame.y(p.y))}" '
            f'r="7.5" fill="none" stroke="#111111" stroke-width="1.6"><title>{esc(p.tip)}'
            "</title></circle>"
        )
    return _svg(kind, title, body)


def heatmap(
    kind: str,
    title: str,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    counts: Sequence[Sequence[int]],
    x_label: str,
    y_label: str,
) -> str:
    """A confusion matrix: cell shade is the count's share of its row, count inside."""
    n_rows, n_cols = len(row_labels), len(column_labels)
    if not n_rows or not n_cols:
        return _empty(kind, title, "no labels")
    label_width = min(170, max(len(_clip(t, 24)) for t in row_labels) * _CHAR + 14)
    cell = min(100.0, (WIDTH - label_width - 34 - _RIGHT) / n_cols, 300.0 / n_rows)
    # centre the grid, leaving room for the row labels and the axis label on its left
    left = int(max(label_width + 34, (WIDTH - n_cols * cell) / 2))
    top = 58.0
    height = int(top + cell * n_rows + 64)
    body: list[str] = []
    for r, row in enumerate(counts):
        total = sum(row) or 1
        for c, count in enumerate(row):
            share = count / total
            x, y = left + c * cell, top + r * cell
            shade = f"rgba(31,119,180,{0.08 + 0.87 * share:.3f})"
            ink = "#ffffff" if share > 0.55 else "#1b1b1b"
            tip = (
                f"gold {row_labels[r]}, predicted {column_labels[c]}: {count} "
                f"({share:.0%} of gold {row_labels[r]})"
            )
            body.append(
                f'<g class="cell"><title>{esc(tip)}</title>'
                f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(cell - 2)}" '
                f'height="{_num(cell - 2)}" fill="{shade}"'
                + (' stroke="#1b1b1b" stroke-width="1.5"' if r == c else "")
                + "/>"
                f'<text x="{_num(x + cell / 2 - 1)}" y="{_num(y + cell / 2 - 1)}" '
                f'text-anchor="middle" dominant-baseline="middle" fill="{ink}" '
                f'class="count" style="font-size:{_num(min(14.0, cell * 0.4))}px">{count}'
                "</text></g>"
            )
    for r, label in enumerate(row_labels):
        body.append(
            f'<text class="tick" x="{left - 8}" y="{_num(top + r * cell + cell / 2)}" '
            f'text-anchor="end" dominant-baseline="middle"><title>{esc(label)}</title>'
            f"{esc(_clip(label, 24))}</text>"
        )
    for c, label in enumerate(column_labels):
        width = max(4, int(cell / _CHAR))
        body.append(
            f'<text class="tick" x="{_num(left + c * cell + cell / 2 - 1)}" '
            f'y="{_num(top + n_rows * cell + 16)}" text-anchor="middle">'
            f"<title>{esc(label)}</title>{esc(_clip(label, width))}</text>"
        )
    grid_middle = left + n_cols * cell / 2
    body.append(
        f'<text class="label" x="{_num(grid_middle)}" y="{height - 14}" '
        f'text-anchor="middle">{esc(x_label)}</text>'
        f'<text class="label" transform="translate({_num(left - label_width - 16)} '
        f"{_num(top + n_rows * cell / 2)}) "
        f'rotate(-90)" text-anchor="middle">{esc(y_label)}</text>'
    )
    return _svg(kind, title, body, height=height)


def share_bar(kind: str, title: str, parts: Sequence[Bar], total_label: str) -> str:
    """One horizontal bar split into the first count of each part (e.g. correct and
    incorrect), each segment labelled with its count and share."""
    counts = [p.counts[0] if p.counts else 0 for p in parts]
    total = sum(counts)
    if not total:
        return _empty(kind, title, "nothing to plot yet")
    height = 190
    legend, used = _legend([(p.name, p.color, "box") for p in parts])
    top, left, right = 56.0 + used, float(_LEFT), float(WIDTH - _RIGHT)
    body, x = list(legend), left
    for part, count in zip(parts, counts, strict=True):
        if not count:
            continue
        width = (right - left) * count / total
        tip = part.tips[0] if part.tips else f"{part.name}: {count}"
        body.append(
            f'<g class="cell"><title>{esc(tip)}</title><rect x="{_num(x)}" y="{_num(top)}" '
            f'width="{_num(width)}" height="48" fill="{part.color}"/>'
            + (
                f'<text x="{_num(x + width / 2)}" y="{_num(top + 24)}" text-anchor="middle" '
                f'dominant-baseline="middle" fill="#ffffff" class="count">{count} '
                f"({count / total:.0%})</text>"
                if width > 70
                else ""
            )
            + "</g>"
        )
        x += width
    body.append(
        f'<text class="label" x="{_num((left + right) / 2)}" y="{_num(top + 76)}" '
        f'text-anchor="middle">{esc(total_label)}</text>'
    )
    return _svg(kind, title, body, height=height)
