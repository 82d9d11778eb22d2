"""How a status snapshot looks to a person: a rich table, or a line for the journal."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from kuat.agent.i18n import Lang, message, number, quantity, t
from kuat.agent.state import StatusSnapshot

_STYLE = {
    "OK": "green",
    "pass": "green",
    "exempt": "cyan",
    "WARN": "yellow",
    "OVER": "bold red",
    "fail": "bold red",
    "NO_ALLOCATION": "magenta",
}


def _kwh(v: float | None, lang: Lang) -> str:
    return quantity(v, "kwh", lang, 1)


def _status(code: str | None, lang: Lang) -> Text:
    if code is None:
        return Text(t("no_data", lang), style="dim")
    return Text(t(code, lang), style=_STYLE.get(code, ""))


def _pools(s: StatusSnapshot, lang: Lang) -> Text:
    text = _status(s.pools_status, lang)
    if s.pools_offenders:
        text.append(f" ({message('ui.offenders_count', lang, count=s.pools_offenders)})")
    return text


def rows(s: StatusSnapshot, lang: Lang) -> list[tuple[str, str | Text]]:
    metered = quantity(s.metered_kw, "kw", lang, 1)
    pdu = quantity(None if s.pdu_power_w is None else s.pdu_power_w / 1000, "kw", lang, 1)
    alloc = _kwh(s.allocation_kwh, lang)
    sleeping = (
        f" (+{message('ui.sleeping_count', lang, count=s.miners_sleeping)})"
        if s.miners_sleeping
        else ""
    )
    return [
        (t("miners_up", lang), f"{s.miners_up} / {s.miners_total}{sleeping}"),
        (t("hashrate", lang), quantity(s.hashrate_ths, "ths", lang, 1)),
        (t("metered_power", lang), metered),
        (t("pdu_power", lang), pdu),
        (t("energy_hour", lang), f"{_kwh(s.energy_hour_kwh, lang)} / {alloc}"),
        (t("forecast", lang), _kwh(s.forecast_kwh, lang)),
        (t("quota_status", lang), _status(s.quota_status, lang)),
        (t("grid_status", lang), _status(s.grid_status, lang)),
        (t("pool_status", lang), _pools(s, lang)),
        (t("balance", lang), _status(s.balance_status, lang)),
        (t("devices_down", lang), str(s.devices_down)),
        (
            t("uplink", lang),
            f"{t('telemetry', lang)} {number(s.spool_pending, lang)} · {t('register', lang)} "
            f"{number(s.outbox_pending, lang)}",
        ),
    ]


def render_table(s: StatusSnapshot, lang: Lang, cycle: int) -> Table:
    table = Table(
        title=f"{t('title', lang)} — {t('cycle', lang)} {cycle} — {s.at:%Y-%m-%d %H:%M:%S} UTC",
        show_header=False,
        expand=False,
    )
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows(s, lang):
        table.add_row(label, value)
    return table


def render_text(s: StatusSnapshot, lang: Lang) -> str:
    return "\n".join(f"{label}: {value}" for label, value in rows(s, lang))


def render_line(s: StatusSnapshot, lang: Lang, cycle: int) -> str:
    parts = [f"{label}: {value}" for label, value in rows(s, lang)]
    return f"[{cycle}] " + " | ".join(parts)
