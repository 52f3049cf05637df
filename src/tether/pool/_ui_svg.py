"""Charts for the dashboard, drawn on the server as inline SVG.

No JavaScript and no chart library: the page must work offline and from a
pool that reaches nothing. One kind of chart is enough for usage per team per
month: grouped bars, one group per month, one bar per team, a legend, and a
y axis with round ticks. Every label goes through :func:`html.escape`. Pure:
figures in, markup out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["PALETTE", "bar_chart", "nice_ticks"]

#: Colour-blind-safe (Okabe-Ito), in the order teams are drawn.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

_W, _H = 720, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 150, 16, 36


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (1, 2 or 5 times a power of ten apart)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2g}"


def bar_chart(
    *,
    title: str,
    unit: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    element_id: str,
) -> str:
    """An SVG grouped bar chart.

    ``groups`` label the x axis (months); ``series`` maps each name (team) to
    one value per group, drawn in :data:`PALETTE` order. Each bar carries a
    ``<title>`` (a tooltip with the exact figure) and ``data-series``/``data-group``
    attributes, so tests and people can read the figures back. Raises
    ValueError if a series' length differs from the groups'.
    """
    for name, values in series.items():
        if len(values) != len(groups):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(groups)} groups")
    names = list(series)
    top = max((v for values in series.values() for v in values), default=0.0)
    ticks = nice_ticks(top)
    y_max = ticks[-1] or 1.0
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(element_id)}" class="chart" '
        f'viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in ticks:
        y = _TOP + plot_h - tick / y_max * plot_h
        out.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#ddd" stroke-width="1"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{escape(_fmt(tick))}</text>"
        )
    out.append(
        f'<text x="14" y="{_TOP + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {_TOP + plot_h / 2:.1f})">{escape(unit)}</text>'
    )
    if groups:
        slot = plot_w / len(groups)
        bar_w = max(2.0, min(28.0, slot * 0.8 / max(len(names), 1)))
        for gi, group in enumerate(groups):
            x0 = _LEFT + gi * slot + (slot - bar_w * len(names)) / 2
            for si, name in enumerate(names):
                value = float(series[name][gi])
                h = max(value, 0.0) / y_max * plot_h
                colour = PALETTE[si % len(PALETTE)]
                out.append(
                    f'<rect class="column" x="{x0 + si * bar_w:.1f}" y="{_TOP + plot_h - h:.1f}" '
                    f'width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}" '
                    f'data-series="{escape(name)}" data-group="{escape(group)}" '
                    f'data-value="{value:.6g}">'
                    f"<title>{escape(name)} {escape(group)}: {escape(_fmt(value))} "
                    f"{escape(unit)}</title></rect>"
                )
            out.append(
                f'<text x="{_LEFT + gi * slot + slot / 2:.1f}" y="{_H - _BOTTOM + 16}" '
                f'text-anchor="middle" font-size="11">{escape(group)}</text>'
            )
    out.append(
        f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}" '
        'stroke="#333" stroke-width="1"/>'
    )
    for si, name in enumerate(names):
        y = _TOP + 8 + si * 18
        out.append(
            f'<rect x="{_W - _RIGHT + 16}" y="{y}" width="12" height="12" '
            f'fill="{PALETTE[si % len(PALETTE)]}"/>'
            f'<text x="{_W - _RIGHT + 34}" y="{y + 10}" font-size="12" class="legend">'
            f"{escape(name)}</text>"
        )
    if not names:
        out.append(
            f'<text x="{_LEFT + plot_w / 2:.1f}" y="{_TOP + plot_h / 2:.1f}" '
            'text-anchor="middle" font-size="13" fill="#666">no usage in these months</text>'
        )
    out.append("</svg>")
    return "".join(out)
