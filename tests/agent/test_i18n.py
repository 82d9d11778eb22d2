"""The one message catalog: every message in kk, ru and en, plurals and numbers by locale,
figures shown with the precision a person needs to act, and fault causes in the reader's
language."""

from __future__ import annotations

import string

import pytest
from babel.messages.catalog import Catalog

from kuat.agent import i18n, i18n_tool, reports
from kuat.agent.i18n import (
    LANGS,
    device_kind,
    fault_cause,
    job_name,
    message,
    number,
    render,
    t,
)
from kuat.quota import messages as quota_messages
from kuat.quota.reasons import Code, Reason

NBSP = "\u00a0"


def fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def po(lang: str) -> Catalog:
    return i18n_tool.read_catalog(lang)  # type: ignore[arg-type]


def test_every_message_is_present_non_empty_with_the_same_fields_in_all_three() -> None:
    catalogs = {lang: {m.id: m for m in po(lang) if m.id} for lang in LANGS}
    ids = {lang: set(c) for lang, c in catalogs.items()}
    assert ids["kk"] == ids["ru"] == ids["en"], {
        lang: sorted(ids[lang] ^ ids["en"]) for lang in LANGS
    }
    assert len(ids["en"]) > 200  # the walk covers the catalog, not an empty file
    for msgid in ids["en"]:
        shapes = set()
        for lang in LANGS:
            m = catalogs[lang][msgid]
            forms = m.string if m.pluralizable else (m.string,)
            assert len(forms) == po(lang).num_plurals or not m.pluralizable, (msgid, lang)
            for form in forms:
                assert form.strip(), f"{msgid} is empty in {lang}"
                shapes.add(frozenset(fields(form)))
        assert len(shapes) == 1, f"{msgid}: placeholders differ between languages: {shapes}"
        if isinstance(msgid, tuple):  # a plural: its count field is in every form
            assert msgid[1].strip("{}") in next(iter(shapes)), msgid


def test_the_compiled_catalogs_match_their_sources() -> None:
    # a fresh clone, an editable install and the wheel read the committed .mo files
    stale = [lang for lang in LANGS if i18n_tool.stale(lang)]
    assert not stale, f"stale .mo for {stale}: run `make messages`"


def test_no_text_is_left_in_the_old_dicts() -> None:
    leftovers = [msgid for msgid, _ in i18n_tool.legacy_entries()]
    assert not leftovers, f"run `make messages-import`, then empty the dicts: {leftovers}"


def test_a_text_added_the_old_way_still_renders() -> None:
    # the compatible call path other branches use until their texts move into the catalog
    i18n.CATALOG["x_new_label"] = {"kk": "жаңа", "ru": "новая", "en": "new"}
    quota_messages.CATALOG[Code.POOLS_OK] = {"kk": "k", "ru": "r", "en": "never shown"}
    reports.LABELS["x_new"] = {"kk": "к", "ru": "р", "en": "e"}
    try:
        assert t("x_new_label", "ru") == "новая"
        assert reports.label("x_new", "en") == "e"
        # the catalog wins over a legacy text for the same id
        assert "never shown" not in render(Reason.of(Code.POOLS_OK, miners=1), "en")
    finally:
        del i18n.CATALOG["x_new_label"], quota_messages.CATALOG[Code.POOLS_OK]
        del reports.LABELS["x_new"]


@pytest.mark.parametrize(
    ("lang", "n", "text"),
    [
        ("ru", 1, "1 майнер работает"),
        ("ru", 3, "3 майнера работают"),
        ("ru", 5, "5 майнеров работают"),
        ("ru", 11, "11 майнеров работают"),
        ("ru", 21, "21 майнер работает"),
        ("ru", 24, "24 майнера работают"),
        ("en", 1, "1 miner on a pool"),
        ("en", 2, "2 miners on pools"),
        ("kk", 3, "3 майнер аккредиттелмеген"),
    ],
)
def test_counts_take_the_plural_form_of_the_language(lang: str, n: int, text: str) -> None:
    out = render(Reason.of(Code.POOLS_NOT_ACCREDITED, miners=n, pools=["x.com"]), lang)  # type: ignore[arg-type]
    assert out.startswith(text), out


def test_the_dashboard_count_of_offenders_agrees_with_the_number() -> None:
    assert message("ui.offenders_count", "ru", count=3).startswith("3 майнера ")
    one = message("ui.offenders_count", "en", count=1)
    assert one == "1 miner on a pool that is not accredited"


def test_thousands_are_grouped_the_way_the_reader_writes_them() -> None:
    assert number(2072, "en") == "2,072"
    assert number(2072, "ru") == f"2{NBSP}072"  # "2,072" reads as 2.072 in Russian
    assert number(2072.5, "kk") == f"2{NBSP}072,5"
    r = Reason.of(Code.BALANCE_OK, meter_kw=2072.5, accounted_kw=2072.0)
    assert render(r, "ru") == (
        f"Баланс мощности сходится: счётчик 2{NBSP}072,5 кВт, учтено 2{NBSP}072 кВт"
    )
    # numbers that name something are never grouped
    assert "4028" in fault_cause("connection refused on port 4028", "ru")
    assert "версия 1024" in render(
        Reason.of(Code.SCHEDULE_ADDED, site="s", date="2026-11-25", source="grid", version=1024),
        "ru",
    )


def test_a_quarter_megawatt_hour_is_not_shown_as_a_fifth() -> None:
    r = Reason.of(Code.SCHEDULE_VALUE_NEGATIVE, hour=5, mwh=-0.25)
    assert render(r, "en") == "Hour 5 is negative: -0.25 MWh"
    assert "-0,25 МВт·ч" in render(r, "ru")


@pytest.mark.parametrize(("value", "shown"), [(0.51, "0.51"), (0.5004, "0.5004")])
def test_a_value_over_its_cap_never_reads_as_the_cap(value: float, shown: str) -> None:
    r = Reason.of(Code.SCHEDULE_VALUE_TOO_LARGE, hour=3, mwh=value, cap_mwh=0.5)
    assert f"{shown} MWh, cap 0.5 MWh" in render(r, "en")
    assert f"{shown.replace('.', ',')} МВт·ч при пределе 0,5 МВт·ч" in render(r, "ru")


def test_a_peak_just_over_the_permitted_capacity_shows_the_difference() -> None:
    from datetime import date

    from kuat.quota.grid import GridConnection, check_grid_connection

    conn = GridConnection("ТУ-1", None, "KEGOC", "ПС-1", 35.0, 2.0, date(2024, 1, 1))
    (over,) = [
        r
        for r in check_grid_connection(conn, 2000.04).reasons
        if r.code is Code.GRID_PEAK_OVER_PERMITTED
    ]
    assert "2,000.04 kW exceeds the permitted capacity (2,000 kW)" in render(over, "en")


def test_fault_causes_device_kinds_and_jobs_are_translated() -> None:
    cause = "connection refused on port 4028 (is the miner API enabled?)"
    kk = "4028 портында қосылудан бас тартылды (майнер API қосулы ма?)"
    assert fault_cause(cause, "kk") == kk
    assert fault_cause(cause, "en") == cause
    assert fault_cause("timed out after 3.0 s connecting", "ru") == "нет соединения за 3 с"
    assert fault_cause("no reading within 2.5 s", "kk") == "2,5 с ішінде көрсеткіш алынбады"
    # an unknown cause is technical detail, shown as written rather than guessed at
    assert fault_cause("SNMP engine said XYZ", "ru") == "SNMP engine said XYZ"
    assert device_kind("meter", "kk") == "есептегіш"
    assert job_name("quota", "ru") == "проверка квоты"
    assert job_name("meter:tariff", "ru") == "опрос счётчиков (tariff)"
    assert job_name("mystery", "ru") == "mystery"


def test_every_reason_code_is_in_the_catalog() -> None:
    missing = [c.value for c in Code if not i18n.has(c.value)]
    assert not missing


def test_an_excess_just_over_its_tolerance_reads_as_over() -> None:
    from kuat.quota.balance import BalancePolicy, check_balance

    policy = BalancePolicy(tolerance_kw=5.0, tolerance_fraction=0.0)
    result = check_balance(105.04, 100.0, None, policy)
    (alarm,) = [r for r in result.reasons if r.code is Code.BALANCE_UNREGISTERED_LOAD]
    assert "5.04 kW unaccounted (tolerance 5 kW)" in render(alarm, "en")


def test_an_hour_just_over_its_allocation_reads_as_over() -> None:
    from datetime import UTC, date, datetime, timedelta

    from kuat.quota.evaluate import MeterSample, QuotaState, evaluate
    from kuat.quota.schedule import HourlyAllocation

    start = datetime(2026, 11, 25, 4, tzinfo=UTC)  # 09:00 Astana: hour ending 10
    alloc = HourlyAllocation("s1", date(2026, 11, 25), (0.5,) * 24)  # 500 kWh
    samples = [MeterSample(start + timedelta(minutes=m), 600.0, 1000.0 + 10.0 * m) for m in (0, 50)]
    samples.append(MeterSample(start + timedelta(minutes=51), 600.0, 1500.04))
    status = evaluate(alloc, samples, start + timedelta(minutes=51))
    assert status.status is QuotaState.OVER
    assert "500.04 kWh used of 500 kWh" in render(status.reason, "en")


def test_each_unit_keeps_the_precision_a_person_acts_on() -> None:
    r = Reason.of(
        Code.GRID_OK,
        tc_number="1",
        substation="S",
        voltage_kv=35.0,
        permitted_mw=1.25,
        peak_kw=812.46,
    )
    en = render(r, "en")
    assert "35 kV" in en and "1.25 MW" in en and "812.5 kW" in en
    sleep = Reason.of(Code.CURTAIL_SLEEP, device_id="m1", power_w=3250.4, j_per_th=17.56)
    assert (
        render(sleep, "ru")
        == f"m1 переводится в сон: 3{NBSP}250 Вт, 17,6 Дж/ТХ (наименее эффективный)"
    )


def test_the_status_table_writes_numbers_and_counts_the_readers_way() -> None:
    from datetime import UTC, datetime

    from kuat.agent.state import StatusSnapshot
    from kuat.agent.status import render_text

    snap = StatusSnapshot(
        at=datetime(2026, 11, 25, 9, tzinfo=UTC),
        miners_total=2100,
        miners_up=2072,
        miners_sleeping=3,
        hashrate_ths=207_200.5,
        miners_power_w=None,
        pdu_power_w=7_400.0,
        metered_kw=2_072.0,
        energy_hour_kwh=1_036.0,
        allocation_kwh=2_100.0,
        forecast_kwh=2_072.5,
        quota_status="ok",
        grid_status="pass",
        pools_status="fail",
        pools_offenders=3,
        balance_status=None,
        spool_pending=12_345,
        outbox_pending=0,
        devices_down=28,
    )
    ru = render_text(snap, "ru")
    assert f"Мощность по счётчику: 2{NBSP}072,0 кВт" in ru  # not "2,072.0 kW"
    assert "3 майнера на неаккредитованном пуле" in ru  # not «3 майнеров»
    assert f"телеметрия 12{NBSP}345" in ru
    assert f"207{NBSP}200,5 ТХ/с" in ru
    en = render_text(snap, "en")
    assert "Metered power: 2,072.0 kW" in en and "(3 miners on a pool that is not accredited)" in en


@pytest.mark.parametrize(
    ("reason", "en"),
    [
        # an order's quarter megawatt is 250 kW, not 200
        (
            Reason.of(
                Code.ORDER_LIMIT,
                id="o1",
                issuer="KEGOC",
                end="2026-11-25T10:00:00Z",
                target_mw=0.25,
            ),
            "at most 0.25 MW until",
        ),
        # 0.95 MW permitted is under the 1 MW minimum: it must not read "1 MW — at least 1 MW"
        (
            Reason.of(Code.GRID_CAPACITY_LOW, permitted_mw=0.95, min_mw=1.0),
            "0.95 MW — at least 1 MW",
        ),
    ],
)
def test_megawatts_keep_the_kilowatts(reason: Reason, en: str) -> None:
    assert en in render(reason, "en")


def test_the_number_symbols_are_cldrs() -> None:
    from babel.numbers import get_decimal_symbol, get_group_symbol, get_minus_sign_symbol

    for lang in i18n.LANGS:
        want = (get_decimal_symbol(lang), get_group_symbol(lang), get_minus_sign_symbol(lang))
        assert i18n.SYMBOLS[lang] == want, lang


def test_numbers_are_written_without_babels_locale_data() -> None:
    # Babel keeps a locale's whole CLDR data once it is asked for one symbol: ~5 MB of every
    # agent's memory (issue 15). Run apart: this test process may have loaded it already.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from kuat.agent.i18n import number\n"
        "assert [number(-1234.5, l) for l in ('kk', 'ru', 'en')] == "
        "['-1\\xa0234,5', '-1\\xa0234,5', '-1,234.5']\n"
        "from babel import localedata\n"
        "print(len(localedata._cache), 'babel.numbers' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "False"]
