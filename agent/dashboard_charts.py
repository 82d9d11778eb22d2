"""The dashboard's charts as SVG drawn on the server: no script, no CDN, nothing fetched — the
farm LAN may have no internet and the page must work with scripts off.

Each function returns markup for the page (``markupsafe.Markup``); the only text in it is the
dashboard's own labels and figures, escaped all the same. Colours come from the page's CSS
classes (``c-…``), so the charts follow its palette.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

from kuat.agent.dashboard_format import num
from kuat.agent.dashboard_hour import HourBar, HourView
from kuat.agent.dashboard_power import PowerExplained
from kuat.agent.i18n import Lang, number
from kuat.agent.i18n import unit as i18n_unit
from kuat.quota.clock import ASTANA


def _f(v: float) -> str:
    return f"{v:.1f}"


def _text(x: float, y: float, s: str, cls: str = "", anchor: str = "start") -> str:
    return f'<text x="{_f(x)}" y="{_f(y)}" class="{cls}" text-anchor="{anchor}">{escape(s)}</text>'


def _rect(x: float, y: float, w: float, h: float, cls: str, title: str = "") -> str:
    tip = f"<title>{escape(title)}</title>" if title else ""
    return (
        f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(max(w, 0.0))}" height="{_f(max(h, 0.0))}" '
        f'class="{cls}">{tip}</rect>'
    )


def _svg(w: int, h: int, label: str, body: Sequence[str], ident: str) -> Markup:
    return Markup(
        f'<svg id="{ident}" class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def hour_chart(v: HourView, t: Mapping[str, str], lang: Lang = "en") -> Markup:
    """This hour: energy used so far as a bar, the forecast to the hour's end as its lighter
    continuation, the allocation as a line across."""
    w, h, x0, bar_h = 640, 64, 8, 24
    used, alloc, fc = v.used_kwh, v.allocation_kwh, v.forecast_kwh
    top = max(x for x in (used, alloc, fc, 1.0) if x is not None) * 1.1
    scale = (w - 2 * x0) / top
    body = [_rect(x0, 8, w - 2 * x0, bar_h, "c-track")]
    if fc is not None and used is not None and fc > used:
        body.append(
            _rect(
                x0 + used * scale,
                8,
                (fc - used) * scale,
                bar_h,
                "c-forecast",
                f"{t['forecast']}: {num(fc, 'kWh', lang=lang)}",
            )
        )
    if used is not None:
        body.append(
            _rect(
                x0, 8, used * scale, bar_h, "c-used", f"{t['used']}: {num(used, 'kWh', lang=lang)}"
            )
        )
    if alloc is not None:
        x = x0 + alloc * scale
        body.append(
            f'<line x1="{_f(x)}" y1="2" x2="{_f(x)}" y2="{8 + bar_h + 6}" class="c-limit"/>'
        )
        body.append(
            _text(
                x, h - 6, f"{t['allocation']} {num(alloc, 'kWh', lang=lang)}", "c-label", "middle"
            )
        )
    return _svg(w, h, t["chart_hour"], body, "chart-hour")


def day_chart(bars: Sequence[HourBar], t: Mapping[str, str], lang: Lang = "en") -> Markup:
    """The last 24 Astana hours: metered kWh per hour as bars (the hour under way lighter) and
    each hour's allocation as a step line. An hour's kWh is its mean power in kW."""
    w, h, left, right, top, bottom = 720, 220, 56, 8, 10, 28
    pw, ph = w - left - right, h - top - bottom
    peak = max(
        [b.kwh for b in bars if b.kwh is not None]
        + [b.allocation_kwh for b in bars if b.allocation_kwh is not None]
        + [1.0]
    )
    ymax = peak * 1.1
    slot = pw / max(len(bars), 1)

    def y(v: float) -> float:
        return top + ph - v / ymax * ph

    body: list[str] = []
    for i in range(5):  # gridlines and their figures
        v = ymax * i / 4
        body.append(
            f'<line x1="{left}" y1="{_f(y(v))}" x2="{w - right}" y2="{_f(y(v))}" class="c-grid"/>'
        )
        body.append(_text(left - 4, y(v) + 4, number(v, lang, 0), "c-label", "end"))
    body.append(_text(4, top + 8, i18n_unit("kwh", lang), "c-label"))
    step: list[str] = []
    for i, b in enumerate(bars):
        x = left + i * slot
        local = b.start.astimezone(ASTANA)
        if b.kwh is not None:
            cls = "c-used c-now" if b.current else "c-used"
            tip = (
                f"{local:%H:%M}: {num(b.kwh, 'kWh', lang=lang)} / {t['allocation']} "
                f"{num(b.allocation_kwh, 'kWh', lang=lang)}"
            )
            body.append(_rect(x + slot * 0.15, y(b.kwh), slot * 0.7, y(0) - y(b.kwh), cls, tip))
        if b.allocation_kwh is not None:
            ya = _f(y(b.allocation_kwh))
            move = "L" if i > 0 and bars[i - 1].allocation_kwh is not None else "M"
            step.append(f"{move}{_f(x)},{ya} L{_f(x + slot)},{ya}")
        if local.hour % 3 == 0:
            body.append(_text(x + slot / 2, h - 10, f"{local:%H}", "c-label", "middle"))
    if step:  # an hour with no allocation breaks the line
        body.append(f'<path d="{" ".join(step)}" class="c-limit" fill="none"/>')
    return _svg(w, h, t["chart_day"], body, "chart-day")


def power_chart(p: PowerExplained, t: Mapping[str, str], lang: Lang = "en") -> Markup:
    """The meter as one bar; under it Σ PDUs and Σ miners, each with the overhead on top and
    the remainder (what the meter sees that they do not explain) after it."""
    w, left, row_h, gap = 640, 120, 22, 10
    h = 3 * (row_h + gap) + 10
    accounted = [lv.accounted_kw for lv in p.levels if lv.accounted_kw is not None]
    top = max([p.meter_kw or 0.0, *accounted, 1.0]) * 1.05
    scale = (w - left - 8) / top
    body: list[str] = []
    y = 6.0
    body.append(_text(left - 6, y + 15, t["meter"], "c-label", "end"))
    if p.meter_kw is not None:
        body.append(
            _rect(left, y, p.meter_kw * scale, row_h, "c-meter", num(p.meter_kw, "kW", lang=lang))
        )
    for lv in p.levels:
        y += row_h + gap
        body.append(_text(left - 6, y + 15, t[f"sum_{lv.name}"], "c-label", "end"))
        if lv.kw is None or lv.overhead_kw is None:
            continue
        x = float(left)
        body.append(_rect(x, y, lv.kw * scale, row_h, "c-devices", num(lv.kw, "kW", lang=lang)))
        x += lv.kw * scale
        body.append(
            _rect(
                x,
                y,
                lv.overhead_kw * scale,
                row_h,
                "c-overhead",
                f"{t['overhead']}: {num(lv.overhead_kw, 'kW', lang=lang)}",
            )
        )
        x += lv.overhead_kw * scale
        if lv.remainder_kw is not None and lv.remainder_kw > 0:
            body.append(
                _rect(
                    x,
                    y,
                    lv.remainder_kw * scale,
                    row_h,
                    "c-remainder",
                    f"{t['remainder']}: {num(lv.remainder_kw, 'kW', lang=lang)}",
                )
            )
    return _svg(w, h, t["chart_power"], body, "chart-power")
