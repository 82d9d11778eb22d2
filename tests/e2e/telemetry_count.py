"""Counting telemetry end to end: every asic point an agent hands to its spool, against what
the database stores and what still waits in the spool (nothing lost, nothing twice)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kuat.agent.runtime import Agent
    from tests.servers import VictoriaMetrics

_DEVICE = re.compile(r",device=((?:[^,\\ ]|\\.)+)")


def asic_points(lines: Sequence[str]) -> list[tuple[str, int]]:
    """(device, timestamp in ms) of each asic line."""
    points = []
    for line in lines:
        if line.startswith("asic,"):
            device = _DEVICE.search(line)
            assert device is not None
            points.append((device.group(1), int(line.rsplit(" ", 1)[1]) // 10**6))
    return points


def capture_asic_points(agent: Agent) -> dict[str, set[int]]:
    """Every asic point the agent hands to its spool: device -> timestamps (ms)."""
    sent: dict[str, set[int]] = {}
    record_lines = agent.uplinks.record_lines

    def spy(lines: Sequence[str]) -> None:
        for device, ms in asic_points(lines):
            sent.setdefault(device, set()).add(ms)
        record_lines(lines)

    agent.uplinks.record_lines = spy  # type: ignore[method-assign]
    return sent


def series_by_device(vm: VictoriaMetrics, metric: str, match: str = "") -> dict[str, dict]:
    """``metric``'s stored series, one per device (``match``: more label filters, ``a="b"``)."""
    sel = f'__name__="{metric}"' + (f",{match}" if match else "")
    return {s["metric"]["device"]: s for s in vm.export(f"{{{sel}}}")}
