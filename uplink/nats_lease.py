"""The quota controller's lease in a NATS JetStream key-value bucket (the I/O side).

The decisions are in ``kuat.quota.lease``; this module only talks to the bucket:

- the bucket's max age is the lease TTL, so the server itself forgets a lease nobody renews,
  with ``replicas`` copies (3 on a three-node cluster) so one node's death loses nothing;
- taking the lease is a create (the server refuses it while the key exists), renewing it is an
  update that names the revision we wrote last (a compare-and-set: it fails once anyone else
  wrote the key), and a clean shutdown deletes the key on our revision, so another agent takes
  it at its next attempt instead of waiting for the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from kuat.quota.lease import (
    LeaseError,
    LeasePolicy,
    LeaseState,
    Step,
    holder_of,
    lease_value,
    next_step,
    on_conflict,
    on_error,
    on_released,
    on_written,
)

log = logging.getLogger("kuat.uplink.nats_lease")

LEASE_KEY = "controller"

# a server that does not answer, a node going away, a reconnect in progress
_UNREACHABLE = (nats.errors.Error, TimeoutError, OSError)
_NO_HOLDER = (*_UNREACHABLE, LeaseError)


async def open_bucket(js: JetStreamContext, bucket: str, ttl_s: float, replicas: int) -> KeyValue:
    """The lease bucket, made on first use (the same settings by every agent, so a second
    create is a no-op on the server)."""
    return await js.create_key_value(bucket=bucket, ttl=ttl_s, history=1, replicas=replicas)


def raise_if_cancelled() -> None:
    """Python 3.11's ``asyncio.timeout`` can turn a cancellation that lands as it expires into
    a TimeoutError; a loop that catches TimeoutError would then run on after its task was
    cancelled (the agent's stop, a test's crash), and whoever awaits it would wait for ever.
    Call it in every ``except TimeoutError`` of a long-running loop: a pending cancellation
    goes on being one."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class NatsLease:
    """One contender for the site's controller lease. ``step()`` once per ``policy.renew_s``
    (``run()`` does it); ``is_controller()`` says whether this agent may plan the site now."""

    def __init__(
        self,
        kv: KeyValue,
        policy: LeasePolicy,
        *,
        key: str = LEASE_KEY,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.policy = policy
        self.key = key
        self.clock = clock
        self.wall = wall
        self.state = LeaseState()

    def is_controller(self) -> bool:
        return self.state.is_controller(self.clock())

    @property
    def revision(self) -> int | None:
        """Our last revision while we hold the lease: a fencing token that grows with every
        renewal, carried by the caps we publish so a shard can drop a deposed controller's."""
        return self.state.revision if self.is_controller() else None

    async def step(self) -> LeaseState:
        was = self.is_controller()
        value = lease_value(self.policy.agent_id, self.wall(), self.policy.ttl_s)
        sent = self.clock()
        step = next_step(self.state, sent)
        try:
            async with asyncio.timeout(self.policy.renew_s):
                if step is Step.CREATE:
                    revision = await self.kv.create(self.key, value)
                else:
                    revision = await self.kv.update(self.key, value, last=self.state.revision)
                last = await self._last_revision()
            if last is not None and last != revision:
                # Two compare-and-sets on the same revision can both be accepted by a clustered
                # nats-server 2.9 (its check runs before an earlier proposal is applied; seen as
                # two controllers at once in tests/uplink/test_nats_lease.py). Read back through
                # the stream leader: only the write that stands holds the lease.
                holder, seen = await self._holder()
                self.state = on_conflict(self.policy, self.state, self.clock(), holder, seen)
            else:
                self.state = on_written(self.policy, revision, sent)
        except nats.js.errors.KeyWrongLastSequenceError:
            holder, seen = await self._holder()
            self.state = on_conflict(self.policy, self.state, self.clock(), holder, seen)
        except _UNREACHABLE as exc:
            raise_if_cancelled()
            log.debug("lease %s: %s", step.value, exc)
            self.state = on_error(self.state, self.clock())
        if self.is_controller() != was:  # the agent says it to people (agent.cluster, kk/ru/en)
            log.debug("lease %s: controller %s", self.policy.agent_id, self.is_controller())
        return self.state

    async def _last_revision(self) -> int | None:
        """The key's last revision as the stream leader has it (not a replica's direct get)."""
        js = self.kv._js  # nats-py keeps the context and stream there; no public accessor
        msg = await js.get_last_msg(self.kv._stream, f"{self.kv._pre}{self.key}", direct=False)
        return msg.seq

    async def _holder(self) -> tuple[str | None, int | None]:
        """Who holds the key now, at which revision (None, None when it cannot be read)."""
        try:
            async with asyncio.timeout(self.policy.renew_s):
                entry = await self.kv.get(self.key)
            return (holder_of(entry.value) if entry.value else None), entry.revision
        except _NO_HOLDER:
            raise_if_cancelled()
            return None, None

    async def run(self, stop: asyncio.Event) -> None:
        """Step every ``renew_s`` until ``stop`` is set, then give the lease back."""
        while not stop.is_set():
            try:
                await self.step()
            except Exception:  # a surprise must not end the contention for good
                log.exception("lease step failed; retrying at the next renewal")
                self.state = on_error(self.state, self.clock())
            try:
                async with asyncio.timeout(self.policy.renew_s):
                    await stop.wait()
            except TimeoutError:
                raise_if_cancelled()
        await self.release()

    async def release(self) -> None:
        """Delete the key on our revision (only ours: the delete is a compare-and-set too)."""
        revision = self.revision
        self.state = on_released()
        if revision is None:
            return
        try:
            async with asyncio.timeout(self.policy.renew_s):
                await self.kv.delete(self.key, last=revision)
        except _UNREACHABLE as exc:
            log.debug("lease release: %s (it expires on its own)", exc)
