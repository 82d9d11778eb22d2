import json
import math
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kuat.collectors.readings import MeterReading, to_jsonable
from kuat.quota.clock import hour_bounds
from kuat.quota.demand import demand_now, interval_start, peak_demand_kw
from kuat.quota.evaluate import MeterSample, QuotaPolicy, QuotaState, evaluate, reads_since
from kuat.quota.reasons import Code
from kuat.quota.schedule import EnergySource, HourlyAllocation, ScheduleBook

DAY = date(2026, 11, 25)
HE = 10
START, END = hour_bounds(DAY, HE)  # 04:00-05:00 UTC


def alloc(mwh: float = 1.0, site: str = "s1") -> HourlyAllocation:
    return HourlyAllocation(site, DAY, (mwh,) * 24, version=2)


def steady(
    kw: float,
    minutes: float,
    *,
    step_s: int = 10,
    counter: bool = True,
    power: bool = True,
    from_s: int = 0,
    kwh0: float = 5000.0,
) -> list[MeterSample]:
    """A constant draw sampled every step_s from START + from_s for `minutes`."""
    out = []
    for t in range(from_s, int(minutes * 60) + 1, step_s):
        out.append(
            MeterSample(
                START + timedelta(seconds=t),
                kw if power else None,
                kwh0 + kw * t / 3600 if counter else None,
            )
        )
    return out


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


# (name, allocation MWh, draw kW, minutes into the hour, expected status, reason code)
TABLE = [
    ("ok", 1.0, 600.0, 30, QuotaState.OK, Code.QUOTA_OK),
    ("warn", 1.0, 970.0, 30, QuotaState.WARN, Code.QUOTA_WARN),
    ("forecast over", 1.0, 1200.0, 30, QuotaState.OVER, Code.QUOTA_FORECAST_OVER),
    ("already over", 1.0, 1300.0, 50, QuotaState.OVER, Code.QUOTA_EXCEEDED),
    ("zero allocation, no draw", 0.0, 0.0, 30, QuotaState.OK, Code.QUOTA_OK),
    ("zero allocation, draw", 0.0, 10.0, 30, QuotaState.OVER, Code.QUOTA_EXCEEDED),
]


@pytest.mark.parametrize(
    ("name", "mwh", "kw", "minutes", "status", "code"), TABLE, ids=[t[0] for t in TABLE]
)
def test_status_table(
    name: str, mwh: float, kw: float, minutes: float, status: QuotaState, code: Code
) -> None:
    q = evaluate(alloc(mwh), steady(kw, minutes), at(minutes), QuotaPolicy())
    assert (q.status, q.reason.code) == (status, code)
    assert q.used_kwh == pytest.approx(kw * minutes / 60)
    assert q.forecast_kwh == pytest.approx(kw)
    assert q.margin_kwh == pytest.approx(mwh * 1000 - kw)
    assert q.hour_ending == HE and q.hour_start == START and q.hour_end == END
    json.dumps(to_jsonable(q))


def test_figures() -> None:
    q = evaluate(alloc(1.0), steady(850.0, 30), at(30), QuotaPolicy(), site="s1")
    assert q.allocation_kwh == 1000.0 and q.allocation_version == 2
    assert q.remaining_kwh == pytest.approx(575.0)
    assert q.allowed_kw == pytest.approx(1150.0)  # 575 kWh over the last half hour
    assert q.p_kw == 850.0 and q.used_until == at(30)
    assert q.under_use is False and q.notes == ()
    # the running interval has just begun: no average yet; the previous one is complete
    assert q.demand_kw is None and q.last_demand_kw == pytest.approx(850.0)
    assert q.demand_interval_start == at(30)
    assert q.operating_date == "2026-11-25"


def test_tolerance_moves_over_line() -> None:
    samples = steady(1010.0, 30)
    assert evaluate(alloc(), samples, at(30)).status is QuotaState.OVER
    q = evaluate(alloc(), samples, at(30), QuotaPolicy(tolerance_kwh=20))
    assert q.status is QuotaState.WARN


def test_under_use_flag() -> None:
    q = evaluate(alloc(1.0), steady(300.0, 30), at(30))
    assert q.status is QuotaState.OK and q.under_use
    assert [n.code for n in q.notes] == [Code.QUOTA_UNDER_USE]
    assert q.notes[0].params["percent"] == 30


def test_no_allocation_and_no_data() -> None:
    q = evaluate(None, steady(500, 10), at(10))
    assert q.status is QuotaState.NO_ALLOCATION and q.allocation_kwh is None
    assert q.used_kwh == pytest.approx(500 / 6)
    other_day = HourlyAllocation("s1", DAY + timedelta(days=1), (1.0,) * 24)
    assert evaluate(other_day, [], at(10)).status is QuotaState.NO_ALLOCATION
    q = evaluate(alloc(), [], at(10))
    assert q.status is QuotaState.NO_DATA and q.used_kwh is None and q.forecast_kwh is None
    # samples only long before the hour: nothing to say about this hour
    old = [MeterSample(START - timedelta(hours=1), 100, 1.0)]
    assert evaluate(alloc(), old, at(10)).status is QuotaState.NO_DATA


def test_book_lookup_by_site_and_source() -> None:
    book = ScheduleBook()
    book.add(alloc(1.0, "s1"))
    q = evaluate(book, steady(100, 5), at(5))
    assert q.site == "s1" and q.allocation_kwh == 1000.0
    book.add(alloc(2.0, "s2"))
    assert evaluate(book, steady(100, 5), at(5)).status is QuotaState.NO_ALLOCATION
    assert evaluate(book, steady(100, 5), at(5), site="s2").allocation_kwh == 2000.0
    q = evaluate(book, steady(100, 5), at(5), site="s2", source=EnergySource.BILATERAL)
    assert q.status is QuotaState.NO_ALLOCATION


def test_counter_straddling_hour_start_is_interpolated() -> None:
    samples = [
        MeterSample(START - timedelta(seconds=30), 600, 100.0),
        MeterSample(START + timedelta(seconds=30), 600, 110.0),
        MeterSample(START + timedelta(seconds=90), 600, 120.0),
    ]
    q = evaluate(alloc(), samples, START + timedelta(seconds=90))
    assert q.used_kwh == pytest.approx(15.0)
    assert q.notes == () or all(n.code == Code.QUOTA_UNDER_USE for n in q.notes)


def test_power_fallback_when_counter_missing() -> None:
    q = evaluate(alloc(), steady(600, 30, counter=False), at(30))
    assert q.used_kwh == pytest.approx(300.0)
    assert Code.METER_COUNTER_MISSING in [n.code for n in q.notes]


def test_counter_only_meter_power_from_slope() -> None:
    q = evaluate(alloc(), steady(600, 30, power=False), at(30))
    assert q.p_kw == pytest.approx(600.0) and q.forecast_kwh == pytest.approx(600.0)


def test_counter_reset_is_not_negative() -> None:
    samples = [*steady(600, 10), MeterSample(at(10) + timedelta(seconds=10), 600, 0.5)]
    q = evaluate(alloc(), samples, at(10) + timedelta(seconds=10))
    assert q.used_kwh == pytest.approx(600 * (600 + 10) / 3600)
    assert Code.METER_COUNTER_WENT_BACK in [n.code for n in q.notes]


def test_started_mid_hour_estimates_head() -> None:
    q = evaluate(alloc(), steady(600, 30, from_s=20 * 60), at(30))
    assert q.used_kwh == pytest.approx(300.0)
    codes = [n.code for n in q.notes]
    assert Code.METER_HOUR_START_ESTIMATED in codes and Code.METER_GAP in codes


def test_stale_meter_keeps_last_power() -> None:
    samples = steady(1200, 20)
    q = evaluate(alloc(), samples, at(30))
    assert Code.METER_STALE in [n.code for n in q.notes]
    # energy after the last sample is forecast at the last known power, not at zero
    assert q.forecast_kwh == pytest.approx(1200.0) and q.status is QuotaState.OVER


def test_export_is_not_import_and_junk_ignored() -> None:
    samples = [
        MeterSample(at(0), -50.0, None),
        MeterSample(at(1), math.nan, None),
        MeterSample(datetime(2026, 11, 25, 4, 1, 30), 100.0, 1.0),  # naive: skipped
        MeterSample(at(2), -50.0, None),
        MeterSample(at(90), 9999.0, 9999.0),  # future: ignored
    ]
    q = evaluate(alloc(), samples, at(2))
    assert q.used_kwh == 0.0 and q.p_kw == 0.0


def test_from_reading() -> None:
    r = MeterReading("10.0.0.5", 1, "sunspec", at(1), p_kw=12.0, import_kwh=7.0)
    assert MeterSample.from_reading(r) == MeterSample(at(1), 12.0, 7.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"warn_fraction": 0},
        {"warn_fraction": 1.5},
        {"tolerance_kwh": -1},
        {"demand_interval_min": 7},
        {"underuse_fraction": 2},
    ],
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        QuotaPolicy(**kwargs)  # type: ignore[arg-type]


def test_naive_now_refused() -> None:
    with pytest.raises(ValueError):
        evaluate(alloc(), [], datetime(2026, 11, 25, 4))


# --- demand -----------------------------------------------------------------------------


def test_interval_alignment() -> None:
    assert interval_start(at(37), 15) == at(30)
    assert interval_start(at(30), 15) == at(30)
    with pytest.raises(ValueError):
        interval_start(at(1), 7)


def test_demand_and_peak() -> None:
    # 400 kW for 20 min then 1000 kW for the next 25 min, counter and power agree
    samples: list[MeterSample] = []
    kwh = 0.0
    for t in range(0, 45 * 60 + 1, 5):
        kw = 400.0 if t < 20 * 60 else 1000.0
        samples.append(MeterSample(START + timedelta(seconds=t), kw, kwh))
        kwh += kw * 5 / 3600
    running, last = demand_now(samples, at(40), 15)
    assert last.complete and last.avg_kw == pytest.approx((5 * 400 + 10 * 1000) / 15, rel=1e-3)
    assert not running.complete and running.avg_kw == pytest.approx(1000.0)
    assert peak_demand_kw(samples, START, at(45)) == pytest.approx(1000.0)
    assert peak_demand_kw(samples, at(1), at(44)) == pytest.approx(800.0, rel=1e-3)
    assert peak_demand_kw([], START, END) is None


# --- properties -------------------------------------------------------------------------


@st.composite
def monotone_series(draw: st.DrawFn) -> tuple[list[MeterSample], datetime]:
    base = draw(
        st.datetimes(
            min_value=datetime(2024, 3, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
        )
    )
    n = draw(st.integers(0, 40))
    t = base
    counter = draw(st.floats(0, 1e9))
    out = []
    for _ in range(n):
        t += timedelta(seconds=draw(st.floats(0, 900)))
        counter += draw(st.floats(0, 1e4))
        p = draw(st.none() | st.floats(-1e4, 1e5, allow_nan=False) | st.just(math.inf))
        c = draw(st.none() | st.just(counter))
        out.append(MeterSample(t, p, c))
    now = t + timedelta(seconds=draw(st.floats(0, 7200)))
    return out, now


@settings(max_examples=300, deadline=None)
@given(monotone_series(), st.floats(0, 1000), st.floats(0.01, 1), st.floats(0, 100))
def test_evaluate_never_raises_and_never_negative(
    series: tuple[list[MeterSample], datetime], mwh: float, warn: float, tol: float
) -> None:
    samples, now = series
    day = (now + timedelta(hours=5)).date()
    allocation = HourlyAllocation("s", day, (mwh,) * 24)
    q = evaluate(allocation, samples, now, QuotaPolicy(warn_fraction=warn, tolerance_kwh=tol))
    assert q.hour_start <= now < q.hour_end
    if q.used_kwh is not None:
        assert q.used_kwh >= 0 and math.isfinite(q.used_kwh)
        assert q.forecast_kwh is not None and q.forecast_kwh >= q.used_kwh
        assert q.status in (QuotaState.OK, QuotaState.WARN, QuotaState.OVER)
        assert q.allowed_kw is not None and q.allowed_kw >= 0
    else:
        assert q.status is QuotaState.NO_DATA
    json.dumps(to_jsonable(q))


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(1, 400),  # seconds since the previous sample
            st.one_of(st.none(), st.floats(-5, 500)),  # power
            st.one_of(st.none(), st.floats(-2, 5)),  # counter step (negative: a reset)
        ),
        min_size=1,
        max_size=80,
    ),
    first_s=st.integers(-7200, 1800),  # the first sample, from the hour's start
    now_s=st.integers(-900, 3600),
    interval=st.sampled_from([5, 15, 30]),
)
def test_the_samples_before_reads_since_change_nothing(
    steps: list[tuple[int, float | None, float | None]], first_s: int, now_s: int, interval: int
) -> None:
    """A history of any length gives the status its samples from ``reads_since`` on (and the
    last before it) give: the agent evaluates only those at each reading."""
    samples, t, kwh = [], START + timedelta(seconds=first_s), 5000.0
    for gap, p_kw, dk in steps:
        t += timedelta(seconds=gap)
        kwh += dk or 0.0
        samples.append(MeterSample(t, p_kw, None if dk is None else kwh))
    now = START + timedelta(seconds=now_s)
    policy = QuotaPolicy(demand_interval_min=interval, actuation_s=21.0, tolerance_kwh=0.5)
    since = reads_since(now, policy)
    before = [s for s in samples if s.taken_at < since][-1:]
    kept = before + [s for s in samples if s.taken_at >= since]
    book = alloc(0.3)
    full = evaluate(book, samples, now, policy, landing=((5.0, -3.0),))
    assert evaluate(book, kept, now, policy, landing=((5.0, -3.0),)) == full
