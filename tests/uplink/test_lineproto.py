from __future__ import annotations

import math
import urllib.request
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kuat.collectors.readings import (
    AsicReading,
    AsicTemps,
    DeviceError,
    DeviceKind,
    FirmwareFault,
    MeterReading,
    PduBreaker,
    PduInlet,
    PduOutlet,
    PduPhase,
    PduReading,
    PoolInfo,
)
from kuat.uplink.lineproto import encode, encode_point, escape_key, to_ns
from tests.servers import VictoriaMetrics
from tests.uplink.strict_influx import check_line

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
T0_NS = 1772366400123456000


def asic(**kw: object) -> AsicReading:
    base: dict = dict(
        ip="10.0.0.5",
        port=4028,
        taken_at=T0,
        vendor="Bitmain",
        firmware_family="stock",
        model="Antminer S19 Pro",
        serial="SN1",
        mac="aa:bb:cc:dd:ee:01",
        firmware="2024.1",
        hashrate_ths=110.5,
        hashrate_nominal_ths=110,
        power_w=3250,
        power_limit_w=None,
        temps_c=AsicTemps(board=(60.0, 65.5), chip=(75.0, 80.0), inlet=()),
        fans_rpm=(5400, 5280, 5600, 5500),
        pools=(PoolInfo("stratum+tcp://pool:3333", "u.w", "Alive", True),),
        uptime_s=3600,
        state="mining",
    )
    base.update(kw)
    return AsicReading(**base)


def test_to_ns_exact() -> None:
    assert to_ns(T0) == T0_NS
    assert to_ns(T0.replace(tzinfo=None)) == T0_NS
    plus5 = T0.astimezone(timezone(timedelta(hours=5)))  # Almaty
    assert to_ns(plus5) == T0_NS


def test_asic_line_exact() -> None:
    (line,) = encode([asic()], "site-1")
    assert line == (
        "asic,device=SN1,firmware_family=stock,model=Antminer\\ S19\\ Pro,site=site-1,"
        "vendor=Bitmain hashrate_ths=110.5,hashrate_nominal_ths=110.0,power_w=3250.0,"
        "temp_board_max_c=65.5,temp_chip_max_c=80.0,fan_min_rpm=5280i,uptime_s=3600i,"
        f"state_code=1i,pool_ok=1i,error_count=0i {T0_NS}"
    )
    assert "10.0.0.5" not in line  # ip is not telemetry (cardinality); it is in the register
    assert check_line(line) is None


def test_none_fields_omitted_and_types_stable() -> None:
    (line,) = encode(
        [
            asic(
                hashrate_ths=None,
                power_w=None,
                temps_c=AsicTemps(),
                fans_rpm=(),
                pools=(),
                uptime_s=None,
                state="sleeping",
                serial=None,
            )
        ],
        "s",
    )
    assert "hashrate_ths=" not in line and "power_w" not in line and "temp_" not in line
    assert "pool_ok" not in line and "fan_min_rpm" not in line
    assert "device=aa:bb:cc:dd:ee:01" in line  # MAC identity when no serial
    assert "state_code=2i" in line


def test_pool_not_alive() -> None:
    (line,) = encode([asic(pools=(PoolInfo("p", None, "Dead", True),))], "s")
    assert "pool_ok=0i" in line
    (line,) = encode([asic(pools=(PoolInfo("p", None, "Alive", False),))], "s")
    assert "pool_ok=0i" in line


def test_non_finite_dropped() -> None:
    (line,) = encode([asic(hashrate_ths=math.nan, power_w=math.inf)], "s")
    assert "hashrate_ths=" not in line and "power_w" not in line


def test_pdu_lines() -> None:
    r = PduReading(
        host="10.1.0.2",
        vendor="APC",
        model="AP8959",
        serial="ZA1",
        taken_at=T0,
        inlets=(PduInlet("I1", "L1", 230.1, 16.0, 3600, 1234.5, 0.98),),
        phases=(PduPhase("L1", 230.1, 16.0, 3600),),
        outlets=(
            PduOutlet(1, "miner-1", 13.5, 3100, 20.0, "on"),
            PduOutlet(2, None, None, None, None, None),
        ),
        total_watts=3600,
    )
    lines = encode([r], "s")
    assert lines == [
        f"pdu,device=ZA1,model=AP8959,site=s,vendor=APC total_w=3600.0 {T0_NS}",
        "pdu_inlet,device=ZA1,inlet=I1,model=AP8959,phase=L1,site=s,vendor=APC "
        f"volts=230.1,amps=16.0,watts=3600.0,kwh=1234.5,pf=0.98 {T0_NS}",
        "pdu_phase,device=ZA1,model=AP8959,phase=L1,site=s,vendor=APC "
        f"volts=230.1,amps=16.0,watts=3600.0 {T0_NS}",
        "pdu_outlet,device=ZA1,model=AP8959,outlet=1,site=s,vendor=APC "
        f"amps=13.5,watts=3100.0,kwh=20.0,on=1i {T0_NS}",
    ]  # outlet 2 reported nothing: no line


def test_meter_line_and_empty_meter() -> None:
    r = MeterReading(
        host="10.2.0.9",
        unit=1,
        profile="schneider-pm5560",
        taken_at=T0,
        p_kw=1200.5,
        p_kw_phases=(400.0, 400.5, None),
        v_ll=(10400, 10410, 10390),
        f_hz=50.01,
        import_kwh=9_000_000.25,
    )
    (line,) = encode([r], "s")
    assert line == (
        "meter,device=10.2.0.9/1,profile=schneider-pm5560,site=s p_kw=1200.5,p_kw_l1=400.0,"
        "p_kw_l2=400.5,v_ll_l12=10400.0,v_ll_l23=10410.0,v_ll_l31=10390.0,f_hz=50.01,"
        f"import_kwh=9000000.25 {T0_NS}"
    )
    assert encode([MeterReading(host="h", unit=1, profile="p", taken_at=T0)], "s") == []


def test_device_error_line() -> None:
    e = DeviceError(DeviceKind.ASIC, "10.0.0.9", 4028, T0, "timed out after 2.0 s")
    assert encode([e], "s") == [f"agent,device=10.0.0.9:4028,kind=asic,site=s device_up=0i {T0_NS}"]


def test_encode_point() -> None:
    line = encode_point(
        "quota",
        {"site": "s", "contract": None, "policy": ""},
        {"limit_kw": 5000.0, "over": False, "plan": "curtail 3", "n": 3, "skip": None},
        T0,
    )
    # a tag with no value is still written: InfluxDB 3 refuses a tag a table did not start with
    assert line == (
        "quota,contract=unknown,policy=unknown,site=s "
        f'limit_kw=5000.0,over=false,plan="curtail 3",n=3i {T0_NS}'
    )
    assert encode_point("quota", {"site": "s"}, {"x": None}, T0) is None
    with pytest.raises(TypeError):
        encode_point("quota", {}, {"x": [1]}, T0)  # type: ignore[dict-item]


def test_escaping() -> None:
    assert escape_key("a b,c=d\\e") == "a\\ b\\,c\\=d\\\\e"
    assert escape_key("plain") == "plain"
    line = encode_point("we ird,m", {"t k": 'v,"="'}, {"f=1": 'say "hi"\\\nnow'}, T0)
    assert line == ('we\\ ird\\,m,t\\ k=v\\,"\\=" f\\=1="say \\"hi\\"\\\\ now" ' + str(T0_NS))
    assert check_line(line) is None


_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
    | st.sampled_from(list(' ,="\\\n\t')),
    min_size=1,
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(tag=_text, key=_text, sval=_text)
def test_escaping_property(tag: str, key: str, sval: str) -> None:
    line = encode_point("m", {"t": tag}, {key: 1.5, "s": sval}, T0)
    assert line is not None and "\n" not in line
    assert check_line(line) is None


# --- round trip through a real server -----------------------------------------------------


def _write(vm: VictoriaMetrics, lines: list[str]) -> None:
    req = urllib.request.Request(
        f"{vm.url}/api/v2/write?org=o&bucket=b", data="\n".join(lines).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


@pytest.mark.servers
def test_round_trip_victoria_metrics(victoria_metrics: VictoriaMetrics) -> None:
    weird_device = "SN 1,x=y\\z"
    lines = encode([asic(serial=weird_device)], "Экибастуз-1")
    _write(victoria_metrics, lines)
    series = {
        s["metric"]["__name__"]: s
        for s in victoria_metrics.export('{__name__=~"asic_.*", site="Экибастуз-1"}')
    }
    assert set(series) == {
        "asic_hashrate_ths",
        "asic_hashrate_nominal_ths",
        "asic_power_w",
        "asic_temp_board_max_c",
        "asic_temp_chip_max_c",
        "asic_fan_min_rpm",
        "asic_uptime_s",
        "asic_state_code",
        "asic_pool_ok",
        "asic_error_count",
    }
    hr = series["asic_hashrate_ths"]
    assert hr["metric"] == {
        "__name__": "asic_hashrate_ths",
        "site": "Экибастуз-1",
        "device": weird_device,
        "model": "Antminer S19 Pro",
        "vendor": "Bitmain",
        "firmware_family": "stock",
    }
    assert hr["values"] == [110.5] and hr["timestamps"] == [T0_NS // 1_000_000]
    assert series["asic_fan_min_rpm"]["values"] == [5280]
    assert series["asic_temp_board_max_c"]["values"] == [65.5]


@pytest.mark.servers
def test_replay_same_timestamp_is_same_point(victoria_metrics: VictoriaMetrics) -> None:
    # The timestamp comes from taken_at, not from the send time: a replay hits the same ms.
    lines = encode([asic(serial="REPLAY")], "s")
    _write(victoria_metrics, lines)
    _write(victoria_metrics, lines)
    (s,) = victoria_metrics.export('{__name__="asic_power_w", device="REPLAY"}')
    assert set(s["timestamps"]) == {T0_NS // 1_000_000}


@pytest.mark.servers
@settings(max_examples=40, deadline=None)
@given(tag=_text.filter(lambda t: t.strip() == t and not any(c in t for c in "\n\t")))
def test_tag_escaping_round_trip_property(victoria_metrics: VictoriaMetrics, tag: str) -> None:
    vm = victoria_metrics  # module-scoped, so hypothesis may reuse it across examples
    line = encode_point("prop", {"site": "p", "t": tag}, {"v": 1.0}, T0)
    assert line is not None
    _write(vm, [line])
    got = {s["metric"].get("t") for s in vm.export('{__name__="prop_v"}')}
    assert tag in got


def _doc_table() -> dict[str, tuple[set[str], set[str]]]:
    """Measurement → (tags, fields) as documented in uplink/SCHEMA.md."""
    import re
    from pathlib import Path

    from kuat import uplink

    text = (Path(uplink.__file__).parent / "SCHEMA.md").read_text()
    table: dict[str, tuple[set[str], set[str]]] = {}
    for row in text.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        m = re.fullmatch(r"`(\w+)`", cells[0]) if len(cells) == 4 else None
        if not m:
            continue

        def names(cell: str) -> set[str]:
            out: set[str] = set()
            for tok in re.findall(r"`([a-z_0-9.]+)`", cell):
                r = re.fullmatch(r"(\w+_l)1\.\.l?3", tok)
                out |= {f"{r.group(1)}{i}" for i in (1, 2, 3)} if r else {tok}
            return out

        tags = names(cells[1])
        if "as `pdu`" in cells[1]:
            tags = (tags - {"pdu"}) | table["pdu"][0]
        table[m.group(1)] = (tags, names(cells[2]))
    return table


def _keys(line: str) -> tuple[str, set[str], set[str]]:
    series, fields, _ = line.replace("\\ ", "_").split(" ")
    meas, *tags = series.split(",")
    return meas, {t.split("=")[0] for t in tags}, {f.split("=")[0] for f in fields.split(",")}


def test_schema_doc_matches_encoder() -> None:
    full_asic = asic(
        power_limit_w=3000,
        temps_c=AsicTemps((1.0,), (2.0,), (3.0,)),
        errors=("x",),
        coolant_in_c=30.5,
        coolant_out_c=38.0,
        faults=(FirmwareFault("110", "intake fan speed"),),
    )
    full_pdu = PduReading(
        host="h",
        vendor="v",
        model="m",
        serial="s",
        taken_at=T0,
        inlets=(PduInlet("I1", "L1", 1, 1, 1, 1, 1),),
        phases=(PduPhase("L1", 1, 1, 1),),
        breakers=(PduBreaker("B1", 1.0),),
        outlets=(PduOutlet(1, "n", 1, 1, 1, "on"),),
        total_watts=1,
    )
    full_meter = MeterReading(
        host="h",
        unit=1,
        profile="p",
        taken_at=T0,
        p_kw=1,
        p_kw_phases=(1, 1, 1),
        q_kvar=1,
        s_kva=1,
        v_ln=(1, 1, 1),
        v_ll=(1, 1, 1),
        i_a=(1, 1, 1),
        pf=1,
        f_hz=1,
        import_kwh=1,
        export_kwh=1,
        demand_kw=1,
    )
    err = DeviceError(DeviceKind.PDU, "h", 161, T0, "timeout")
    doc = _doc_table()
    seen = set()
    for line in encode([full_asic, full_pdu, full_meter, err], "s"):
        meas, tags, fields = _keys(line)
        seen.add(meas)
        doc_tags, doc_fields = doc[meas]
        assert tags == doc_tags, meas
        assert fields == doc_fields, meas
    assert seen == {
        "asic",
        "pdu",
        "pdu_inlet",
        "pdu_phase",
        "pdu_breaker",
        "pdu_outlet",
        "meter",
        "agent",
    }


def test_a_measurement_always_has_its_whole_tag_set() -> None:
    # InfluxDB 3 refuses a line whose tag a table did not start with: a miner whose model is not
    # known yet and one whose model is must write the same tag keys.
    (known,) = encode([asic()], "s")
    (bare,) = encode([asic(vendor=None, model=None, firmware_family=None)], "s")
    assert (
        _keys(bare)[1]
        == _keys(known)[1]
        == {"site", "device", "vendor", "model", "firmware_family"}
    )
    assert "model=unknown" in bare and "vendor=unknown" in bare
    pdu = PduReading(
        "h", None, None, None, T0, inlets=(PduInlet("I1", None, 230.0),), total_watts=1
    )
    inlet = next(ln for ln in encode([pdu], "s") if ln.startswith("pdu_inlet,"))
    assert "phase=unknown" in inlet and "model=unknown" in inlet


def test_measurement_of_a_line_with_and_without_tags() -> None:
    from kuat.uplink.lineproto import encode_point, measurement_of

    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert measurement_of(encode_point("quota", {"site": "a b"}, {"v": 1.0}, t)) == "quota"
    assert measurement_of(encode_point("agent", {}, {"v": 1.0}, t)) == "agent"


@given(
    device=st.text(min_size=0, max_size=12),
    vendor=st.one_of(st.none(), st.text(max_size=8)),
    model=st.one_of(st.none(), st.text(max_size=8)),
    family=st.one_of(st.none(), st.text(max_size=8)),
)
@settings(max_examples=300)
def test_asic_prefix_is_the_generic_series_key(
    device: str, vendor: str | None, model: str | None, family: str | None
) -> None:
    # The asic prefix is built as the device's tag before a per-model cached rest (no cache
    # entry per miner); it must stay byte for byte the sorted, escaped tag set of every point.
    from kuat.uplink.lineproto import _asic_prefix, _series_text

    tags = (
        ("site", "farm 1"),
        ("device", device),
        ("vendor", vendor),
        ("model", model),
        ("firmware_family", family),
    )
    assert _asic_prefix("farm 1", device, vendor, model, family) == _series_text("asic", tags)
