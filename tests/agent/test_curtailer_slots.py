"""A cut of more miners than there are command slots reaches every miner as fast as the
commands are written: a slot is freed when its miner's command is written, not when the
miner confirms it nor a fixed while later.

A Whatsminer takes 20 s to act on a power limit and a stock Antminer 15 s on a sleep; the
agent confirms each by reading the miner back. Before, a slot was held until the command's
call returned or 1 s passed (the call sends and then confirms), so with 40 miners to cut the
33rd command left 1 s after the first 32 — on the benchmark's accelerated clock that was 10-16
s, and a second cut's commands queued behind them (its power reached the allowed 5-15 s past
one meter interval plus the apply time)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kuat.agent import curtailment
from kuat.agent.curtailment import MAX_PARALLEL_ACTIONS
from kuat.collectors.capabilities import ActionResult
from kuat.collectors.cgminer.firmware import Firmware
from tests.agent.test_curtailer_steps import DRAW_W, NOW, status, whatsminers

MINERS = MAX_PARALLEL_ACTIONS + 8


@dataclass
class Farm:
    written: list[str] = field(default_factory=list)  # each command as the miner got it
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)  # the miners show it


@dataclass(frozen=True)
class SlowMiner:
    """A miner that answers a command at once and shows it only when the test says so."""

    host: str
    port: int
    firmware: Firmware
    farm: Farm
    confirm_s: float | None = None
    sent: Callable[[], None] | None = None

    def confirm_for(self, verb: str) -> float:
        return 60.0

    async def _do(self, what: str) -> ActionResult:
        self.farm.written.append(f"{what} {self.host}")
        if self.sent is not None:
            self.sent()
        await self.farm.confirmed.wait()
        return ActionResult(f"{self.host}:{self.port}", what, "done")

    async def sleep(self, reason: str) -> ActionResult:
        return await self._do("sleep")

    async def wake(self, reason: str) -> ActionResult:
        return await self._do("wake")

    async def set_power_limit(self, watts: int, reason: str) -> ActionResult:
        return await self._do("limit")


async def test_every_command_of_a_large_cut_is_sent_before_any_miner_confirms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    farm = Farm()

    def handle(host: str, port: int, firmware: str, **_: object) -> SlowMiner:
        return SlowMiner(host, port, Firmware(firmware), farm)

    monkeypatch.setattr(curtailment, "miner_handle", handle)
    quota = "enforce = true\nhysteresis_kw = 2\nmin_on_s = 0\nmin_off_s = 0"
    c = whatsminers(tmp_path, quota, MINERS)
    load = MINERS * DRAW_W / 1000
    c.run(status(load, 0.1 * load), NOW)  # a deep cut: more miners than slots
    p = c.last_plan
    assert p is not None and len(p.actions) > MAX_PARALLEL_ACTIONS
    cut = len(p.actions)
    try:
        # no time passes: the loop only runs what is ready (each command is written at once)
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(farm.written) == cut, (
            f"{len(farm.written)} of {cut} commands sent; the rest wait for a slot"
        )
    finally:
        farm.confirmed.set()
        await c.wait()
    assert [r.outcome for r in c.results] == ["done"] * cut
