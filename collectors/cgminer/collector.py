"""The ASIC poller: one poll per miner -> AsicReading or DeviceError, never an exception.

The first poll of a miner sends the discovery set (summary+stats+pools+version), detects the
firmware and, if that firmware needs more (LuxOS ``config``/``power``, btminer ``get_miner_info``),
fetches the rest within the same deadline. The family is cached per host:port, so later polls
send exactly the firmware's deduplicated command set; each poll re-checks the family on the replies
it already has, so a re-flashed miner is picked up without a restart.

Identity-only replies a firmware marks ``sticky`` (btminer's get_miner_info: a whole extra
connection for a serial that never changes) are reused for up to STICKY_POLLS polls, and re-read
at once when the live MAC differs or the uptime went backwards: an IP that now answers for another
box must never keep the old box's serial.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from collectors.cgminer.client import DEFAULT_PORT, ApiError, CgminerClient, Replies
from collectors.cgminer.firmware.common import FirmwareSpec
from collectors.cgminer.parsers import DISCOVERY_COMMANDS, SPECS, build_reading, detect_family
from collectors.readings import AsicReading, DeviceError, DeviceKind

AsicResult = AsicReading | DeviceError

# Identity replies (FirmwareSpec.sticky) are re-read at least this often, in polls.
STICKY_POLLS = 30


class _Memo:
    """What the poller remembers about one host:port between polls."""

    __slots__ = ("age", "family", "mac", "sticky", "uptime_s")

    def __init__(self, family: str) -> None:
        self.family = family
        self.sticky: dict[str, dict[str, Any]] = {}
        self.age = 0
        self.mac: str | None = None
        self.uptime_s: int | None = None

    def reusable(self) -> dict[str, dict[str, Any]]:
        return self.sticky if self.age < STICKY_POLLS else {}

    def same_box(self, r: AsicReading) -> bool:
        """False if the reply says this is another miner, or the same one rebooted."""
        if self.mac is not None and r.mac is not None and r.mac != self.mac:
            return False
        return not (
            self.uptime_s is not None and r.uptime_s is not None and r.uptime_s < self.uptime_s
        )

    def after(
        self, r: AsicReading, spec: FirmwareSpec, replies: Replies, *, fetched_sticky: bool
    ) -> None:
        if fetched_sticky:
            self.sticky = {c: b for c in spec.sticky if (b := replies.ok(c)) is not None}
            self.age = 0
        else:
            self.age += 1
        self.mac, self.uptime_s = r.mac, r.uptime_s


class AsicPoller:
    def __init__(
        self,
        *,
        timeout_s: float = 3.0,
        max_reply_bytes: int = 65536,
        concurrency: int = 256,
    ) -> None:
        self.timeout_s = timeout_s
        self.concurrency = max(1, concurrency)
        self.client = CgminerClient(timeout_s=timeout_s, max_reply_bytes=max_reply_bytes)
        self._memo: dict[tuple[str, int], _Memo] = {}
        # shared by every poll_many call, so overlapping cycles (a slow ASIC cycle and a
        # control confirmation, say) still keep at most `concurrency` miners in flight
        self._sem = asyncio.Semaphore(self.concurrency)

    def family_of(self, host: str, port: int = DEFAULT_PORT) -> str | None:
        """The firmware family detected at host:port on an earlier poll, if any."""
        memo = self._memo.get((host, port))
        return memo.family if memo else None

    async def poll(self, host: str, port: int = DEFAULT_PORT) -> AsicResult:
        taken_at = datetime.now(UTC)
        try:
            return await self._poll(host, port, taken_at)
        except ApiError as e:
            return DeviceError(DeviceKind.ASIC, host, port, taken_at, str(e))
        except Exception as e:  # a parser bug must cost one miner, not the cycle
            return DeviceError(
                DeviceKind.ASIC, host, port, taken_at, f"internal error: {type(e).__name__}: {e}"
            )

    async def _poll(self, host: str, port: int, taken_at: datetime) -> AsicReading:
        deadline = self.client.deadline()
        key = (host, port)
        memo = self._memo.get(key)
        spec = SPECS.get(memo.family) if memo else None
        reuse = memo.reusable() if memo else {}
        if spec is None:
            commands: Sequence[str] = DISCOVERY_COMMANDS
        else:
            commands = [c for c in spec.commands if c not in reuse]
        replies = await self.client.query(
            host, port, commands, alone=spec.alone if spec else (), deadline_at=deadline
        )
        family = detect_family(replies.bodies)
        if family is None:
            first = next(iter(replies.errors.values()), "no usable reply")
            raise ApiError(f"miner answered every command with an error ({first})")
        if spec is None or memo is None or family != spec.family:
            memo = self._memo[key] = _Memo(family)
            spec = SPECS[family]
            reuse = {}
        replies.bodies.update(reuse)
        await self._fetch_missing(host, port, spec, replies, deadline)
        if reuse:
            reading = self._reading(host, port, taken_at, spec, replies)
            if memo.same_box(reading):
                memo.after(reading, spec, replies, fetched_sticky=False)
                return reading
            # another box behind this address (or a reboot): identity must be read afresh
            for c in reuse:
                del replies.bodies[c]
            await self._fetch_missing(host, port, spec, replies, deadline)
        reading = self._reading(host, port, taken_at, spec, replies)
        memo.after(reading, spec, replies, fetched_sticky=True)
        return reading

    async def _fetch_missing(
        self, host: str, port: int, spec: FirmwareSpec, replies: Replies, deadline: float
    ) -> None:
        missing = [c for c in spec.commands if c not in replies.bodies]
        if not missing:
            return
        try:
            await self.client.query(
                host, port, missing, alone=spec.alone, deadline_at=deadline, into=replies
            )
        except ApiError as e:
            for c in missing:
                replies.errors.setdefault(c, str(e))

    @staticmethod
    def _reading(
        host: str, port: int, taken_at: datetime, spec: FirmwareSpec, replies: Replies
    ) -> AsicReading:
        wanted = set(spec.commands)
        # discovery commands this firmware does not have are not the miner's fault
        relevant = Replies(
            bodies=replies.bodies,
            errors={c: m for c, m in replies.errors.items() if c in wanted},
        )
        return build_reading(host, port, taken_at, spec, relevant)

    async def poll_many(self, targets: Sequence[tuple[str, int]]) -> list[AsicResult]:
        """Poll all targets, at most ``concurrency`` at a time; results in target order.

        A fixed pool of workers under the poller's semaphore rather than one task per miner: at
        50,000 miners a task each is memory for nothing. A miner's deadline starts when its own
        poll does, not when the cycle does.
        """
        results: list[AsicResult | None] = [None] * len(targets)
        it = iter(enumerate(targets))

        async def worker() -> None:
            for i, (host, port) in it:
                async with self._sem:
                    results[i] = await self.poll(host, port)

        n = min(self.concurrency, len(targets))
        if n:
            await asyncio.gather(*(worker() for _ in range(n)))
        return [r for r in results if r is not None]
