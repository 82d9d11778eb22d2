"""``kuat report monthly|hourly|quarterly`` and ``kuat compliance report``.

Both read what the agent stored — the energy ledger (``ledger.db``) and the spool's retained
inventory and outbox — so they are safe to run while the agent runs under systemd. ``kuat
compliance report --poll`` additionally runs one poll of the site (``Agent.run_once``) for fresh
pool and quota results; that opens the agent's spool for writing, so use it only when the agent
service is stopped (a spool must not have two writers). Item 5's peak demand always comes from
the ledger: one poll cannot measure a demand interval.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from kuat.agent.commands.register import load_or_exit, read_stored
from kuat.agent.exitcodes import for_findings

if TYPE_CHECKING:  # imported where used: `kuat --help` loads every command module
    from kuat.agent.config import KuatConfig
    from kuat.agent.i18n import Lang
    from kuat.agent.ledger import EnergyLedger

Settled = dict[datetime, float] | None

LangOpt = Annotated[
    str | None, typer.Option("--lang", help="kk, ru or en (default: [agent] language).")
]
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Configuration file (TOML).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
T = TypeVar("T")


def _lang(value: str | None, cfg: KuatConfig) -> Lang:
    from kuat.agent.i18n import LANGS

    lang = value or cfg.agent.language
    if lang not in LANGS:
        typer.echo(f"--lang must be kk, ru or en, not {lang!r}", err=True)
        raise typer.Exit(2)
    return lang


def _open(config: Path, lang: str | None) -> tuple[KuatConfig, Lang]:
    """Every report's start: the config (exit 2 with its problems) and the language."""
    cfg = load_or_exit(config)
    return cfg, _lang(lang, cfg)


def _ledger_report(
    cfg: KuatConfig,
    span: tuple[datetime, datetime],
    build: Callable[[EnergyLedger, Settled], dict[str, Any]],
) -> dict[str, Any]:
    """The ledger reports' common part: the energy ledger (exit 1 when there is none), the
    commercial meter's settled kWh over ``span``, and ``build`` with both."""
    ledger = _ledger(cfg, required=True)
    settled = _settled(cfg, *span)
    with ledger:
        return build(ledger, settled)


def _ledger(cfg: KuatConfig, *, required: bool):
    from kuat.agent.ledger import EnergyLedger

    path = Path(cfg.agent.state_dir) / "ledger.db"
    if not path.exists():
        if required:
            typer.echo(f"no energy ledger at {path}: the agent has not recorded any", err=True)
            raise typer.Exit(1)
        return None
    return EnergyLedger(path)


def _settled(cfg: KuatConfig, start: datetime, end: datetime) -> dict[datetime, float] | None:
    """The commercial meter's load-profile kWh by hour from the settlement book the agent
    keeps (None: no commercial meter, or no book yet)."""
    from kuat.agent.settlement_book import SettlementBook

    m = cfg.commercial_meter
    path = Path(cfg.agent.state_dir) / "settlement.db"
    if m is None or not path.exists():
        return None
    with SettlementBook(path) as book:
        return {t: h.meter_kwh for t, h in book.hours(m.name, start, end).items()}


def _rates(values: list[str]) -> dict[str, float]:
    from kuat.quota.schedule import EnergySource

    out: dict[str, float] = {}
    for v in values:
        source, sep, rate = v.partition("=")
        try:
            if not sep or source not in {s.value for s in EnergySource}:
                raise ValueError
            out[source] = float(rate)
        except ValueError:
            allowed = ", ".join(s.value for s in EnergySource)
            typer.echo(f"--rate must be SOURCE=TENGE_PER_KWH, SOURCE one of {allowed}", err=True)
            raise typer.Exit(2) from None
    return out


def _parse(parse: Callable[..., T], *args: str) -> T:
    """A command-line value parsed, or its error on stderr and exit 2."""
    try:
        return parse(*args)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _emit(
    report: dict[str, Any],
    *,
    as_json: bool,
    as_csv: bool,
    csv_text: Callable[[dict[str, Any]], str],
    text: Callable[[], str],
) -> None:
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    elif as_csv:
        typer.echo(csv_text(report), nl=False)
    else:
        typer.echo(text())


def _quota_job(cfg: KuatConfig):
    """The allocation files read as the agent reads them: the book, and what was refused."""
    from kuat.agent.quota_job import QuotaJob
    from kuat.agent.state import SiteState

    job = QuotaJob(cfg, SiteState(), Path(cfg.agent.state_dir))
    job.reload_schedules()
    return job


def _schedules(cfg: KuatConfig):
    return _quota_job(cfg).book


def register(app: typer.Typer) -> None:
    report_app = typer.Typer(help="Reports from the energy ledger.", no_args_is_help=True)
    compliance_app = typer.Typer(help="Inspection checklist evidence.", no_args_is_help=True)
    app.add_typer(report_app, name="report")
    app.add_typer(compliance_app, name="compliance")

    @report_app.command("monthly")
    def monthly(
        month: Annotated[str, typer.Argument(metavar="YYYY-MM", help="Astana calendar month.")],
        config: ConfigOpt,
        as_json: JsonOpt = False,
        lang: LangOpt = None,
        as_csv: Annotated[bool, typer.Option("--csv", help="Daily rows as CSV.")] = False,
        rate: Annotated[
            list[str] | None,
            typer.Option(help="Fee rate SOURCE=TENGE_PER_KWH (repeatable), e.g. grid=10."),
        ] = None,
    ) -> None:
        """kWh per day, meter and energy source for a month, totals and the fee basis."""
        from kuat.agent.ledger import month_bounds
        from kuat.agent.reports import monthly_csv, monthly_report, render_monthly

        cfg, language = _open(config, lang)
        span = _parse(month_bounds, month)
        rates = _rates(rate or [])
        report = _ledger_report(
            cfg,
            span,
            lambda ledger, settled: monthly_report(
                ledger, cfg, month, rates=rates, settled=settled
            ),
        )
        _emit(
            report,
            as_json=as_json,
            as_csv=as_csv,
            csv_text=monthly_csv,
            text=lambda: render_monthly(report, language),
        )

    @report_app.command("hourly")
    def hourly(
        config: ConfigOpt,
        date_from: Annotated[
            str, typer.Option("--from", metavar="DATE", help="First Astana date (YYYY-MM-DD).")
        ],
        date_to: Annotated[
            str, typer.Option("--to", metavar="DATE", help="Last Astana date, included.")
        ],
        as_json: JsonOpt = False,
        as_csv: Annotated[bool, typer.Option("--csv", help="One row per hour and source.")] = False,
        lang: LangOpt = None,
    ) -> None:
        """Every Astana hour of the range: energy used per source, allocation, status and the
        commercial meter's figure, for the month-end settlement."""
        from kuat.agent.hourly_report import hourly_csv, hourly_report, parse_range, render_hourly
        from kuat.quota.clock import hour_bounds

        cfg, language = _open(config, lang)
        first, last = _parse(parse_range, date_from, date_to)
        report = _ledger_report(
            cfg,
            (hour_bounds(first, 1)[0], hour_bounds(last, 24)[1]),
            lambda ledger, settled: hourly_report(
                ledger, cfg, first, last, book=_schedules(cfg), settled=settled
            ),
        )
        _emit(
            report,
            as_json=as_json,
            as_csv=as_csv,
            csv_text=hourly_csv,
            text=lambda: render_hourly(report, language),
        )

    @report_app.command("quarterly")
    def quarterly(
        quarter: Annotated[str, typer.Argument(metavar="YYYY-QN", help="e.g. 2026-Q3.")],
        config: ConfigOpt,
        as_json: JsonOpt = False,
        as_csv: Annotated[bool, typer.Option("--csv", help="One row per energy source.")] = False,
        lang: LangOpt = None,
        rate: Annotated[
            list[str] | None,
            typer.Option(help="Fee rate SOURCE=TENGE_PER_KWH (repeatable), e.g. grid=10."),
        ] = None,
        unmetered_rate: Annotated[
            float,
            typer.Option(help="Rate for energy not backed by a control (commercial) meter."),
        ] = 25.0,
    ) -> None:
        """The digital-mining fee's quarter: kWh per meter and source, what the commercial
        meter backs, the rate of each and the fee."""
        from kuat.agent.fee_report import (
            parse_quarter,
            quarter_days,
            quarterly_csv,
            quarterly_report,
            render,
        )
        from kuat.quota.clock import hour_bounds

        cfg, language = _open(config, lang)
        year, q = _parse(parse_quarter, quarter)
        rates = _rates(rate or [])
        first, last = quarter_days(year, q)
        report = _ledger_report(
            cfg,
            (hour_bounds(first, 1)[0], hour_bounds(last, 24)[1]),
            lambda ledger, settled: quarterly_report(
                ledger, cfg, year, q, rates=rates, unmetered_rate=unmetered_rate, settled=settled
            ),
        )
        _emit(
            report,
            as_json=as_json,
            as_csv=as_csv,
            csv_text=quarterly_csv,
            text=lambda: render(report, language),
        )

    @compliance_app.command("report")
    def compliance(
        config: ConfigOpt,
        as_json: JsonOpt = False,
        lang: LangOpt = None,
        poll: Annotated[
            bool,
            typer.Option(
                "--poll", help="Poll the site once first (only when the agent is not running)."
            ),
        ] = False,
        exit_zero: Annotated[
            bool,
            typer.Option("--exit-zero", help="Exit 0 even when a check fails."),
        ] = False,
    ) -> None:
        """Items 5 and 7, the quota and the register status, in kk / ru / en.

        Exit code: 0 when nothing fails, 3 when item 5 or 7 fails or the quota is over."""
        from kuat.agent.reports import compliance_report, render_compliance

        cfg, language = _open(config, lang)
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        fresh: dict[str, Any] = {}
        if poll:
            import asyncio

            from kuat.agent.runtime import Agent

            agent = Agent(cfg)
            asyncio.run(agent.run_once())
            fresh = {"fresh_pools": agent.state.pools, "fresh_quota": agent.state.quota}
        stored = read_stored(cfg)
        ledger = _ledger(cfg, required=False)
        quota = _quota_job(cfg)
        try:
            report = compliance_report(
                cfg,
                now=datetime.now(UTC),
                lang=language,
                ledger=ledger,
                inventory=stored.inventory,
                outbox_pending=stored.outbox_pending,
                outbox_dead=stored.outbox_dead,
                schedules=quota.book,
                refused_allocations=quota.refused,
                **fresh,
            )
        finally:
            if ledger is not None:
                ledger.close()
        if as_json:
            typer.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))
        else:
            typer.echo(render_compliance(report, language))
        if not exit_zero:
            statuses = [report[k]["status"] for k in ("item5", "item7", "quota")]
            code = for_findings(statuses, devices_down=0)
            if code:
                raise typer.Exit(code)
