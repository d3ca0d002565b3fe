"""Small inline-SVG charts for the static reports: no script, no external file, no font load.

Every function returns one ``<svg>`` element as text; every label and value is escaped.
Colours are fixed per route so that the reports read alike.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

ROUTE_COLOURS = {"urgent": "#c0392b", "review": "#e67e22", "failed": "#7f8c8d",
                 "routine": "#27ae60"}
SERIES_COLOURS = ("#2c7fb8", "#d95f0e", "#31a354", "#756bb1", "#e7298a", "#636363")
_FONT = 'font-family="sans-serif" font-size="11"'


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title>{"".join(body)}</svg>')


def stacked_bars(counts: Mapping[str, Mapping[str, int]], order: Sequence[str], title: str,
                 width: int = 560) -> str:
    """Horizontal stacked bars: one bar per key of `counts` (a device group), segments in
    `order` (routes), each labelled with its count."""
    rows = list(counts.items())
    label_w, bar_h, gap = 210, 18, 8
    height = 30 + len(rows) * (bar_h + gap) + 24
    total = max([sum(c.values()) for _, c in rows] + [1])
    scale = (width - label_w - 20) / total
    body = [f'<text x="4" y="16" {_FONT} font-weight="bold">{escape(title)}</text>']
    for i, (name, c) in enumerate(rows):
        y = 28 + i * (bar_h + gap)
        body.append(f'<text x="4" y="{y + 13}" {_FONT}>{escape(name[:34])}</text>')
        x = float(label_w)
        for route in order:
            n = int(c.get(route, 0))
            if not n:
                continue
            w = n * scale
            colour = ROUTE_COLOURS.get(route, "#999")
            body.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                        f'fill="{colour}"><title>{escape(route)}: {n}</title></rect>')
            if w > 14:
                body.append(f'<text x="{x + w / 2:.1f}" y="{y + 13}" {_FONT} fill="#fff" '
                            f'text-anchor="middle">{n}</text>')
            x += w
    legend_y = height - 8
    for j, route in enumerate(order):
        lx = label_w + j * 80
        body.append(f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" '
                    f'fill="{ROUTE_COLOURS.get(route, "#999")}"/>'
                    f'<text x="{lx + 14}" y="{legend_y}" {_FONT}>{escape(route)}</text>')
    return _svg(width, height, body, title)


def histogram(edges: Sequence[float], counts: Sequence[int],
              reference: Sequence[int] | None, title: str, width: int = 320,
              height: int = 170) -> str:
    """Bars of `counts` (as fractions) on `edges`; the reference histogram (calibration)
    as a step line over them when given."""
    left, right, top, bottom = 30, 10, 22, 22
    w, h = width - left - right, height - top - bottom
    current = np.asarray(counts, dtype=float)
    cur = current / current.sum() if current.sum() else current
    ref = None
    if reference is not None and float(np.sum(reference)):
        ref = np.asarray(reference, dtype=float) / float(np.sum(reference))
    top_value = max(float(cur.max(initial=0)), float(ref.max()) if ref is not None else 0,
                    1e-9)
    lo, hi = float(edges[0]), float(edges[-1])

    def px(x: float) -> float:
        return left + (x - lo) / (hi - lo) * w

    def py(v: float) -> float:
        return top + h - v / top_value * h

    body = [f'<text x="4" y="14" {_FONT} font-weight="bold">{escape(title)}</text>',
            f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#333"/>']
    for i, value in enumerate(cur):
        x0, x1 = px(edges[i]), px(edges[i + 1])
        body.append(f'<rect x="{x0:.1f}" y="{py(value):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                    f'height="{top + h - py(value):.1f}" fill="#2c7fb8">'
                    f'<title>{edges[i]:g}-{edges[i + 1]:g}: {int(current[i])}</title></rect>')
    if ref is not None:
        points = []
        for i, value in enumerate(ref):
            points += [f"{px(edges[i]):.1f},{py(value):.1f}",
                       f"{px(edges[i + 1]):.1f},{py(value):.1f}"]
        body.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#d95f0e" '
                    f'stroke-width="2"><title>calibration reference</title></polyline>')
    for tick in (lo, (lo + hi) / 2, hi):
        body.append(f'<text x="{px(tick):.1f}" y="{height - 6}" {_FONT} '
                    f'text-anchor="middle">{tick:g}</text>')
    return _svg(width, height, body, title)


def reliability(predicted: Sequence[float], observed: Sequence[float], counts: Sequence[int],
                title: str, size: int = 220) -> str:
    """Reliability diagram: mean predicted vs observed frequency per bin (dot area ~ n)."""
    pad = 28
    s = size - 2 * pad
    body = [f'<text x="4" y="14" {_FONT} font-weight="bold">{escape(title)}</text>',
            f'<rect x="{pad}" y="{pad}" width="{s}" height="{s}" fill="none" stroke="#333"/>',
            f'<line x1="{pad}" y1="{pad + s}" x2="{pad + s}" y2="{pad}" stroke="#aaa" '
            f'stroke-dasharray="4"/>']
    biggest = max(list(counts) + [1])
    for p, o, n in zip(predicted, observed, counts, strict=True):
        if not n:
            continue
        r = 2 + 6 * (n / biggest) ** 0.5
        body.append(f'<circle cx="{pad + p * s:.1f}" cy="{pad + (1 - o) * s:.1f}" r="{r:.1f}" '
                    f'fill="#2c7fb8"><title>predicted {p:.2f}, observed {o:.2f}, n={n}'
                    f'</title></circle>')
    body.append(f'<text x="{pad + s / 2}" y="{size - 6}" {_FONT} text-anchor="middle">'
                f'predicted</text>')
    return _svg(size, size, body, title)


def lines(series: Mapping[str, Sequence[float]], title: str, *,
          threshold: float | None = None, width: int = 560, height: int = 180,
          marks: Sequence[int] = ()) -> str:
    """Line chart of each series against its index; an optional horizontal `threshold`
    line and vertical `marks` (e.g. where an alarm fired)."""
    left, right, top, bottom = 36, 110, 22, 20
    w, h = width - left - right, height - top - bottom
    values = [v for s in series.values() for v in s if np.isfinite(v)]
    hi = max(values + ([threshold] if threshold is not None else []) + [1e-9])
    lo = min(values + [0.0])
    n = max([len(s) for s in series.values()] + [2])

    def px(i: float) -> float:
        return left + i / max(n - 1, 1) * w

    def py(v: float) -> float:
        return top + h - (v - lo) / ((hi - lo) or 1) * h

    body = [f'<text x="4" y="14" {_FONT} font-weight="bold">{escape(title)}</text>',
            f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#333"/>',
            f'<text x="2" y="{top + 8}" {_FONT}>{hi:.3g}</text>',
            f'<text x="2" y="{top + h}" {_FONT}>{lo:.3g}</text>']
    if threshold is not None:
        body.append(f'<line x1="{left}" y1="{py(threshold):.1f}" x2="{left + w}" '
                    f'y2="{py(threshold):.1f}" stroke="#c0392b" stroke-dasharray="5"/>')
    for mark in marks:
        body.append(f'<line x1="{px(mark):.1f}" y1="{top}" x2="{px(mark):.1f}" y2="{top + h}" '
                    f'stroke="#c0392b"/>')
    for j, (name, s) in enumerate(series.items()):
        colour = SERIES_COLOURS[j % len(SERIES_COLOURS)]
        pts = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(s) if np.isfinite(v))
        if pts:
            body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" '
                        f'stroke-width="1.5"/>')
        body.append(f'<text x="{left + w + 6}" y="{top + 12 + 14 * j}" {_FONT} '
                    f'fill="{colour}">{escape(name[:18])}</text>')
    return _svg(width, height, body, title)


def png_data_uri(image: np.ndarray) -> str:
    """A grayscale image (2-D array, any range) as a ``data:image/png;base64`` URI,
    windowed to its 1st-99th percentiles (a dependency-free PNG encoder)."""
    a = np.asarray(image, dtype=np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    scaled = np.clip((np.nan_to_num(a, nan=lo) - lo) / ((hi - lo) or 1.0), 0, 1)
    pixels = (scaled * 255).astype(np.uint8)
    height, width = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
