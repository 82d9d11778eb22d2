"""A simulated site for the real agent: the set-up the end-to-end curtailment tests
(tests/e2e/test_hour_simulation.py, test_curtailment.py) and bench/closed_loop.py share, so
they cannot drift apart.

- :class:`SteppedClock`: the fake clock the agent is built with, moved only when told;
- :class:`FollowedMeter`: a substation meter simulator whose registers follow the farm, its
  import counter integrating what the site drew step by step on that clock;
- :func:`schedule_csv` and :func:`agent_toml`: the allocation files and the agent's config
  for a farm simulator and a meter simulator (the keys each test cares about passed in).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol

from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.collectors.readings import AsicReading
from kuat.quota.clock import hour_of
from kuat.quota.schedule import parse_csv

PF = 0.99


class Endpoint(Protocol):
    """Where a simulator listens (a MeterSimulator, or one in another process)."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


VOLTS = 230.0


class SteppedClock:
    """The agent's clock: moves only when told."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, step: timedelta) -> None:
        self.now += step

    def seconds(self) -> float:
        """Epoch seconds, for the farm simulator's apply delays."""
        return self.now.timestamp()


def set_meter(meter: MeterSimulator, p_kw: float, import_kwh: float) -> None:
    """The meter's registers for a balanced three-phase load of ``p_kw``."""
    per_phase = p_kw / 3
    meter.set(
        p_kw=p_kw,
        p_kw_phases=(per_phase, per_phase, per_phase),
        s_kva=p_kw / PF,
        i_a=(per_phase * 1000 / VOLTS,) * 3,
        pf=PF,
        import_kwh=import_kwh,
        demand_kw=p_kw,
    )


@dataclasses.dataclass
class FollowedMeter:
    """The site meter on the fake clock: ``p_kw`` is what the site draws until the next step;
    :meth:`advance` adds that step's energy to the counter, :meth:`publish` shows both."""

    meter: MeterSimulator
    p_kw: float
    import_kwh: float

    def advance(self, step: timedelta) -> None:
        self.import_kwh += self.p_kw * step.total_seconds() / 3600

    def publish(self) -> None:
        set_meter(self.meter, self.p_kw, self.import_kwh)


async def poll_asics_on(agent: Agent, clock: SteppedClock) -> None:
    """The agent's miner job, its readings re-stamped on the fake clock (the poller stamps
    real time, which would put every reading after every fake-clock confirmation)."""
    await agent.poll_asics()
    for key, r in list(agent.state.asics.items()):
        if isinstance(r, AsicReading):
            agent.state.asics[key] = dataclasses.replace(r, taken_at=clock.now)


def operating_days(now: datetime | None = None) -> tuple[date, date]:
    """Today's and tomorrow's Astana operating dates. A test's allocation covers both, as a
    site's would (KOREM sells tomorrow's hours the day before): a run that crosses Astana
    midnight (19:00 UTC) plans in tomorrow's hour 1, and with only today's file it planned
    with no allocation at all (a failure only a run at that minute saw)."""
    today, _ = hour_of(now or datetime.now(UTC))
    return today, today + timedelta(days=1)


def write_day_files(directory: Path, mwh: str, now: datetime | None = None) -> None:
    """Today's and tomorrow's allocation (``operating_days``) in the short format
    (``date,hour,mwh``), ``mwh`` every hour: a file a day, as the parser takes one day a file."""
    for day in operating_days(now):
        rows = "".join(f"{day.isoformat()},{h},{mwh}\n" for h in range(1, 25))
        text = f"date,hour,mwh\n{rows}"
        # refused, the file would leave the test planning with no allocation, silently
        parse_csv(text, site="any")
        (directory / f"{day.isoformat()}.csv").write_text(text)


def schedule_csv(site: str, day: date, kwh_by_hour: Mapping[int, float], version: int = 1) -> str:
    """A day's allocation file (kWh per Astana hour ending; hours left out get none)."""
    rows = [
        f"{site},{day.isoformat()},grid,{version},{h},{kwh_by_hour.get(h, 0.0) / 1000:.6f}"
        for h in range(1, 25)
    ]
    return "site,date,source,version,hour,mwh\n" + "\n".join(rows) + "\n"


def agent_toml(
    *,
    site: str,
    state_dir: Path,
    farm: AsicFarmSimulator | None = None,
    meter: Endpoint,
    quota: Mapping[str, object],
    intervals: Mapping[str, float] | None = None,
    asic: Mapping[str, object] | None = None,
    language: str = "en",
    hosts: Sequence[str] = (),
) -> str:
    """The agent's config: the farm's miners (or ``hosts`` entries: addresses, a-b ranges) in
    one group, the meter as the site meter, the given ``[quota]``, ``[intervals]`` and extra
    ``[asic]`` keys, no dashboard."""

    def keys(values: Mapping[str, object]) -> str:
        return "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())

    entries = [*(ip for ip, _ in (farm.targets if farm else [])), *hosts]
    hosts_list = ", ".join(f'"{h}"' for h in entries)
    return f"""
[site]
id = "{site}"
[agent]
state_dir = "{state_dir}"
language = "{language}"
[intervals]
{keys(intervals or {})}[asic]
{keys({"timeout_s": 2, **(asic or {})})}[[asic.groups]]
hosts = [{hosts_list}]
[[meter]]
name = "substation"
host = "{meter.host}"
port = {meter.port}
role = "site"
[quota]
{keys(quota)}[dashboard]
listen = ""
"""


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | Path):
        return f'"{v}"'
    if isinstance(v, Mapping):  # an inline table, e.g. [asic] credentials
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    return str(v)
