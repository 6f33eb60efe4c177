"""Inline SVG charts for the report: horizontal bars, stacked bars per shard group, a histogram with a
threshold marker. Plain strings (every label escaped), no scripts, fixed sizes."""
from __future__ import annotations

import html

W = 960  # chart width in px


def _t(x, y, text, anchor="start", size=11) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}">'
            f"{html.escape(str(text))}</text>")


def bars(items: list[tuple[str, int]], color: str) -> str:
    """One horizontal bar per (label, value), longest first as given."""
    if not items:
        return ""
    top, row, label_w = max(v for _, v in items) or 1, 20, 320
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{row * len(items) + 6}" role="img">']
    for i, (label, v) in enumerate(items):
        y = i * row + 3
        length = (W - label_w - 80) * v / top
        out.append(_t(label_w - 6, y + 13, label[:48], "end"))
        out.append(f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{row - 6}" fill="{color}"/>')
        out.append(_t(label_w + length + 4, y + 13, f"{v:,}"))
    return "".join(out) + "</svg>"


def stacked(groups: list[tuple[str, dict]], series: tuple) -> str:
    """One vertical stacked bar per (label, {series: value}) (rows per verdict per shard group)."""
    if not groups:
        return ""
    h, top = 220, max(sum(c.values()) for _, c in groups) or 1
    step = (W - 60) / len(groups)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h + 90}" role="img">',
           _t(4, 12, f"{top:,} rows"), f'<line x1="50" y1="{h}" x2="{W}" y2="{h}" stroke="#999"/>']
    for i, (label, counts) in enumerate(groups):
        x, y = 50 + i * step, h
        for name, color in series:
            bh = h * counts.get(name, 0) / top
            y -= bh
            out.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{bh:.1f}" '
                       f'fill="{color}"><title>{html.escape(label)}: {name} {counts.get(name, 0):,}</title></rect>')
        out.append(f'<text x="{x + step / 2:.1f}" y="{h + 8}" font-size="9" text-anchor="end" '
                   f'transform="rotate(-60 {x + step / 2:.1f} {h + 8})">{html.escape(label[:24])}</text>')
    return "".join(out) + "</svg>"


def histogram(values: list[float], threshold: float | None, bins: int = 32) -> str:
    """Counts of ``values`` in ``bins`` equal bins, with a dashed line at ``threshold``."""
    if not values:
        return ""
    lo, hi = min(values + ([threshold] if threshold is not None else [])), max(values + ([threshold] if threshold is not None else []))
    if hi == lo:
        hi = lo + 1
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / (hi - lo) * bins))] += 1
    h, top, step = 140, max(counts), (W - 60) / bins
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h + 30}" role="img">',
           _t(4, 12, f"{top:,}"), f'<line x1="50" y1="{h}" x2="{W}" y2="{h}" stroke="#999"/>']
    for i, c in enumerate(counts):
        bh = h * c / top
        out.append(f'<rect x="{50 + i * step + 1:.1f}" y="{h - bh:.1f}" width="{step - 2:.1f}" height="{bh:.1f}" '
                   f'fill="#8e44ad"><title>{lo + i * (hi - lo) / bins:g}–{lo + (i + 1) * (hi - lo) / bins:g}: {c:,}</title></rect>')
    out += [_t(50, h + 16, f"{lo:g}"), _t(W - 4, h + 16, f"{hi:g}", "end")]
    if threshold is not None:
        x = 50 + (threshold - lo) / (hi - lo) * (W - 60)
        out += [f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{h}" stroke="#c0392b" stroke-dasharray="4 3"/>',
                _t(x + 4, 12, f"threshold {threshold:g}") if x < W - 120 else _t(x - 4, 12, f"threshold {threshold:g}", "end")]
    out.append(_t(W / 2, h + 28, f"{len(values):,} matches", "middle"))
    return "".join(out) + "</svg>"
