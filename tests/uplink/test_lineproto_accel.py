"""The C accelerator (``uplink/_lpaccel.c``) against the pure-Python encoder, byte for byte.

``_encode_asic_pure`` is the reference. The accelerator may decline an input (TypeError, after
which the pure path writes the line), but whatever text it does return must be exactly the
reference's. Tests that need the compiled module skip where it was not built, except under
``CI=true``, where a missing accelerator is a failure: a silently broken build would otherwise
only show up as a slower benchmark.
"""

from __future__ import annotations

import math
import os
import random
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kuat.collectors.readings import AsicReading, AsicTemps, FirmwareFault, PoolInfo
from kuat.uplink import lineproto
from kuat.uplink.lineproto import (
    _asic_prefix,
    _asic_tail,
    _encode_asic_accel,
    _encode_asic_pure,
    to_ns,
)

SITE = "kz-ekb-01"
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
IN_CI = os.environ.get("CI", "").lower() == "true"

accel = lineproto._lpaccel
needs_accel = pytest.mark.skipif(
    accel is None and not IN_CI, reason="kuat.uplink._lpaccel not built (no C compiler?)"
)


def _c_fields(r: AsicReading) -> str:
    """What the accelerator writes for ``r``, called the way ``_encode_asic_accel`` calls it."""
    assert accel is not None, "kuat.uplink._lpaccel is not built"
    t = r.temps_c
    return accel.asic_fields(
        r.hashrate_ths,
        r.hashrate_nominal_ths,
        r.power_w,
        r.power_limit_w,
        t.board,
        t.chip,
        t.inlet,
        r.fans_rpm,
        r.uptime_s,
        lineproto.ASIC_STATE_CODES.get(r.state),
        lineproto._pool_ok(r.pools),
        r.errors,
    )


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except Exception as exc:
        return "raised", type(exc)


def _assert_same(r: AsicReading) -> None:
    pure = _outcome(_encode_asic_pure, r, SITE)
    assert _outcome(_encode_asic_accel, r, SITE) == pure
    try:
        fields = _c_fields(r)
    except TypeError:
        return  # declined: the pure path wrote the line (checked just above)
    # the fields after error_count (coolant, faults) are Python's in both paths
    tail = _outcome(_asic_tail, r)
    if tail[0] == "raised":
        assert pure[0] == "raised"
        return
    fields = f"{fields},{tail[1]}" if tail[1] else fields
    # Accepted: then the reference must have produced a line, with exactly these fields.
    assert pure[0] == "ok", f"C wrote {fields!r} where the pure path raised {pure[1]}"
    prefix = _asic_prefix(SITE, r.device_id, r.vendor, r.model, r.firmware_family)
    assert [f"{prefix} {fields} {to_ns(r.taken_at)}"] == pure[1]


# --- strategies ---------------------------------------------------------------------------

# Short decimals are what devices send (and what C's fast repr path handles); the rest probe
# the edges: NaN, ±inf, -0.0, subnormals, 1e300, ints beyond a double, bools.
short_decimals = st.builds(
    lambda n, k: n / 10**k, st.integers(-(10**15), 10**15), st.integers(0, 9)
)
floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
ints = st.integers(-(2**64), 2**64) | st.integers(-(2**1100), 2**1100) | st.booleans()
numbers = short_decimals | floats | ints
temps = st.lists(numbers, max_size=4).map(tuple)
fans = st.lists(st.integers(-(2**65), 2**65) | st.booleans(), max_size=5).map(tuple) | st.lists(
    numbers, max_size=3
).map(tuple)
pools = st.lists(
    st.builds(
        PoolInfo,
        url=st.just("stratum+tcp://pool:3333"),
        status=st.sampled_from([None, "", "Alive", " alive\n", "Dead", "ALIVE"]),
        active=st.booleans(),
    ),
    max_size=3,
).map(tuple)

readings = st.builds(
    AsicReading,
    ip=st.just("10.0.0.5"),
    port=st.just(4028),
    taken_at=st.just(T0),
    vendor=st.sampled_from([None, "Bitmain"]),
    firmware_family=st.sampled_from([None, "braiins"]),
    model=st.sampled_from([None, "Antminer S19 XP"]),
    serial=st.sampled_from([None, "SN1"]),
    hashrate_ths=st.none() | numbers,
    hashrate_nominal_ths=st.none() | numbers,
    power_w=st.none() | numbers,
    power_limit_w=st.none() | numbers,
    temps_c=st.builds(AsicTemps, board=temps, chip=temps, inlet=temps),
    fans_rpm=fans,
    pools=pools,
    uptime_s=st.none() | ints | floats | short_decimals,
    state=st.sampled_from(["mining", "sleeping", "error", "unknown"]),
    errors=st.lists(st.just("fan 3 below 1000 rpm"), max_size=3).map(tuple),
    coolant_in_c=st.none() | numbers,
    coolant_out_c=st.none() | numbers,
    faults=st.lists(st.just(FirmwareFault("110", "intake fan speed")), max_size=2).map(tuple),
)


def typical(**kw: Any) -> AsicReading:
    base: dict[str, Any] = dict(
        ip="10.0.0.5",
        port=4028,
        taken_at=T0,
        vendor="Bitmain",
        firmware_family="braiins",
        model="Antminer S19 XP",
        serial="SN1",
        hashrate_ths=142.548,
        hashrate_nominal_ths=140.0,
        power_w=3001.8,
        power_limit_w=3110,
        temps_c=AsicTemps(board=(60.4, 65.5, 58.0), chip=(85.6, 80.0), inlet=(33.5,)),
        fans_rpm=(5400, 5280, 5600, 5500),
        pools=(PoolInfo("stratum+tcp://pool:3333", "u.w", "Alive", True),),
        uptime_s=3600,
        state="mining",
        errors=("fan 3 below 1000 rpm",),
    )
    base.update(kw)
    return AsicReading(**base)


# --- tests --------------------------------------------------------------------------------


def test_accelerator_built_in_ci() -> None:
    if not IN_CI and accel is None:
        pytest.skip("kuat.uplink._lpaccel not built (no C compiler?); required only when CI=true")
    from kuat.uplink import _lpaccel  # noqa: F401  (the import is the test)

    assert lineproto._lpaccel is not None
    pure_forced = os.environ.get("KUAT_PURE_LINEPROTO", "") not in ("", "0")
    assert lineproto.ACCELERATED is not pure_forced


@needs_accel
def test_typical_reading_is_accelerated() -> None:
    # The property test below would pass even if C declined everything; this one would not.
    r = typical()
    assert _c_fields(r) == (
        "hashrate_ths=142.548,hashrate_nominal_ths=140.0,power_w=3001.8,power_limit_w=3110.0,"
        "temp_board_max_c=65.5,temp_chip_max_c=85.6,temp_inlet_max_c=33.5,fan_min_rpm=5280i,"
        "uptime_s=3600i,state_code=1i,pool_ok=1i,error_count=1i"
    )
    _assert_same(r)


@needs_accel
@pytest.mark.parametrize(
    "kw",
    [
        {"hashrate_ths": math.nan, "power_w": math.inf, "power_limit_w": -math.inf},
        {"hashrate_ths": -0.0, "hashrate_nominal_ths": 0.0, "power_w": 5e-324},
        {"hashrate_ths": 1e16, "hashrate_nominal_ths": 1e-5, "power_w": 0.0001},
        {"hashrate_ths": True, "power_w": False, "uptime_s": True, "fans_rpm": (True, 2)},
        {"hashrate_ths": 2**1024, "uptime_s": 2**64},  # pure raises / writes a bignum
        {"hashrate_ths": 2**53 + 1, "power_w": -(2**63)},
        {"uptime_s": -0.5, "fans_rpm": (2**63 - 1, -(2**63))},
        {"uptime_s": math.nan},
        {"uptime_s": 1e300},
        {"fans_rpm": (5000.7, 4000)},
        {"fans_rpm": (math.nan,)},
        {"temps_c": AsicTemps(board=(math.nan, 70.0), chip=(70.0, math.nan), inlet=(-0.0, 0))},
        {"temps_c": AsicTemps(board=(0, -0.0), chip=(2**53, 2**53 + 1.0), inlet=(1, 1.0))},
        {"temps_c": AsicTemps(board=[60.0], chip=None, inlet=())},  # type: ignore[arg-type]
        {"fans_rpm": (), "pools": (), "errors": (), "state": "unknown"},
        {"pools": (PoolInfo("u", status=None, active=True),)},
        {"pools": (PoolInfo("u", status="Dead", active=False),)},
        {"hashrate_ths": "110"},  # a device string slipped through: pure raises TypeError
        {"errors": None},
    ],
)
def test_edge_cases(kw: dict[str, Any]) -> None:
    _assert_same(typical(**kw))


# 500 generated readings in the suite (~6 s: 3,000 took 35 s of CI's 15 minutes); the edge cases
# above are pinned, and hypothesis' example database carries a failure over to the next run.
@needs_accel
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings)
@example(typical())
def test_accelerated_equals_pure(r: AsicReading) -> None:
    _assert_same(r)


def struct_float(bits: int) -> float:
    return float(struct.unpack("<d", bits.to_bytes(8, "little"))[0])


def _c_float(x: float) -> str:
    assert accel is not None
    return accel.asic_fields(x, *(None,) * 3, (), (), (), (), None, None, None, ())


@needs_accel
def test_float_text_is_repr() -> None:
    # C writes short decimals with its own fast path (dtoa for the rest): sweep it, and the
    # neighbouring doubles where shortest-repr ties and boundaries live, against repr.
    rng = random.Random(20260301)
    values: list[float] = [0.0, -0.0, 1e-4, 9.999999999999999e-05, 1e15, 999999999999999.9]
    for _ in range(40_000):
        k = rng.randrange(10)
        scale = rng.choice((10, 10**4, 10**9, 10**15, 10**17))
        x = rng.randrange(-scale, scale) / 10**k
        values += [x, math.nextafter(x, math.inf), math.nextafter(x, -math.inf)]
    values += [rng.uniform(-1e6, 1e6) for _ in range(20_000)]
    values += [struct_float(rng.getrandbits(64)) for _ in range(20_000)]
    for x in values:
        want = f"hashrate_ths={x!r},error_count=0i" if math.isfinite(x) else "error_count=0i"
        assert _c_float(x) == want, x


@needs_accel
@given(short_decimals | floats)
def test_float_text_is_repr_property(x: float) -> None:
    want = f"hashrate_ths={x!r},error_count=0i" if math.isfinite(x) else "error_count=0i"
    assert _c_float(x) == want


@needs_accel
def test_declines_with_type_error() -> None:
    assert accel is not None
    with pytest.raises(TypeError):
        accel.asic_fields(1.0)  # wrong arity
    with pytest.raises(TypeError):
        _c_fields(typical(hashrate_ths="1.0"))
    with pytest.raises(TypeError):
        _c_fields(typical(uptime_s=2**64))


def test_env_var_forces_pure_path() -> None:
    code = "from uplink import lineproto as l; print(l.ACCELERATED, l.encode_asic.__name__)"
    env = {**os.environ, "KUAT_PURE_LINEPROTO": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "_encode_asic_pure"]


def test_encode_many_readings_same_either_way() -> None:
    # A cycle's worth through the public entry point, whichever path is active.
    rng = random.Random(7)
    rs = [
        typical(
            taken_at=T0 + timedelta(milliseconds=i),
            hashrate_ths=round(rng.uniform(90, 150), 3),
            power_w=round(rng.uniform(3000, 3400), 1),
            temps_c=AsicTemps(board=tuple(round(rng.uniform(55, 72), 1) for _ in range(3))),
        )
        for i in range(500)
    ]
    assert lineproto.encode(rs, SITE) == [_encode_asic_pure(r, SITE)[0] for r in rs]
