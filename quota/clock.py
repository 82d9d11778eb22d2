"""Astana time: the hour-ending hours (1-24) in which KOREM allocations are sold.

Kazakhstan has one zone, UTC+5, since 2024-03-01, and no daylight saving, so an Astana hour is
a whole UTC hour shifted by five. We still go through the IANA zone rather than a fixed offset
so that instants before the 2024 change (UTC+6 in Almaty) come out right in history and tests.
The zone is read from the ``tzdata`` package, not the host's tz database: an edge box's
/usr/share/zoneinfo may predate the 2024 change and would silently put every hour one off.
"""

from __future__ import annotations

import importlib.resources
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

HOUR = timedelta(hours=1)


def _load_astana() -> ZoneInfo:
    data = importlib.resources.files("tzdata").joinpath("zoneinfo", "Asia", "Almaty")
    with data.open("rb") as f:
        return ZoneInfo.from_file(f, key="Asia/Almaty")


ASTANA: ZoneInfo = _load_astana()


def as_utc(instant: datetime) -> datetime:
    """An aware instant in UTC; a naive one is refused because its zone would be a guess."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant.isoformat()}: pass an aware (UTC) instant")
    return instant.astimezone(UTC)


def hour_of(now_utc: datetime) -> tuple[date, int]:
    """The Astana operating date and hour-ending (1..24) that contain ``now_utc``.

    Hour-ending 1 is 00:00-01:00 Astana; an instant exactly on the hour starts the next hour.
    """
    local = as_utc(now_utc).astimezone(ASTANA)
    return local.date(), local.hour + 1


def hour_bounds(day: date, hour_ending: int) -> tuple[datetime, datetime]:
    """UTC start (inclusive) and end (exclusive) of an Astana hour-ending hour."""
    if not 1 <= hour_ending <= 24:
        raise ValueError(f"hour_ending must be 1..24, got {hour_ending}")
    start_local = datetime.combine(day, time(hour_ending - 1), tzinfo=ASTANA)
    start = start_local.astimezone(UTC)
    return start, start + HOUR


def current_hour_bounds(now_utc: datetime) -> tuple[datetime, datetime]:
    return hour_bounds(*hour_of(now_utc))
