import itertools
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuat.quota.clock import ASTANA, as_utc, hour_bounds, hour_of

UTC5 = timezone(timedelta(hours=5))


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        # 00:00 Astana is 19:00 UTC the day before, and starts hour-ending 1
        (datetime(2026, 11, 24, 19, 0, tzinfo=UTC), (date(2026, 11, 25), 1)),
        (datetime(2026, 11, 24, 18, 59, 59, 999999, tzinfo=UTC), (date(2026, 11, 24), 24)),
        (datetime(2026, 11, 25, 4, 30, tzinfo=UTC), (date(2026, 11, 25), 10)),
        (datetime(2026, 11, 25, 9, 30, tzinfo=UTC5), (date(2026, 11, 25), 10)),
        # before 2024-03-01 Almaty was UTC+6: 18:30 UTC was already the next day
        (datetime(2024, 2, 1, 18, 30, tzinfo=UTC), (date(2024, 2, 2), 1)),
        (datetime(2024, 3, 1, 18, 30, tzinfo=UTC), (date(2024, 3, 1), 24)),
    ],
)
def test_hour_of(instant: datetime, expected: tuple[date, int]) -> None:
    assert hour_of(instant) == expected


def test_hour_bounds_table() -> None:
    assert hour_bounds(date(2026, 11, 25), 1) == (
        datetime(2026, 11, 24, 19, tzinfo=UTC),
        datetime(2026, 11, 24, 20, tzinfo=UTC),
    )
    assert hour_bounds(date(2026, 11, 25), 24)[1] == datetime(2026, 11, 25, 19, tzinfo=UTC)


@pytest.mark.parametrize("bad", [0, 25, -1])
def test_hour_bounds_refuses_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.24"):
        hour_bounds(date(2026, 1, 1), bad)


def test_naive_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        hour_of(datetime(2026, 1, 1, 12))
    with pytest.raises(ValueError):
        as_utc(datetime(2026, 1, 1))


def test_zone_comes_from_tzdata_and_is_utc_plus_5() -> None:
    assert ASTANA.key == "Asia/Almaty"
    assert datetime(2027, 6, 1, tzinfo=ASTANA).utcoffset() == timedelta(hours=5)


instants = st.datetimes(
    min_value=datetime(2024, 3, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)


@given(instants)
def test_bounds_contain_instant_and_are_whole_utc5_hours(instant: datetime) -> None:
    day, he = hour_of(instant)
    start, end = hour_bounds(day, he)
    assert start <= instant < end
    assert (end - start).total_seconds() == 3600
    local = start.astimezone(UTC5)
    assert (local.minute, local.second, local.microsecond) == (0, 0, 0)
    assert local.hour == he - 1 and local.date() == day
    assert start.tzinfo is not None and start.utcoffset() == timedelta(0)


@given(st.dates(min_value=date(2024, 3, 2), max_value=date(2030, 12, 31)))
def test_a_day_is_24_contiguous_hours(day: date) -> None:
    bounds = [hour_bounds(day, he) for he in range(1, 25)]
    for (_, end), (start, _) in itertools.pairwise(bounds):
        assert end == start
    assert bounds[-1][1] - bounds[0][0] == timedelta(hours=24)
    assert hour_bounds(day + timedelta(days=1), 1)[0] == bounds[-1][1]
