"""How the dashboard writes times and figures: one place, so the page, its tables and its charts
agree (and the move to locale-aware number formatting touches one module)."""

from __future__ import annotations

from datetime import UTC, datetime

from kuat.agent.i18n import Lang, number
from kuat.agent.i18n import unit as i18n_unit
from kuat.quota.clock import ASTANA

NONE = "—"  # a figure nobody knows: never shown as 0


def iso_utc(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z") if at else None


def site_time(at: datetime) -> str:
    """Wall-clock time at the site (Astana, UTC+5), with its offset so no one has to guess."""
    local = at.astimezone(ASTANA)
    return f"{local:%Y-%m-%d %H:%M:%S} (UTC{local.isoformat()[-6:]})"


def site_hm(at: datetime | None) -> str:
    """Short site time for tables: "14:03" today's, with the date otherwise left to context."""
    return NONE if at is None else f"{at.astimezone(ASTANA):%Y-%m-%d %H:%M}"


# the units the dashboard writes, by their catalog key (kuat.agent.i18n unit.*)
_UNITS = {"W": "w", "kW": "kw", "kWh": "kwh", "TH/s": "ths", "J/TH": "j_th", "°C": "celsius"}


def num(
    v: float | None, unit: str, scale: float = 1.0, digits: int = 1, *, lang: Lang = "en"
) -> str:
    """A figure with its unit as a reader of ``lang`` writes them: "2,072.5 kW" in English,
    "2 072,5 кВт" in Russian ("2,072" would read as 2.072 there)."""
    if v is None:
        return NONE
    shown = i18n_unit(_UNITS[unit], lang) if unit in _UNITS else unit
    return f"{number(v / scale, lang, digits)} {shown}"
