"""Checklist item 7 fixed, not only reported: miners on a pool that is not accredited get the
accredited pools written through their firmware's own write path.

With ``[compliance] fix_pools = true`` the job looks at every miner the last poll read. One whose
active pool is not accredited (kuat.quota.pools, the check the report makes) is:

- with ``[quota] enforce = true``: given ``[[compliance.pools]]`` through its handle's
  ``PoolConfigurable.set_pools`` (kuat.collectors.cgminer.handle), which is done only when the
  miner reads back exactly those pools;
- without it (the dry run): named in the log with the pools it would get, once while it stays
  an offender.

Device control happens only with enforcement on. A miner is asked again no sooner than
``RETRY_S`` after a refusal or a failure (the firmware said no: a wrong password is a setting to
fix, not something another try mends), and never again after "unsupported" until the agent
restarts or its firmware changes; each such outcome is logged once, not every cycle. Messages
are in the operator's language (``[agent] language``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kuat.agent.config import KuatConfig
from kuat.agent.i18n import t
from kuat.agent.state import SiteState
from kuat.collectors.capabilities import ActionResult, PoolConfigurable, PoolTarget
from kuat.collectors.cgminer.control import MinerAccess
from kuat.collectors.cgminer.handle import miner_handle
from kuat.collectors.readings import AsicReading
from kuat.quota.pools import check_pools

log = logging.getLogger("kuat.pools")

Address = tuple[str, int]

# After a refusal or a failure, the same miner is asked again no sooner than this.
RETRY_S = 6 * 3600.0
# Pool writes in flight at once: each holds a web or API session and a confirmation re-read.
MAX_PARALLEL = 8
# How long one run may take: a write is confirmed within its backend's confirm_s["pools"] (a
# minute or more where the firmware restarts its mining process to apply pools), and a run may
# queue MAX_PARALLEL deep.
POOL_FIX_BUDGET_S = 300.0


@dataclass(frozen=True, slots=True)
class _Held:
    """Why a miner is left alone for now, and until when (None: for good)."""

    outcome: str
    firmware: str
    until: datetime | None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PoolFixer:
    def __init__(
        self,
        cfg: KuatConfig,
        state: SiteState,
        access: MinerAccess,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        c = cfg.compliance
        self.cfg = cfg
        self.state = state
        self.access = access
        self.clock = clock
        self.enforce = cfg.quota.enforce
        self.lang = cfg.agent.language
        self.targets = tuple(PoolTarget(p.url, p.user, p.password.get()) for p in c.pools)
        # by address, not device id: a stock Antminer's id changes from ip:port to its serial
        # once its identity is fetched, and it is the same miner
        self._held: dict[Address, _Held] = {}
        # when a write was confirmed: a reading from before it still shows the old pool
        self._done_at: dict[Address, datetime] = {}
        self._planned: set[Address] = set()  # dry run: offenders already named in the log
        self.results: list[ActionResult] = []  # every write's outcome, for tests and screens

    @property
    def enabled(self) -> bool:
        return self.cfg.compliance.fix_pools and bool(self.targets)

    def offenders(self) -> list[tuple[AsicReading, str]]:
        """Miners whose active pool is not accredited, with that pool's host (or URL)."""
        c = self.cfg.compliance
        readings = {r.device_id: r for r in self.state.asic_readings()}
        check = check_pools(readings.values(), c.accredited_pools, data_centre_registered=True)
        return [
            (readings[o.device_id], o.pool_host or o.pool_url or "?")
            for o in check.offenders
            if o.pool_url is not None and o.device_id in readings
        ]

    async def run(self) -> None:
        offenders = self.offenders()
        self._planned &= {(r.ip, r.port) for r, _ in offenders}  # back again: named again
        if not self.enforce:
            for r, pool in offenders:
                if (r.ip, r.port) not in self._planned:
                    self._planned.add((r.ip, r.port))
                    self._say(logging.WARNING, "pools_fix_plan", r, pool=pool)
            return
        now = self.clock()
        due = [(r, pool) for r, pool in offenders if self._due(r, now)]
        gate = asyncio.Semaphore(MAX_PARALLEL)

        async def one(r: AsicReading, pool: str) -> None:
            async with gate:
                await self._fix(r, pool)

        await asyncio.gather(*(one(r, p) for r, p in due))

    def _due(self, r: AsicReading, now: datetime) -> bool:
        done_at = self._done_at.get((r.ip, r.port))
        if done_at is not None and r.taken_at <= done_at:
            return False  # written and confirmed since this reading was taken
        held = self._held.get((r.ip, r.port))
        if held is None:
            return True
        # a new firmware may have the write path; a refusal's wait may be over
        new_firmware = held.firmware != (r.firmware_family or "")
        return new_firmware or (held.until is not None and held.until <= now)

    async def _fix(self, r: AsicReading, pool: str) -> None:
        fw = r.firmware_family or ""
        handle = miner_handle(r.ip, r.port, fw, access=self.access)
        if not isinstance(handle, PoolConfigurable):
            self._hold(r, "unsupported", None, "pools_fix_no_path", pool=pool)
            return
        why = t("pools_fix_reason", self.lang).format(pool=pool)
        res = await handle.set_pools(self.pools_for(r), why)
        self.results.append(res)
        if res.outcome == "done":
            self._held.pop((r.ip, r.port), None)
            self._done_at[(r.ip, r.port)] = self.clock()
            self._say(logging.INFO, "pools_fix_done", r, pool=pool, detail=res.detail)
            return
        until = None if res.outcome == "unsupported" else self.clock() + timedelta(seconds=RETRY_S)
        self._hold(r, res.outcome, until, "pools_fix_not_done", pool=pool, detail=res.detail)

    def _hold(
        self, r: AsicReading, outcome: str, until: datetime | None, key: str, **kw: str
    ) -> None:
        """Leave the miner alone until ``until``; say so when this outcome is news."""
        fw = r.firmware_family or ""
        before = self._held.get((r.ip, r.port))
        self._held[(r.ip, r.port)] = _Held(outcome, fw, until)
        if before is not None and (before.outcome, before.firmware) == (outcome, fw):
            return  # the same answer again after its wait: said already
        retry = (
            t("pools_fix_never", self.lang)
            if until is None
            else t("pools_fix_retry", self.lang).format(at=until.strftime("%Y-%m-%d %H:%M UTC"))
        )
        self._say(logging.ERROR, key, r, outcome=outcome, retry=retry, **kw)

    def pools_for(self, r: AsicReading) -> tuple[PoolTarget, ...]:
        """The configured pools with ``{worker}`` in a user replaced by this miner's worker
        name: what follows the first "." of the user it mines under now (so "acct.rack3-07"
        keeps "rack3-07" at the new pool), or its address with "-" for "." when it has none."""
        pool = r.active_pool
        current = (pool.user or "") if pool is not None else ""
        worker = current.partition(".")[2] or r.ip.replace(".", "-").replace(":", "-")
        return tuple(
            PoolTarget(p.url, p.user.replace("{worker}", worker), p.password) for p in self.targets
        )

    def _say(self, level: int, key: str, r: AsicReading, **kw: str) -> None:
        pools = ", ".join(f"{p.url} ({p.user})" for p in self.pools_for(r))
        text = t(key, self.lang).format(
            device=r.device_id, firmware=r.firmware_family or "?", pools=pools, **kw
        )
        log.log(level, "%s", text)
