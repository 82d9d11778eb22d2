"""The decision load: a spike shorter than ``spike_s`` is let pass, a step is believed once it
has lasted that long, and one large in energy at once (kuat.quota.demand.short_demand)."""

from datetime import UTC, datetime, timedelta

from kuat.quota.demand import short_demand
from kuat.quota.energy import MeterSample

T = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)


def readings(kw: list[float], every_s: float = 1.0) -> list[MeterSample]:
    return [MeterSample(T + timedelta(seconds=i * every_s), p, None) for i, p in enumerate(kw)]


def decide(
    kw: list[float], every_s: float = 1.0, spike_kwh: float = 0.05, window_s: float = 10.0
) -> float | None:
    samples = readings(kw, every_s)
    now = samples[-1].taken_at
    return short_demand(samples, now, window_s, spike_kwh, spike_s=2.0).kw


def test_a_spike_of_two_readings_is_let_pass_a_step_acts_at_its_third() -> None:
    base, high = [200.0] * 10, 225.0
    assert decide([*base, high]) == 200.0
    assert decide([*base, high, high]) == 200.0
    assert decide([*base, high, high, 200.0]) == 200.0  # it was a spike
    assert decide([*base, high, high, high]) == high  # it lasted 2 s: a step


def test_a_spike_large_in_energy_acts_at_once() -> None:
    # 2 MW over a 200 kW site for one second: 0.5 kWh away from the median
    assert decide([*[200.0] * 10, 2000.0]) == 2000.0


def test_with_a_slow_meter_two_readings_make_a_step() -> None:
    """Readings 5 s apart (a 30 s window): one reading over could be a spike; the next one
    over is 5 s on."""
    base = [200.0] * 4
    slow = {"every_s": 5.0, "spike_kwh": 1.0, "window_s": 30.0}
    assert decide([*base, 225.0], **slow) == 200.0
    assert decide([*base, 225.0, 225.0], **slow) == 225.0


def test_noise_never_moves_the_decision_beyond_the_readings_of_the_last_seconds() -> None:
    noisy = [200.0, 201.0, 199.0, 200.5, 199.5, 200.2, 201.0, 201.2, 201.1]
    assert 200.0 <= (decide(noisy) or 0.0) <= 201.0
