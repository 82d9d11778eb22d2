"""Backpressure on the miner polls: fewer in flight while the event loop runs late.

Every poll costs the loop some CPU (connect, parse, encode). When more polls are in flight than
the process keeps up with, the loop wakes late: timers fire late, polls that would have
answered in time time out (work done for nothing), a site-meter reading waits behind them (the
curtailment decision with it), and the replies, buffers and half-read connections in flight
pile up in memory. The gate bounds the miner polls started but not finished by a window that
follows the loop's lag, as TCP's congestion window follows loss: it starts at ``START_WINDOW``
(not at the poller's concurrency: a cycle that starts every poll at once, the first one, would
open thousands of connections before the first lag sample), widens by an eighth per sample
under ``LAG_LOW_S``, halves when a sample exceeds ``LAG_HIGH_S``, never under ``MIN_WINDOW``
nor over the poller's concurrency. A cycle may then not finish in its interval (the job's
budget cuts it, and the unpolled miners are read next cycle); the loop, and everything else the
agent does on it, stays on time.

The control side is not gated: a curtailment command and its confirmation re-read go through
the poller's own limit only (``AsicPoller.guarded_poll``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

# A lag sample: the overshoot of a sleep this long.
SAMPLE_S = 0.05
# Over this, the window halves (at most once per SAMPLE_S); under LAG_LOW_S it widens by one.
LAG_HIGH_S = 0.05
LAG_LOW_S = 0.01
MIN_WINDOW = 8
START_WINDOW = 64


class PollGate:
    """The window of miner polls in flight (see the module docstring).

    ``observe(lag_s)`` feeds a lag sample; ``admit()`` is an async context manager a poll
    holds while it runs. The sampler is :meth:`watch`, a task the agent runs beside its jobs.
    """

    def __init__(self, ceiling: int, *, floor: int = MIN_WINDOW, start: int = START_WINDOW) -> None:
        self.ceiling = max(1, ceiling)
        self.floor = max(1, min(floor, self.ceiling))
        self.window = max(self.floor, min(start, self.ceiling))
        self.in_flight = 0
        self.narrowed = 0  # how many times the window was halved (bench, /metrics)
        self.last_lag_s = 0.0  # the latest lag sample (/metrics)
        self._waiting: deque[asyncio.Future[None]] = deque()
        # work that can wait (background identity reads): admitted only when no poll waits
        self._background: deque[asyncio.Future[None]] = deque()

    def observe(self, lag_s: float) -> None:
        """One lag sample: narrow or widen the window."""
        self.last_lag_s = lag_s
        if lag_s > LAG_HIGH_S:
            new = max(self.floor, self.window // 2)
            if new < self.window:
                self.narrowed += 1
            self.window = new
        elif lag_s < LAG_LOW_S and self.window < self.ceiling:
            self.window = min(self.ceiling, self.window + max(1, self.window // 8))
            self._wake()

    def _wake(self) -> None:
        room = self.window - self.in_flight
        for queue in (self._waiting, self._background):  # polls first
            while room > 0 and queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)
                    room -= 1

    def admit(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold a place in the window for one poll (waits while the window is full)."""
        return self._place(self._waiting, background=False)

    def admit_background(self) -> contextlib.AbstractAsyncContextManager[None]:
        """A place for work that can wait (a miner's background identity read): only while no
        poll waits for one. In a first cycle, whose polls all wait for the window at once,
        those reads took as much of the agent's CPU as the polls (py-spy at 50,000 miners) and
        the cycle did not finish in its interval; they now follow its polls."""
        return self._place(self._background, background=True)

    @contextlib.asynccontextmanager
    async def _place(
        self, queue: deque[asyncio.Future[None]], *, background: bool
    ) -> AsyncIterator[None]:
        while self.in_flight >= self.window or (background and self._waiting):
            fut = asyncio.get_running_loop().create_future()
            queue.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake()  # the place it was woken for goes to the next one
                raise
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._wake()

    async def watch(self) -> None:
        """Sample the loop's lag every ``SAMPLE_S`` and feed it to the window, forever."""
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(SAMPLE_S)
            self.observe(loop.time() - t0 - SAMPLE_S)
