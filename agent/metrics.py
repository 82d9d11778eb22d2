"""What the agent serves on /metrics (Prometheus text format).

Conventions (https://prometheus.io/docs/practices/naming/): base units in the name (watts,
joules, hashes per second, seconds), one quantity per metric name — the quota's energy used,
its allocation and its forecast are three names, not one name with a ``kind`` label, so a sum or
a ratio never mixes them — counters end in ``_total``, and state sets are a 1 for the state a
thing is in. Quota and curtailment gauges carry the energy ``source`` the hour's allocation is
for. A value kuat does not know is left out rather than reported as 0.

Besides kuat's own: ``kuat_build_info`` (the version, as a label) and the client library's
process and platform metrics (CPU seconds, resident memory, open files, start time).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from kuat.agent.dashboard_curtail import curtailment_view
from kuat.collectors.readings import DeviceError

if TYPE_CHECKING:
    from kuat.agent.dashboard import View
    from kuat.agent.runtime import Agent

__all__ = ["AgentCollector", "metrics_text"]

KWH_J = 3.6e6  # joules in a kilowatt-hour
THS_HS = 1e12  # hashes per second in a terahash per second


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kuat")
    except PackageNotFoundError:
        return "unknown"


def _gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=value)


class AgentCollector(Collector):
    """One scrape's view of the agent (see the module docstring)."""

    def __init__(self, view: View, agent: Agent) -> None:
        self.view = view
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("kuat_build", "The kuat build serving this scrape")
        info.add_metric([], {"version": _version(), "python": platform.python_version()})
        yield info
        yield from self._fleet()
        yield from self._quota()
        yield from self._curtailment()
        yield from self._checks()
        yield from self._devices()
        yield from self.agent.faults.metrics()
        yield from self._uplink()
        yield from self._jobs()
        yield from self._backpressure()

    def _fleet(self) -> Iterator[Metric]:
        s = self.view.snap
        miners = GaugeMetricFamily("kuat_miners", "Miners by state", labels=["state"])
        miners.add_metric(["up"], s.miners_up)
        miners.add_metric(["sleeping"], s.miners_sleeping)
        miners.add_metric(["total"], s.miners_total)
        yield miners
        yield GaugeMetricFamily(
            "kuat_miners_hashrate_hashes_per_second",
            "Hashrate of the miners that are up",
            value=s.hashrate_ths * THS_HS,
        )
        yield from _gauge(
            "kuat_miners_power_watts", "Power the miners report, summed", s.miners_power_w
        )
        yield from _gauge("kuat_pdus_power_watts", "Power the PDUs measure, summed", s.pdu_power_w)
        yield from _gauge(
            "kuat_meter_power_watts",
            "Power the site meter measures",
            None if s.metered_kw is None else s.metered_kw * 1000,
        )

    def _quota(self) -> Iterator[Metric]:
        q = self.agent.state.quota  # quota.evaluate.QuotaStatus of this Astana hour
        if q is None:
            return
        source = q.source.value
        for name, doc, value, scale in (
            ("kuat_quota_used_joules", "Energy used this Astana hour", q.used_kwh, KWH_J),
            ("kuat_quota_allocation_joules", "This hour's allocation", q.allocation_kwh, KWH_J),
            (
                "kuat_quota_forecast_joules",
                "Energy at the end of this hour at the present pace",
                q.forecast_kwh,
                KWH_J,
            ),
            (
                "kuat_quota_remaining_joules",
                "Allocation minus energy used (negative once over)",
                q.remaining_kwh,
                KWH_J,
            ),
            (
                "kuat_quota_allowed_power_watts",
                "Mean power for the rest of the hour that lands on the allocation",
                q.allowed_kw,
                1000.0,
            ),
        ):
            if value is not None:
                family = GaugeMetricFamily(name, doc, labels=["source"])
                family.add_metric([source], value * scale)
                yield family
        status = GaugeMetricFamily(
            "kuat_quota_status", "The hour's quota status (1 for the one it is in)",
            labels=["source", "status"],
        )  # fmt: skip
        status.add_metric([source, q.status.value], 1)
        yield status

    def _curtailment(self) -> Iterator[Metric]:
        view = curtailment_view(self.agent.curtailer)
        q = self.agent.state.quota
        source = q.source.value if q is not None else "unknown"
        mode = "enforce" if view.enforce else "dry_run"
        plan = view.plan
        if plan is not None:
            for name, doc, value in (
                ("kuat_curtail_allowed_power_watts", "Power the plan aims at", plan.allowed_kw),
                ("kuat_curtail_load_watts", "Load the plan started from", plan.load_kw),
                ("kuat_curtail_planned_load_watts", "Load after the plan", plan.planned_load_kw),
            ):
                if value is not None:
                    family = GaugeMetricFamily(name, doc, labels=["source", "mode"])
                    family.add_metric([source, mode], value * 1000)
                    yield family
            actions = GaugeMetricFamily(
                "kuat_curtail_planned_actions", "Actions in the current plan, by verb",
                labels=["source", "mode", "action"],
            )  # fmt: skip
            counts: dict[str, int] = {}
            for a in plan.actions:
                counts[a.kind.value] = counts.get(a.kind.value, 0) + 1
            for verb, n in sorted(counts.items()):
                actions.add_metric([source, mode, verb], n)
            yield actions
        held = GaugeMetricFamily(
            "kuat_curtail_miners", "Miners kuat holds curtailed, by how",
            labels=["source", "mode", "state"],
        )  # fmt: skip
        states = {"asleep": 0, "limited": 0, "outlet_off": 0}
        for r in view.records.values():
            if r.outlet_off:
                states["outlet_off"] += 1
            elif r.limit_w is not None:
                states["limited"] += 1
            elif r.switched_at is not None:
                states["asleep"] += 1
        for state, n in states.items():
            held.add_metric([source, mode, state], n)
        yield held

    def _checks(self) -> Iterator[Metric]:
        s = self.view.snap
        checks = GaugeMetricFamily(
            "kuat_check_status",
            "Current status of each check (1 for the status it is in)",
            labels=["check", "status"],
        )
        for check, status in (
            ("quota", s.quota_status),
            ("grid", s.grid_status),
            ("pools", s.pools_status),
            ("balance", s.balance_status),
        ):
            if status is not None:
                checks.add_metric([check, status], 1)
        yield checks
        yield GaugeMetricFamily(
            "kuat_pool_offenders", "Miners off an accredited pool", value=s.pools_offenders
        )

    def _devices(self) -> Iterator[Metric]:
        s = self.view.snap
        yield GaugeMetricFamily(
            "kuat_devices_down", "Devices whose last poll failed", value=s.devices_down
        )
        up = GaugeMetricFamily(
            "kuat_device_up", "1 when the device's last poll answered, 0 when it failed",
            labels=["kind", "device"],
        )  # fmt: skip
        # device: a miner's ip:port (its serial may not be known while it is down), a PDU's or
        # meter's name in the config — the same label whether the device answers or not
        state = self.agent.state
        for (ip, port), r in list(state.asics.items()):
            up.add_metric(["asic", f"{ip}:{port}"], 0 if isinstance(r, DeviceError) else 1)
        for name, p in list(state.pdus.items()):
            up.add_metric(["pdu", name], 0 if isinstance(p, DeviceError) else 1)
        for name, m in list(state.meters.items()):
            up.add_metric(["meter", name], 0 if isinstance(m, DeviceError) else 1)
        yield up

    def _uplink(self) -> Iterator[Metric]:
        s, c = self.view.snap, self.view.spool
        yield GaugeMetricFamily(
            "kuat_spool_pending_lines", "Telemetry lines waiting to be sent", value=s.spool_pending
        )
        yield GaugeMetricFamily(
            "kuat_outbox_pending_messages",
            "Register messages waiting for the broker's PUBACK",
            value=s.outbox_pending,
        )
        yield CounterMetricFamily(
            "kuat_telemetry_sent_lines",
            "Telemetry lines the database accepted since the agent started",
            value=self.agent.telemetry_sent,
        )
        yield CounterMetricFamily(
            "kuat_telemetry_dead_lettered_lines",
            "Telemetry lines the database refused (dead-lettered) since the agent started",
            value=self.agent.telemetry_dead_lettered,
        )
        yield CounterMetricFamily(
            "kuat_spool_dropped_lines",
            "Telemetry lines dropped by the spool cap since the spool was created",
            value=c.dropped,
        )
        yield GaugeMetricFamily(
            "kuat_spool_dead_lines", "Dead-lettered telemetry lines kept for inspection", c.dead
        )
        yield GaugeMetricFamily(
            "kuat_outbox_dead_messages", "Register messages the broker refused", c.outbox_dead
        )
        yield GaugeMetricFamily(
            "kuat_spool_quarantined_files",
            "Damaged spool files moved aside at start, waiting for `kuat spool salvage`",
            value=c.quarantined,
        )
        yield GaugeMetricFamily(
            "kuat_spool_disk_full",
            "1 while the spool's disk is full and the oldest lines make room for new ones",
            value=int(c.disk_full),
        )

    def _backpressure(self) -> Iterator[Metric]:
        """The poll window (kuat.agent.backpressure): a window held far under the poller's
        concurrency, or halved often, means the agent's event loop runs late under its polls."""
        gate = self.agent.poll_gate
        gauges = (
            ("kuat_event_loop_lag_seconds", "How late the event loop woke at its latest sample"),
            ("kuat_poll_window", "Miner polls allowed in flight at once now"),
            ("kuat_poll_window_ceiling", "The poller's concurrency: the widest the window opens"),
            ("kuat_polls_in_flight", "Miner polls started and not finished"),
        )
        values = (gate.last_lag_s, gate.window, gate.ceiling, gate.in_flight)
        for (name, doc), value in zip(gauges, values, strict=True):
            yield GaugeMetricFamily(name, doc, value=value)
        yield CounterMetricFamily(
            "kuat_poll_window_narrowed",
            "Times the poll window was halved because the event loop ran late, since start",
            value=gate.narrowed,
        )

    def _jobs(self) -> Iterator[Metric]:
        last = GaugeMetricFamily(
            "kuat_job_last_success_timestamp_seconds",
            "When each job last completed without error (Unix time)",
            labels=["job"],
        )
        cycles = CounterMetricFamily(
            "kuat_job_cycles", "Runs of each job since start, failed ones included", labels=["job"]
        )
        failures = CounterMetricFamily(
            "kuat_job_failures",
            "Runs of each job that failed or overran since start",
            labels=["job"],
        )
        for j in self.view.jobs:
            if j.last_success is not None:
                last.add_metric([j.name], j.last_success.timestamp())
            cycles.add_metric([j.name], j.cycles)
            failures.add_metric([j.name], self.agent.job_failures.get(j.name, 0))
        yield last
        yield cycles
        yield failures


def metrics_text(agent: Agent, view: View) -> bytes:
    # A registry per scrape: the collector holds this scrape's view, nothing is shared. The
    # process and platform collectors read /proc of this process when scraped.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(view, agent))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return generate_latest(registry)
