"""Plain-SVG grouped bar charts for the load test: no package beyond Python.

`render(rows)` returns an SVG document with one panel per (metric, endpoint):
throughput on the top row, p99 latency below, one bar per cache mode. Each
panel has its own scale, because a list request moves a thousand products
and runs orders of magnitude slower than a lookup by id: on one shared axis
its bars would vanish.
"""

import math
from xml.sax.saxutils import escape

PANEL_W, PANEL_H = 360, 230
MARGIN_L, MARGIN_T, MARGIN_B = 64, 42, 34
COLS_GAP, TOP = 24, 48
# One colour per mode, in the order modes first appear; none is grey so the
# baseline reads as the baseline.
PALETTE = {"none": "#8c8c8c", "memory": "#e6a23c", "redis": "#d9534f", "hybrid": "#2e7dbb"}
FALLBACK = ["#5cb85c", "#9b59b6", "#34495e"]

METRICS = [
    ("rps", "req/s", "higher is better", lambda v: f"{v:,.0f}"),
    ("p99_ms", "p99 latency (ms)", "lower is better", lambda v: f"{v:.{2 if v < 10 else 1 if v < 100 else 0}f}"),
]


def nice_step(value):
    """The smallest 1, 2 or 5 times a power of ten at or above value."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def fmt_tick(v):
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def text(x, y, s, size=12, anchor="middle", weight="normal", fill="#222"):
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'font-weight="{weight}" fill="{fill}">{escape(s)}</text>'
    )


def panel(ox, oy, title, subtitle, bars, fmt):
    """One panel at (ox, oy): bars is [(mode, value, colour)]."""
    out = [text(ox + PANEL_W / 2, oy + 16, title, 13, weight="bold")]
    out.append(text(ox + PANEL_W / 2, oy + 31, subtitle, 11, fill="#666"))
    plot_x, plot_y = ox + MARGIN_L, oy + MARGIN_T
    plot_w, plot_h = PANEL_W - MARGIN_L - 10, PANEL_H - MARGIN_T - MARGIN_B
    # Room above the tallest bar for its label; gridlines at round values.
    peak = max((v for _, v, _ in bars), default=1) * 1.12
    step = nice_step(peak / 4)
    lines = max(math.ceil(peak / step), 1)
    top = step * lines
    for i in range(lines + 1):
        value = step * i
        y = plot_y + plot_h - plot_h * i / lines
        out.append(
            f'<line x1="{plot_x}" y1="{y:.1f}" x2="{plot_x + plot_w}" y2="{y:.1f}" '
            f'stroke="{"#999" if i == 0 else "#e4e4e4"}"/>'
        )
        out.append(text(plot_x - 6, y + 4, fmt_tick(value), 11, anchor="end", fill="#555"))
    slot = plot_w / max(len(bars), 1)
    width = min(64, slot * 0.6)
    for i, (mode, value, colour) in enumerate(bars):
        x = plot_x + slot * i + (slot - width) / 2
        h = plot_h * value / top
        y = plot_y + plot_h - h
        out.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" fill="{colour}">'
            f"<title>{escape(mode)}: {escape(fmt(value))}</title></rect>"
        )
        out.append(text(x + width / 2, y - 4, fmt(value), 11))
        out.append(text(x + width / 2, plot_y + plot_h + 16, mode, 12))
    return out


def render(rows, title, caption):
    """An SVG document charting rows (dicts with mode, endpoint, rps, p99_ms)."""
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    endpoints = list(dict.fromkeys(r["endpoint"] for r in rows))
    colours = {}
    for m in modes:
        colours[m] = PALETTE.get(m) or FALLBACK[len(colours) % len(FALLBACK)]
    by_key = {(r["mode"], r["endpoint"]): r for r in rows}

    width = len(endpoints) * PANEL_W + (len(endpoints) - 1) * COLS_GAP + 20
    height = TOP + len(METRICS) * PANEL_H + 24
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        text(width / 2, 22, title, 15, weight="bold"),
        text(width / 2, 40, caption, 11, fill="#555"),
    ]
    for row, (key, label, better, fmt) in enumerate(METRICS):
        for col, endpoint in enumerate(endpoints):
            bars = [
                (m, by_key[(m, endpoint)][key], colours[m])
                for m in modes
                if (m, endpoint) in by_key
            ]
            ox = 10 + col * (PANEL_W + COLS_GAP)
            oy = TOP + row * PANEL_H
            out += panel(ox, oy, f"GET {endpoint}: {label}", better, bars, fmt)
    out.append("</svg>")
    return "\n".join(out) + "\n"
