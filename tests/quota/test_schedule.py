import json
from datetime import date

import pytest

from kuat.collectors.readings import to_jsonable
from kuat.quota.reasons import Code
from kuat.quota.schedule import (
    BookOutcome,
    EnergySource,
    HourlyAllocation,
    ScheduleBook,
    ScheduleError,
    parse_csv,
    parse_json,
    parse_schedule,
)

DAY = date(2026, 11, 25)


def csv_text(
    values: list[object] | None = None,
    *,
    hours: list[object] | None = None,
    head: str = "site,date,source,version,hour,mwh",
    row: str = "s1,2026-11-25,grid,3",
) -> str:
    values = values if values is not None else [10.0] * 24
    hours = hours if hours is not None else list(range(1, len(values) + 1))
    lines = ["# KOREM winners", head]
    lines += [f"{row},{h},{v}" for h, v in zip(hours, values, strict=True)]
    return "\n".join(lines) + "\n"


def codes(exc: pytest.ExceptionInfo[ScheduleError]) -> list[Code]:
    return [r.code for r in exc.value.reasons]


def test_csv_ok() -> None:
    a = parse_csv(csv_text([float(h) for h in range(1, 25)]), description="file quota.csv")
    assert a.site == "s1" and a.date == DAY and a.source is EnergySource.GRID and a.version == 3
    assert a.kwh(1) == 1000.0 and a.kwh(24) == 24000.0
    assert a.total_mwh == 300.0
    assert a.description == "file quota.csv"
    assert to_jsonable(a)["mwh"][0] == 1.0


def test_csv_rows_in_any_order_and_defaults() -> None:
    text = "hour,mwh\n" + "\n".join(f"{h},5" for h in range(24, 0, -1))
    a = parse_csv(text, site="s2", day=DAY)
    assert a.site == "s2" and a.version == 1 and a.source is EnergySource.GRID
    assert a.mwh == (5.0,) * 24


def test_csv_semicolon_and_decimal_comma() -> None:
    text = "date;hour;mwh\n" + "\n".join(f"2026-11-25;{h};1,5" for h in range(1, 25))
    assert parse_csv(text, site="x").mwh == (1.5,) * 24


@pytest.mark.parametrize(
    ("values", "hours", "expected"),
    [
        ([1.0] * 23, None, [Code.SCHEDULE_HOURS_COUNT, Code.SCHEDULE_HOUR_MISSING]),
        (
            [1.0] * 25,
            [*range(1, 25), 25],
            [Code.SCHEDULE_HOUR_OUT_OF_RANGE, Code.SCHEDULE_HOURS_COUNT],
        ),
        (
            [1.0] * 24,
            [*range(1, 24), 23],
            [Code.SCHEDULE_HOUR_DUPLICATE, Code.SCHEDULE_HOUR_MISSING],
        ),
        ([*[1.0] * 23, -2.0], None, [Code.SCHEDULE_VALUE_NEGATIVE]),
        ([*[1.0] * 23, "abc"], None, [Code.SCHEDULE_VALUE_NOT_NUMERIC]),
        ([*[1.0] * 23, "nan"], None, [Code.SCHEDULE_VALUE_NOT_NUMERIC]),
        ([*[1.0] * 23, 12000.0], None, [Code.SCHEDULE_VALUE_TOO_LARGE]),
        (
            [1.0] * 24,
            [0, *range(1, 24)],
            [Code.SCHEDULE_HOUR_OUT_OF_RANGE, Code.SCHEDULE_HOUR_MISSING],
        ),
    ],
)
def test_csv_refusals(
    values: list[object], hours: list[object] | None, expected: list[Code]
) -> None:
    with pytest.raises(ScheduleError) as exc:
        parse_csv(csv_text(values, hours=hours))
    assert codes(exc) == expected


def test_every_reason_listed_at_once() -> None:
    values: list[object] = [1.0] * 22 + [-1.0, "x"]
    hours: list[object] = [*range(1, 23), 22, 24]  # 22 twice, 23 missing
    text = csv_text(values, hours=hours, head="site,source,version,hour,mwh", row="s1,coal,v2")
    with pytest.raises(ScheduleError) as exc:
        parse_csv(text, max_mwh_per_hour=0.5)
    got = codes(exc)
    for code in (
        Code.SCHEDULE_MISSING_FIELD,
        Code.SCHEDULE_BAD_SOURCE,
        Code.SCHEDULE_BAD_VERSION,
        Code.SCHEDULE_VALUE_TOO_LARGE,
        Code.SCHEDULE_VALUE_NOT_NUMERIC,
        Code.SCHEDULE_HOUR_DUPLICATE,
        Code.SCHEDULE_HOUR_MISSING,
    ):
        assert code in got, code
    missing = next(r for r in exc.value.reasons if r.code == Code.SCHEDULE_MISSING_FIELD)
    assert missing.params == {"field": "date"}
    assert next(r for r in exc.value.reasons if r.code == Code.SCHEDULE_HOUR_MISSING).params[
        "hours"
    ] == [23]
    # the whole list serialises
    json.dumps(to_jsonable(exc.value.reasons))


def test_cap_is_configurable() -> None:
    with pytest.raises(ScheduleError) as exc:
        parse_csv(csv_text([*[1.0] * 23, 30.0]), max_mwh_per_hour=25.0)
    assert exc.value.reasons[0].params == {"hour": 24, "mwh": 30.0, "cap_mwh": 25.0}


def test_csv_inconsistent_and_bad_rows() -> None:
    text = csv_text()
    text = text.replace("s1,2026-11-25,grid,3,5,", "s1,2026-11-26,grid,3,5,")
    text += "s1,2026-11-25\n"
    with pytest.raises(ScheduleError) as exc:
        parse_csv(text)
    assert codes(exc) == [Code.SCHEDULE_BAD_ROW, Code.SCHEDULE_INCONSISTENT_FIELD]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [Code.SCHEDULE_EMPTY]),
        ("# only a comment\n", [Code.SCHEDULE_EMPTY]),
        ("hour,value\n1,2\n", [Code.SCHEDULE_MISSING_COLUMN]),
    ],
)
def test_csv_unusable(text: str, expected: list[Code]) -> None:
    with pytest.raises(ScheduleError) as exc:
        parse_csv(text)
    assert codes(exc) == expected


def doc(**over: object) -> str:
    d: dict[str, object] = {
        "site": "s1",
        "date": "2026-11-25",
        "source": "bilateral",
        "version": 2,
        "mwh": [3.0] * 24,
    }
    d.update(over)
    return json.dumps({k: v for k, v in d.items() if v is not None})


def test_json_list_and_objects() -> None:
    a = parse_json(doc())
    assert a.source is EnergySource.BILATERAL and a.version == 2 and a.mwh == (3.0,) * 24
    hours = [{"hour": h, "mwh": h / 2} for h in range(1, 25)]
    b = parse_json(doc(mwh=None, hours=hours, description="KOREM 2026-11-24"))
    assert b.kwh(2) == 1000.0 and b.description == "KOREM 2026-11-24"
    assert parse_schedule(doc(), "application/json") == a
    assert parse_schedule(csv_text(), ".csv").version == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", [Code.SCHEDULE_NOT_JSON]),
        ("[1, 2]", [Code.SCHEDULE_BAD_SHAPE]),
        (doc(date=None), [Code.SCHEDULE_MISSING_FIELD]),
        (doc(date="25.11.2026"), [Code.SCHEDULE_BAD_DATE]),
        (doc(version=True), [Code.SCHEDULE_BAD_VERSION]),
        (doc(version=-1), [Code.SCHEDULE_BAD_VERSION]),
        (doc(mwh=[3.0] * 25), [Code.SCHEDULE_HOUR_OUT_OF_RANGE, Code.SCHEDULE_HOURS_COUNT]),
        (
            doc(mwh=[None, True, "1", *[1] * 21]),
            [Code.SCHEDULE_VALUE_NOT_NUMERIC, Code.SCHEDULE_VALUE_NOT_NUMERIC],
        ),
        (doc(mwh=None), [Code.SCHEDULE_BAD_SHAPE]),
        (doc(hours=[{"hour": 1, "mwh": 1}]), [Code.SCHEDULE_BAD_SHAPE]),
        (
            doc(mwh=None, hours=[{"hour": h, "mwh": 1} for h in [*range(1, 24), 1]]),
            [Code.SCHEDULE_HOUR_DUPLICATE, Code.SCHEDULE_HOUR_MISSING],
        ),
        (
            '{"date": "2026-11-25", "date": "2026-11-26", "site": "s", "mwh": '
            + str([1] * 24)
            + "}",
            [Code.SCHEDULE_INCONSISTENT_FIELD],
        ),
    ],
)
def test_json_refusals(text: str, expected: list[Code]) -> None:
    with pytest.raises(ScheduleError) as exc:
        parse_json(text)
    assert codes(exc) == expected


def test_allocation_must_have_24_hours() -> None:
    with pytest.raises(ValueError):
        HourlyAllocation("s", DAY, (1.0,) * 25)


def test_book_versions() -> None:
    book = ScheduleBook()
    v3 = csv_text()
    first = book.offer(v3, "csv", description="file a")
    assert first.outcome is BookOutcome.ADDED and first.changed
    assert book.offer(v3, "csv").outcome is BookOutcome.UNCHANGED
    v4 = csv_text([11.0] * 24, row="s1,2026-11-25,grid,4")
    change = book.offer(v4, "csv")
    assert change.outcome is BookOutcome.REPLACED and change.previous_version == 3
    assert book.get("s1", DAY).kwh(1) == 11000.0  # type: ignore[union-attr]
    older = book.offer(v3, "csv")
    assert (
        older.outcome is BookOutcome.KEPT and older.reasons[0].code == Code.SCHEDULE_OLDER_VERSION
    )
    conflict = book.offer(csv_text([12.0] * 24, row="s1,2026-11-25,grid,4"), "csv")
    assert conflict.reasons[0].code == Code.SCHEDULE_VERSION_CONFLICT
    refused = book.offer(csv_text([-1.0] * 24, row="s1,2026-11-25,grid,9"), "csv")
    assert refused.outcome is BookOutcome.REFUSED
    assert refused.reasons[0].code == Code.SCHEDULE_REFUSED and len(refused.reasons) == 25
    assert book.get("s1", DAY).version == 4  # type: ignore[union-attr]
    json.dumps(to_jsonable(refused))


def test_book_keys_by_source_and_prunes() -> None:
    book = ScheduleBook()
    book.offer(csv_text(), "csv")
    book.offer(csv_text(row="s1,2026-11-25,own_offgrid,1"), "csv")
    book.offer(csv_text(row="s1,2026-11-24,grid,1"), "csv")
    assert len(book) == 3 and book.sites() == ["s1"]
    assert book.get("s1", DAY, EnergySource.OWN_OFFGRID).version == 1  # type: ignore[union-attr]
    assert book.get("s1", DAY, "grid").version == 3  # type: ignore[arg-type,union-attr]
    assert book.prune(DAY) == 1 and len(book) == 2
    assert [a.date for a in book] == [DAY, DAY]


# --- hostile text: only ScheduleError, naming the problem (issue 11) ----------------------


def _csv_rows(*rows: str) -> str:
    return "site,date,hour,mwh\n" + "\n".join(rows) + "\n"


@pytest.mark.parametrize(
    ("text", "code", "where"),
    [
        # a quoted newline: the row spans two lines and keeps the line it started on
        (_csv_rows('s1,2026-11-25,"1\n2",3'), Code.SCHEDULE_HOUR_OUT_OF_RANGE, "line 2"),
        # an unterminated quote swallows the rest of the file into one cell
        (_csv_rows('s1,2026-11-25,"1,3', "s1,2026-11-25,2,3"), Code.SCHEDULE_BAD_ROW, 2),
        (_csv_rows("s1,2026-11-25,1," + "9" * 140_000), Code.SCHEDULE_BAD_CSV, 2),
        (_csv_rows("s1,2026-11-25,²,1"), Code.SCHEDULE_HOUR_OUT_OF_RANGE, "line 2"),
        (_csv_rows("s1,2026-11-25," + "1" * 5000 + ",1"), Code.SCHEDULE_HOUR_OUT_OF_RANGE, None),
    ],
    ids=["quoted-newline", "unterminated-quote", "cell-over-128k", "superscript", "5000-digits"],
)
def test_hostile_csv_is_refused_with_a_reason(text: str, code: Code, where: object) -> None:
    with pytest.raises(ScheduleError) as exc:
        parse_csv(text)
    found = [r for r in exc.value.reasons if r.code == code]
    assert found, codes(exc)
    if isinstance(where, int):
        assert found[0].params["line"] == where
    elif where is not None:
        assert found[0].params["at"] == where
    # a quoted value stays short enough for a log line
    assert all(len(str(v)) <= 200 for r in exc.value.reasons for v in r.params.values())


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"date": "2026-11-25", "site": "s", "mwh": [1' + "0" * 400 + "]}", None),
        ("[" * 1000 + "]" * 1000, Code.SCHEDULE_NOT_JSON),
        ('{"date": "2026-11-25", "site": "s", "version": "' + "1" * 5000 + '", "mwh": []}', None),
        ('{"date": "2026-11-25", "site": "s", "version": "²", "mwh": []}', None),
    ],
    ids=["400-zeros", "deep-nesting", "5000-digit-version", "superscript-version"],
)
def test_hostile_json_is_refused_with_a_reason(text: str, code: Code | None) -> None:
    with pytest.raises(ScheduleError) as exc:
        parse_json(text)
    if code is not None:
        assert codes(exc) == [code]
    else:
        assert codes(exc)[0] in (Code.SCHEDULE_VALUE_NOT_NUMERIC, Code.SCHEDULE_BAD_VERSION)


def test_book_refuses_one_bad_document_and_takes_the_next() -> None:
    book = ScheduleBook()
    bad = book.offer("[" * 1000 + "]" * 1000, "json", description="body#1")
    good = book.offer(doc(), "json", description="body#2")
    assert bad.outcome is BookOutcome.REFUSED and bad.description == "body#1"
    assert good.outcome is BookOutcome.ADDED
