"""Quota results for the energy company over MQTT v5 (the broker of ``[quota.mqtt]``).

Topics, under ``{prefix}/{site}/`` (default prefix ``kz/quota/v1``, beside the ``schedule`` and
``orders`` topics the company publishes to the farm):

* ``hours`` — each closed Astana hour once, QoS 1, not retained, ``seq`` +1 per hour of the
  site (a gap means lost hours: re-read them with ``kuat report hourly`` or from ``state``).
  Payload: ``uplink/schemas/quota-hour.v1.json``.
* ``state`` — the current hour at a steady rate, QoS 1, retained, with a summary of the last
  closed hour (its ``seq``), so a dashboard that connects late is complete at once.
  Payload: ``uplink/schemas/quota-state.v1.json``.

Both go through their own spool's outbox (``OutboxSender``): a closed hour is queued durably
before it is sent and outlives broker outages and restarts; unsent states are coalesced (only
the newest matters). The newest ``state`` is also kept in the spool's retained table, in the
same transaction as the hour it summarises, so after a restart the publisher knows the last
hour it queued and neither skips nor repeats one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from kuat.uplink.broker import BrokerEndpoint
from kuat.uplink.outbox_sender import OutboxSender
from kuat.uplink.spool import Spool

__all__ = ["HOUR_SCHEMA", "STATE_SCHEMA", "QuotaPublisher"]

HOUR_SCHEMA = "kz.quota.hour.v1"
STATE_SCHEMA = "kz.quota.state.v1"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class QuotaPublisher(OutboxSender):
    """Publishes one site's closed hours and current state; see the module docstring."""

    def __init__(
        self,
        spool: Spool,
        *,
        site: str,
        owner_bin: str,
        broker: BrokerEndpoint | None,
        topic_prefix: str = "kz/quota/v1",
        client_id: str | None = None,
    ) -> None:
        self.site = site
        self.owner_bin = owner_bin
        base = f"{topic_prefix.strip('/')}/{site}"
        self.hours_topic = f"{base}/hours"
        self.state_topic = f"{base}/state"
        self._seq_key = f"quota-hours/{site}"
        self._lock = threading.Lock()
        self._current: dict[str, Any] | None = None
        super().__init__(
            spool,
            broker=broker,
            # Not the endpoint's configured id, which belongs to the schedule receiver on the
            # same broker: two sessions under one id would evict each other.
            client_id=client_id or f"kuat-quota-out-{site}",
            label="quota broker",
        )

    def __repr__(self) -> str:  # never the password
        return f"QuotaPublisher(host={self.host!r}, port={self.port}, topics={self.state_topic!r})"

    def last_state(self) -> dict[str, Any] | None:
        """The newest state queued (restored from the spool after a restart)."""
        raw = self.spool.retained().get(self.state_topic)
        if raw is None:
            return None
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def last_closed(self) -> dict[str, Any] | None:
        state = self.last_state()
        closed = state.get("last_closed") if state else None
        return closed if isinstance(closed, dict) else None

    def _state_payload(self, current: Mapping[str, Any] | None, closed: Any) -> bytes:
        return _json(
            {
                "schema": STATE_SCHEMA,
                "site": self.site,
                "owner_bin": self.owner_bin,
                "current": dict(current) if current is not None else None,
                "last_closed": closed,
            }
        )

    def publish_hour(self, hour: Mapping[str, Any]) -> int:
        """Queue one closed hour (without ``schema``/``seq``/``site``: added here) and the state
        that names it as the last closed hour, in one transaction. Returns its ``seq``."""
        body = {"schema": HOUR_SCHEMA, "site": self.site, "owner_bin": self.owner_bin, **hour}
        with self._lock:

            def state(seq: int) -> bytes:
                closed = {
                    "seq": seq,
                    **{
                        k: hour.get(k)
                        for k in ("date", "hour_ending", "start_utc", "status", "used_kwh")
                    },
                    "allocation_kwh": hour.get("allocation_kwh"),
                }
                return self._state_payload(self._current, closed)

            (seq,) = self.spool.outbox_put_sequenced(
                self._seq_key, self.hours_topic, [body], retained=(self.state_topic, state)
            )
        self.kick()
        return seq

    def publish_state(self, current: Mapping[str, Any] | None) -> None:
        """Queue the current hour's state (coalescing an unsent older one)."""
        with self._lock:
            self._current = dict(current) if current is not None else None
            payload = self._state_payload(self._current, self.last_closed())
            self.spool.outbox_put(self.state_topic, payload, retain=True, coalesce=True)
        self.kick()
