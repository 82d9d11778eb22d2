"""Every reason code has its text in kk, ru and en (the gettext catalog, rendered by
kuat.agent.i18n), and every reason the modules actually produce renders completely (no
``{field}`` left for a missing parameter) in all three."""

import re
import string
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.i18n import LANGS, catalog, render
from kuat.collectors.readings import AsicReading, PoolInfo
from kuat.quota.balance import check_balance
from kuat.quota.curtail import CurtailPolicy, MinerState, plan
from kuat.quota.evaluate import MeterSample, QuotaPolicy, evaluate
from kuat.quota.grid import GridConnection, check_grid_connection
from kuat.quota.pools import check_pools
from kuat.quota.reasons import Code, Reason
from kuat.quota.schedule import HourlyAllocation, ScheduleBook, ScheduleError, parse_csv, parse_json
from kuat.quota.settlement import judge
from tests.quota.test_orders import produced_order_reasons

T = datetime(2026, 11, 25, 4, tzinfo=UTC)
DAY = date(2026, 11, 25)


def fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_every_code_has_text_in_three_languages_with_the_same_fields() -> None:
    for code in Code:
        texts = {lang: catalog(lang).entries.get(code.value) for lang in LANGS}
        assert all(texts.values()), f"{code.value} missing from a catalog: {texts}"
        forms = {lang: e.forms for lang, e in texts.items() if e}
        assert all(f.strip() for fs in forms.values() for f in fs), code
        assert len({frozenset(fields(f)) for fs in forms.values() for f in fs}) == 1, code


def test_every_code_used_in_the_sources_is_catalogued() -> None:
    src = Path(__file__).resolve().parents[2] / "quota"
    used = set()
    for path in src.glob("*.py"):
        used |= set(re.findall(r"Code\.([A-Z0-9_]+)", path.read_text(encoding="utf-8")))
    assert used <= {c.name for c in Code if c.value in catalog("en").entries}


def refused(fn, text: str, **kw) -> list[Reason]:  # type: ignore[no-untyped-def]
    with pytest.raises(ScheduleError) as exc:
        fn(text, **kw)
    return exc.value.reasons


def produced() -> list[Reason]:
    out: list[Reason] = []
    row = "s1,2026-11-25,grid,3"
    head = "site,date,source,version,hour,mwh\n"
    good = head + "".join(f"{row},{h},1\n" for h in range(1, 25))
    out += refused(parse_json, "{x")
    out += refused(parse_json, "[]")
    out += refused(parse_csv, "")
    out += refused(parse_csv, "a,b\n1,2\n")
    out += refused(parse_csv, "hour,mwh\n1," + "9" * 140_000 + "\n")  # over the csv field limit
    bad = head + "s1,2026-11-25,coal,v,1,-1\ns2,,grid,3,1,x\ns1,2026-11-25,grid,3,0,1\n"
    bad += "s1,2026-11-25,grid,3,2,9999\ns1\n"
    out += refused(parse_csv, bad)
    odd = "source,version,hour,mwh\n" + "".join(f"coal,v,{h},x\n" for h in range(1, 25))
    out += refused(parse_csv, odd, site="s", day=DAY)
    out += refused(
        parse_csv,
        "date,hour,mwh\n" + "".join(f"25.11.2026,{h},1\n" for h in range(1, 25)),
        site="s",
    )
    out += refused(parse_csv, "hour,mwh\n" + "".join(f"{h},1\n" for h in range(1, 25)))
    book = ScheduleBook()
    out += book.offer(good, "csv").reasons
    out += book.offer(good, "csv").reasons
    out += book.offer(good.replace(",3,", ",4,"), "csv").reasons
    out += book.offer(good, "csv").reasons
    out += book.offer(good.replace(",3,", ",4,").replace(",1\n", ",2\n"), "csv").reasons
    out += book.offer("", "csv").reasons

    start = T
    alloc = HourlyAllocation("s1", DAY, (1.0,) * 24)

    def run(kw: float, minutes: float, **kw_: object) -> None:
        samples = [
            MeterSample(start + timedelta(seconds=t), kw, 10 + kw * t / 3600)
            for t in range(0, int(minutes * 60) + 1, 10)
        ]
        q = evaluate(kw_.pop("a", alloc), samples, start + timedelta(minutes=minutes))  # type: ignore[arg-type]
        out.extend([q.reason, *q.notes])

    run(850, 30)
    run(970, 30)
    run(1200, 30)
    run(1300, 50)
    run(200, 30)
    run(100, 5, a=None)
    out.append(evaluate(alloc, [], T).reason)
    odd = [
        MeterSample(T + timedelta(minutes=20), 500, None),
        MeterSample(T + timedelta(minutes=25), 500, 10.0),
        MeterSample(T + timedelta(minutes=26), 500, 5.0),
    ]
    out += evaluate(alloc, odd, T + timedelta(minutes=30), QuotaPolicy()).notes

    conn = GridConnection("ТУ-1", DAY, "KEGOC", "ПС-1", 110, 20, date(2024, 1, 1))
    for c, peak in [
        (conn, 100.0),
        (conn, None),
        (replace(conn, off_grid=True), 1.0),
        (replace(conn, connected_on=date(2020, 1, 1)), 1.0),
        (replace(conn, tc_number="", voltage_kv=6, permitted_mw=0.5), 900.0),
    ]:
        out += check_grid_connection(c, peak).reasons

    def asic(serial: str, url: str | None) -> AsicReading:
        pools = (PoolInfo(url, active=True),) if url else ()
        return AsicReading("10.0.0.1", 4028, T, serial=serial, pools=pools)

    for miners, acc, reg in [
        ([asic("a", "pool.kz:1")], ["pool.kz"], True),
        ([asic("b", "x.com:1"), asic("c", None)], ["pool.kz"], False),
        ([], [], True),
        ([], ["pool.kz"], True),
    ]:
        r = check_pools(miners, acc, data_centre_registered=reg, data_centre_id="DC-1")
        out += [*r.reasons, *(o.reason for o in r.offenders)]

    for args in [
        (100.0, 100.0, 100.0),
        (150.0, 100.0, 100.0),
        (50.0, 100.0, None),
        (None, None, None),
    ]:
        out += check_balance(*args).reasons

    fleet = [MinerState("a", 3000, 100, False), MinerState("b", 3000, 50, True, T)]
    pol = CurtailPolicy(hysteresis_kw=5)
    for allowed, f in [
        (1.0, fleet),
        (100.0, fleet),
        (None, fleet),
        (2.0, [fleet[0]]),
        (6.0, [fleet[0], replace(fleet[1], last_switched=None)]),
        (100.0, [replace(fleet[1], last_switched=None)]),
        (1.0, [replace(fleet[0], last_switched=T)]),
    ]:
        p = plan(allowed, f, T, pol)
        out += [p.reason, *p.held, *(a.reason for a in p.actions)]
    # power limits, outlets and the limit hold
    lux = MinerState("l", 3000, 100, False, power_steps_w=(2500.0, 2000.0), full_power_w=3000)
    cut = MinerState("c", 3000, 100, False, can_sleep=False, outlet="pdu-1/3")
    for allowed, f in [
        (2.5, [lux]),
        (2.5, [replace(lux, last_limited=T, can_sleep=False)]),
        (1.0, [cut]),
        (100.0, [replace(cut, asleep=True, outlet_off=True)]),
        (100.0, [replace(lux, power_w=2000, power_limit_w=2000)]),
    ]:
        p = plan(allowed, f, T, pol)
        out += [p.reason, *p.held, *(a.reason for a in p.actions)]
    # a wake the hour's end and a tight next hour make not worth it
    asleep = replace(fleet[1], last_switched=None)
    out += plan(100.0, [asleep], T, pol, hour_left_s=300, next_allowed_kw=1.0).held
    # a limit the hour's end lets up only part way, with an ample next hour
    limited = replace(lux, power_w=2000, power_limit_w=2000)
    out += plan(7.7, [limited], T, pol, hour_left_s=300, next_allowed_kw=100.0).held
    out += produced_order_reasons()
    # settlement: the commercial meter's closed hour against kuat's ledger
    for meter_kwh, kuat_kwh, whole in (
        (600.0, 603.0, True),
        (600.0, 640.0, True),
        (None, 600.0, True),
        (600.0, 300.0, False),
    ):
        out.append(
            judge(
                meter_kwh,
                kuat_kwh,
                whole,
                entries=1,
                tolerance_kwh=1.0,
                tolerance_fraction=0.01,
                hour="2026-11-25 14:00–15:00",
                ledger_meter="site",
            )[3]
        )
    return out


def test_every_produced_reason_renders_in_all_languages() -> None:
    reasons = produced()
    missing = set(Code) - {r.code for r in reasons}
    assert not missing, f"no scenario produces {sorted(missing)}"
    for r in reasons:
        for lang in LANGS:
            text = render(r, lang)
            assert "{" not in text, (r, lang, text)


def test_render_formats_per_language() -> None:
    r = Reason.of(Code.GRID_PEAK_OVER_PERMITTED, peak_kw=1234.5, permitted_kw=1000.0)
    assert (
        render(r, "en")
        == "Measured peak demand 1,234.5 kW exceeds the permitted capacity (1,000 kW)"
    )
    # kk and ru group thousands with a no-break space and write a decimal comma
    assert "1\u00a0234,5 кВт" in render(r, "ru") and "рұқсат етілген қуат" in render(r, "kk")
    assert "{peak_kw}" in render(Reason.of(Code.GRID_PEAK_OVER_PERMITTED), "en")
    with pytest.raises(ValueError):
        render(r, "de")  # type: ignore[arg-type]
