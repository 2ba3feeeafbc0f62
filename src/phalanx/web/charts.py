"""Charts as inline SVG, drawn on the server: no script library, nothing fetched.

Each function returns an ``<svg>`` element sized by its ``viewBox`` (the stylesheet makes it
as wide as its box) with a ``<title>`` per mark, so hovering shows the numbers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from phalanx.web.markup import esc

WIDTH = 640


def allocation_over_time(points: Sequence[tuple[float, float, float]]) -> str:
    """Return a line chart of (epoch seconds, GPUs allocated, GPUs in total) samples: the
    allocated line over the shaded capacity. A note instead when there are no samples."""
    if not points:
        return '<p class="empty">No samples yet.</p>'
    height, pad = 160, 28
    t0, t1 = points[0][0], points[-1][0]
    span = max(t1 - t0, 1.0)
    top = max(*(total for _, _, total in points), *(a for _, a, _ in points), 1.0)

    def x(t: float) -> float:
        return pad + (t - t0) / span * (WIDTH - 2 * pad)

    def y(v: float) -> float:
        return height - pad - v / top * (height - 2 * pad)

    if len(points) == 1:
        points = [*points, (t0 + 1.0, points[0][1], points[0][2])]
        span = 1.0
    capacity = " ".join(f"{x(t):.1f},{y(total):.1f}" for t, _, total in points)
    allocated = " ".join(f"{x(t):.1f},{y(a):.1f}" for t, a, _ in points)
    last_t, last_a, last_total = points[-1]
    base = f"{x(points[-1][0]):.1f},{y(0):.1f} {x(t0):.1f},{y(0):.1f}"
    label_t0 = time.strftime("%H:%M:%S", time.gmtime(t0))
    label_t1 = time.strftime("%H:%M:%S", time.gmtime(last_t))
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="GPUs allocated over time">'
        f'<polygon class="capacity" points="{capacity} {base}"><title>capacity</title></polygon>'
        f'<polyline class="allocated" points="{allocated}" fill="none"/>'
        f'<line class="axis" x1="{pad}" y1="{y(0):.1f}" x2="{WIDTH - pad}" y2="{y(0):.1f}"/>'
        f'<text x="{pad}" y="{height - 8}">{label_t0} UTC</text>'
        f'<text x="{WIDTH - pad}" y="{height - 8}" text-anchor="end">{label_t1} UTC</text>'
        f'<text x="{pad}" y="14">{last_a:g} of {last_total:g} GPUs allocated now</text>'
        "</svg>"
    )


def quota_bars(rows: Sequence[tuple[str, float, float, float]]) -> str:
    """Return horizontal bars, one per (label, used, nominal, borrowed): the part of ``used``
    within ``nominal`` solid, the borrowed part beyond it hatched, ``nominal`` a tick."""
    if not rows:
        return '<p class="empty">No queues.</p>'
    bar_h, gap, left = 18, 8, 160
    height = len(rows) * (bar_h + gap) + gap
    top = max(*(max(used, nominal) for _, used, nominal, _ in rows), 1.0)
    scale = (WIDTH - left - 70) / top
    marks = []
    for i, (label, used, nominal, borrowed) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        own = min(used, nominal) if nominal else used - borrowed
        marks.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{esc(label)}</text>'
            f'<rect class="nominal" x="{left}" y="{y}" width="{nominal * scale:.1f}" '
            f'height="{bar_h}"><title>{esc(label)}: quota {nominal:g}</title></rect>'
            f'<rect class="used" x="{left}" y="{y + 3}" width="{max(own, 0) * scale:.1f}" '
            f'height="{bar_h - 6}"><title>{esc(label)}: {used:g} used</title></rect>'
        )
        if borrowed > 0:
            marks.append(
                f'<rect class="borrowed" x="{left + max(own, 0) * scale:.1f}" y="{y + 3}" '
                f'width="{borrowed * scale:.1f}" height="{bar_h - 6}">'
                f"<title>{esc(label)}: {borrowed:g} borrowed</title></rect>"
            )
        marks.append(
            f'<text x="{left + max(used, nominal) * scale + 6:.1f}" y="{y + 13}">'
            f"{used:g}/{nominal:g}{f' (+{borrowed:g} borrowed)' if borrowed else ''}</text>"
        )
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="Queue usage against quota">{"".join(marks)}</svg>'
    )


def count_bars(rows: Sequence[tuple[str, float]]) -> str:
    """Return horizontal bars of (label, count), longest first as given."""
    if not rows:
        return '<p class="empty">None.</p>'
    bar_h, gap, left = 16, 6, 200
    height = len(rows) * (bar_h + gap) + gap
    top = max(*(n for _, n in rows), 1.0)
    scale = (WIDTH - left - 50) / top
    marks = "".join(
        f'<text x="{left - 6}" y="{gap + i * (bar_h + gap) + 12}" text-anchor="end">'
        f"{esc(label)}</text>"
        f'<rect class="used" x="{left}" y="{gap + i * (bar_h + gap)}" '
        f'width="{n * scale:.1f}" height="{bar_h}"><title>{esc(label)}: {n:g}</title></rect>'
        f'<text x="{left + n * scale + 6:.1f}" y="{gap + i * (bar_h + gap) + 12}">{n:g}</text>'
        for i, (label, n) in enumerate(rows)
    )
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="Counts">{marks}</svg>'
    )
