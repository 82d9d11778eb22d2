"""Operator alerts for the faults miners' firmware reports (``AsicReading.faults``).

Every miner poll hands its readings here. A fault (miner and code) that was not there on that
miner's previous reading is logged once, in the operator's language (``[agent] language``), at
a level that follows its severity, and counted; one that is gone is logged once as cleared. A
miner that did not answer keeps the faults it last reported: a missed poll clears nothing, so
a flapping network does not repeat every alert.

``/metrics`` (agent.dashboard) exports what is active now (``kuat_miner_faults``, by severity)
and what appeared since the start (``kuat_miner_faults_raised_total``); the alert rules in
config/alerts/kuat.rules.yml fire on them. Per-severity counts, not per-miner series: 50,000
miners would be 50,000 series; the log line and the status page name the miner.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from kuat.agent.i18n import Lang, t
from kuat.collectors.readings import AsicReading, FaultSeverity, FirmwareFault, PollResult

if TYPE_CHECKING:
    from prometheus_client.core import Metric

log = logging.getLogger("kuat.faults")

SEVERITIES: tuple[FaultSeverity, ...] = ("critical", "warning", "info")
_LEVEL = {"critical": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}
Address = tuple[str, int]


class FaultWatch:
    def __init__(self, lang: Lang) -> None:
        self.lang = lang
        self._active: dict[Address, dict[str, FirmwareFault]] = {}
        self.raised: Counter[str] = Counter()  # faults that appeared, by severity

    def observe(self, results: Iterable[PollResult]) -> None:
        for r in results:
            if isinstance(r, AsicReading):
                self._miner(r)

    def _miner(self, r: AsicReading) -> None:
        key = (r.ip, r.port)
        before = self._active.get(key, {})
        now = {f.code: f for f in r.faults}
        if not now and not before:
            return  # the common case, kept cheap: a healthy miner that was healthy
        for code, f in now.items():
            if code not in before:
                self.raised[f.severity] += 1
                self._say(_LEVEL.get(f.severity, logging.INFO), "fault_raised", r, f)
        for code, f in before.items():
            if code not in now:
                self._say(logging.INFO, "fault_cleared", r, f)
        if now:
            self._active[key] = now
        else:
            self._active.pop(key, None)

    def _say(self, level: int, key: str, r: AsicReading, f: FirmwareFault) -> None:
        text = t(key, self.lang).format(
            device=r.device_id,
            model=r.model or r.firmware_family or "?",
            code=f.code,
            text=f.text,
            severity=t(f"severity_{f.severity}", self.lang),
        )
        log.log(level, "%s", text)

    def active(self) -> Counter[str]:
        """Faults reported now, by severity."""
        out: Counter[str] = Counter()
        for faults in self._active.values():
            for f in faults.values():
                out[f.severity] += 1
        return out

    def metrics(self) -> Iterator[Metric]:
        # asked by the dashboard's /metrics only: an agent without it needs no prometheus_client
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        active = self.active()
        gauge = GaugeMetricFamily(
            "kuat_miner_faults",
            "Faults the miners' firmware reports now, by severity",
            labels=["severity"],
        )
        raised = CounterMetricFamily(
            "kuat_miner_faults_raised",
            "Miner faults that appeared since the agent started, by severity",
            labels=["severity"],
        )
        for s in SEVERITIES:  # every severity, 0 included: a rule sees the series exist
            gauge.add_metric([s], active[s])
            raised.add_metric([s], self.raised[s])
        yield gauge
        yield raised
