"""The demo's screen: the agent's own status rows, then the story they tell.

Three rows follow the agent's: what the planner decided (and whether it acts), how the Astana
hour will close against its allocation, and how the meter's figure is made of the miners' and
the overhead's. Times are Astana time (kuat.quota.clock), the time the allocations are sold in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.table import Table
from rich.text import Text

from kuat.agent.demo_text import say
from kuat.agent.i18n import Lang, render, t
from kuat.agent.state import SiteState, StatusSnapshot
from kuat.agent.status import rows
from kuat.collectors.readings import PduReading
from kuat.quota.balance import BalanceState, pdu_power_kw
from kuat.quota.clock import ASTANA
from kuat.quota.curtail import ActionKind, CurtailPlan
from kuat.quota.evaluate import QuotaStatus
from kuat.quota.reasons import Code


def astana(at: datetime, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return at.astimezone(ASTANA).strftime(fmt)


@dataclass
class Story:
    """What the screen remembers between cycles: the planner's last decision that had actions
    (a plan carried out leaves nothing to do in the next ones, but it is the one to show)."""

    enforce: bool
    overhead_fraction: float
    decided: CurtailPlan | None = None
    planned_once: bool = False
    last_hour: QuotaStatus | None = None

    def hour_closed(self, q: QuotaStatus | None, lang: Lang) -> str | None:
        """Once, when a new Astana hour shows: how the one before closed against its
        allocation (its last forecast, made seconds before its end)."""
        if q is None:
            return None
        prev, self.last_hour = self.last_hour, q
        if prev is None or prev.hour_start == q.hour_start:
            return None
        if prev.forecast_kwh is None or prev.allocation_kwh is None:
            return None
        over = prev.margin_kwh is not None and prev.margin_kwh < 0
        return say(
            "hour_closed_over" if over else "hour_closed_inside",
            lang,
            start=astana(prev.hour_start, "%H:%M"),
            end=astana(prev.hour_end, "%H:%M"),
            used=prev.forecast_kwh,
            allocation=prev.allocation_kwh,
            excess=-(prev.margin_kwh or 0.0),
        )

    def note(self, plan: CurtailPlan | None) -> None:
        if plan is None:
            return
        self.planned_once = True
        if plan.actions:
            self.decided = plan

    def plan_text(self, lang: Lang) -> Text:
        p = self.decided
        if p is None:
            key = "plan_idle" if self.planned_once else "plan_none"
            return Text(say(key, lang), style="dim")
        counts = {k: sum(1 for a in p.actions if a.kind == k) for k in ActionKind}
        actions = ", ".join(say(f"act_{k.value}", lang, n=n) for k, n in counts.items() if n)
        kw = sum(a.power_w for a in p.actions) / 1000
        key = "plan_did" if self.enforce else "plan_would"
        text = say(
            key,
            lang,
            time=astana(p.at, "%H:%M:%S"),
            actions=actions,
            kw=kw,
            reason=render(p.reason, lang),
        )
        return Text(text, style="green" if self.enforce else "yellow")

    def rows(self, state: SiteState, lang: Lang) -> list[tuple[str, str | Text]]:
        out: list[tuple[str, str | Text]] = [
            (say("row_mode", lang), say("enforce" if self.enforce else "dry_run", lang)),
            (say("row_plan", lang), self.plan_text(lang)),
        ]
        q = state.quota
        if q is not None and q.allocation_kwh is not None and q.forecast_kwh is not None:
            label = say(
                "row_hour",
                lang,
                start=astana(q.hour_start, "%H:%M"),
                end=astana(q.hour_end, "%H:%M"),
            )
            # the quota's own verdict (its tolerance included), not a rounding of the figures
            if q.margin_kwh is not None and q.margin_kwh < 0:
                value = Text(
                    say(
                        "hour_over",
                        lang,
                        forecast=q.forecast_kwh,
                        allocation=q.allocation_kwh,
                        excess=-q.margin_kwh,
                    ),
                    style="bold red",
                )
            else:
                value = Text(
                    say("hour_inside", lang, forecast=q.forecast_kwh, allocation=q.allocation_kwh),
                    style="green",
                )
            out.append((label, value))
        b = state.balance
        pdus = pdu_power_kw(p for p in state.pdus.values() if isinstance(p, PduReading))
        if b is not None and b.meter_kw is not None and b.miners_kw is not None and pdus:
            overhead = b.miners_kw * self.overhead_fraction
            rest = b.meter_kw - b.miners_kw - pdus - overhead
            text = say(
                "power_sum",
                lang,
                meter=b.meter_kw,
                miners=b.miners_kw,
                overhead=overhead,
                rest=rest,
                pdus=pdus,
            )
            style = "bold red" if b.status is BalanceState.ALARM else "green"
            out.append((say("row_power", lang), Text(text, style=style)))
        if b is not None and b.status in (BalanceState.ALARM, BalanceState.CHECK):
            # why it alarms; the "PDUs not compared" note is how the demo is set up, not news
            why = [r for r in b.reasons if r.code != Code.BALANCE_NO_DATA]
            out.append((t("balance", lang), "; ".join(render(r, lang) for r in why)))
        return out


def title(lang: Lang, cycle: int, at: datetime) -> str:
    return f"{t('title', lang)} — {t('cycle', lang)} {cycle} — {astana(at)} ({say('astana', lang)})"


def render_table(
    s: StatusSnapshot, state: SiteState, story: Story, lang: Lang, cycle: int
) -> Table:
    table = Table(title=title(lang, cycle, s.at), show_header=False, expand=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in [*rows(s, lang), *story.rows(state, lang)]:
        table.add_row(label, value)
    return table


def render_line(s: StatusSnapshot, state: SiteState, story: Story, lang: Lang, cycle: int) -> str:
    parts = [f"{label}: {value}" for label, value in [*rows(s, lang), *story.rows(state, lang)]]
    return f"[{cycle}] {astana(s.at, '%H:%M:%S')} " + " | ".join(parts)
