"""How the dashboard writes times and figures: one place, so the page, its tables and its charts
agree (and the move to locale-aware number formatting touches one module)."""

from __future__ import annotations

from datetime import UTC, datetime

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


def num(v: float | None, unit: str, scale: float = 1.0, digits: int = 1) -> str:
    return NONE if v is None else f"{v / scale:,.{digits}f} {unit}"
