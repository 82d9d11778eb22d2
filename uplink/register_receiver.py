"""A reference receiver for the register contract (README, "The register contract").

What a register back-end does with the messages kuat publishes, small enough to port to any
language. Two layers:

* ``RegisterView`` / ``SiteView`` — pure: apply one message (topic + bytes) and say what
  happened. Per site it keeps the last applied ``seq``, the ids of recent events, the miners
  and the agent's status. The rules are the README's:

  - an event whose ``id`` was seen is a QoS 1 duplicate: dropped;
  - an event whose ``seq`` is at or below the last applied one is stale: dropped;
  - the next ``seq`` is applied (each event carries the miner's state after the change);
  - a ``seq`` that skips ahead means lost events: the site is marked *in a gap*, the event is
    held, and the view waits for the retained ``inventory`` (whose ``seq`` is the last event it
    reflects) — it adopts it, then applies the held events that follow it without a hole;
  - an ``inventory`` at or after the last applied ``seq`` replaces the site's miners (it also
    carries run state and last-seen times that are not events); an older one is ignored;
  - the ``seq``s a hole skipped (and those an inventory jumped over) are *missing*: the view
    lists them (``to_ask``) until each arrives, for the receiver to ask the agent to replay
    them from its durable history (``kuat.uplink.register_replay``); a replayed event is
    stale by then, so it only completes the event history.

* a site split across agents publishes one stream per agent (``{site}/agent/{agent_id}/…``),
  each followed by its own ``SiteView`` with the rules above; ``SiteMerge``
  (``uplink/register_merge.py``) merges a site's streams into one site view, where a miner
  that moved from one agent's shard to another's is one miner with one ``moved`` change.
  Every applied message reports the site-level changes it made (``Applied.changes``).

* ``RegisterReceiver`` — paho-mqtt v5 with a persistent session (``clean_start=False`` and a
  session expiry), subscribed to ``{prefix}/+/+/#``. The view is saved to a JSON file
  (atomic rename, fsync) inside the message callback, before paho sends the PUBACK: a crash
  after the save and before the PUBACK is a redelivery, which the ``id`` rule drops. On a gap it
  subscribes to that site's ``inventory`` topic again, which makes the broker send the retained
  copy at once instead of at the agent's next inventory run; and it publishes a replay request
  for the missing events on the stream's ``replay`` topic: at once for a new hole, and again
  (at most ``MAX_ASKS`` times) at each later inventory while some are still missing.

Malformed messages (not JSON, wrong fields) raise ``ReceiverError`` from the pure layer; the
client counts and logs them and goes on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from kuat.collectors.errors import KuatError
from kuat.uplink.broker import BrokerEndpoint
from kuat.uplink.inventory import EVENT_SCHEMA, INVENTORY_SCHEMA, STATUS_SCHEMA
from kuat.uplink.paho_client import Session, paho_client
from kuat.uplink.register_merge import SiteMerge
from kuat.uplink.register_replay import ranges, replay_payload

__all__ = ["Applied", "Outcome", "ReceiverError", "RegisterReceiver", "RegisterView", "SiteView"]

log = logging.getLogger(__name__)

Outcome = Literal[
    "applied",  # the next event, applied
    "duplicate",  # an event id already seen (QoS 1 redelivery)
    "stale",  # an event at or below the last applied seq
    "gap",  # an event past a hole: held until an inventory covers the hole
    "held",  # an event before any inventory: held until one says where the site stands
    "rebuilt",  # an inventory adopted (and held events after it applied)
    "ignored",  # an inventory older than what the view already reflects
    "status",  # the agent's online/offline status
    "cleared",  # an empty retained inventory: the stream is gone (its miners leave the site)
    "request",  # a replay request (a register's own, seen through the wildcard): not applied
]
_EVENT_TYPES = frozenset({"added", "removed", "moved", "changed"})
RECENT_IDS = 10_000  # event ids remembered per site for deduplication
MAX_MISSING = 10_000  # missing seqs tracked per stream (the latest ones when more)
MAX_ASKS = 5  # replay requests per missing seq (its agent may no longer keep it)


class ReceiverError(KuatError, ValueError):
    """A message the receiver cannot apply (not JSON, not the contract's shape)."""


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise ReceiverError(what)


def _seq_of(body: Mapping[str, Any], what: str) -> int:
    seq = body.get("seq")
    if type(seq) is not int or seq < 0:  # bool is not a seq, though it is an int
        raise ReceiverError(f"{what}: 'seq' must be a non-negative integer")
    return seq


@dataclass
class SiteView:
    """The register's picture of one site, built only from kuat's messages."""

    owner_bin: str
    site: str
    agent_id: str | None = None  # the publishing agent of a split site; None: the site's stream
    seq: int | None = None  # last event applied (directly or through an inventory)
    miners: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_gap: bool = False
    held: dict[int, dict[str, Any]] = field(default_factory=dict)  # events past the hole
    recent_ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    status: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    # seqs known missing -> replay requests made for each so far
    missing: dict[int, int] = field(default_factory=dict)

    def _count(self, outcome: Outcome) -> Outcome:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        return outcome

    def _remember(self, event_id: str) -> None:
        self.recent_ids[event_id] = None
        while len(self.recent_ids) > RECENT_IDS:
            self.recent_ids.popitem(last=False)

    def _apply(self, body: Mapping[str, Any]) -> None:
        miner_id = body["miner_id"]
        if body["type"] == "removed":
            self.miners.pop(miner_id, None)
        else:  # added, moved, changed: the event carries the miner after the change
            self.miners[miner_id] = dict(body["miner"])
        self.seq = body["seq"]

    def on_event(self, body: Mapping[str, Any]) -> Outcome:
        _require(body.get("schema") == EVENT_SCHEMA, f"event: schema is not {EVENT_SCHEMA}")
        seq = _seq_of(body, "event")
        event_id = body.get("id")
        _require(isinstance(event_id, str) and bool(event_id), "event: 'id' missing")
        _require(body.get("type") in _EVENT_TYPES, "event: unknown 'type'")
        _require(isinstance(body.get("miner_id"), str), "event: 'miner_id' missing")
        _require(isinstance(body.get("miner"), dict), "event: 'miner' missing")
        assert isinstance(event_id, str)
        if event_id in self.recent_ids:
            return self._count("duplicate")
        self.missing.pop(seq, None)
        if self.seq is not None and seq <= self.seq:
            self._remember(event_id)
            return self._count("stale")
        self._remember(event_id)
        if self.seq is None and seq == 1:
            self.seq = 0  # the site's very first event: nothing came before it
        if self.seq is None or seq > self.seq + 1 or self.in_gap:
            # No baseline yet, or a hole: hold it until an inventory says where we stand.
            first = self.seq is None
            self.in_gap = True
            self.held[seq] = dict(body)
            if self.seq is not None:
                self._note_missing(self.seq + 1, seq - 1)
            return self._count("held" if first else "gap")
        self._apply(body)
        return self._count("applied")

    def on_inventory(self, body: Mapping[str, Any]) -> Outcome:
        _require(
            body.get("schema") == INVENTORY_SCHEMA, f"inventory: schema is not {INVENTORY_SCHEMA}"
        )
        seq = _seq_of(body, "inventory")
        miners = body.get("miners")
        _require(isinstance(miners, list), "inventory: 'miners' must be a list")
        assert isinstance(miners, list)
        for m in miners:
            _require(isinstance(m, dict) and isinstance(m.get("id"), str), "inventory: miner id")
        if self.seq is not None and seq < self.seq:
            return self._count("ignored")
        if self.seq is not None:
            # events up to the inventory's seq that never came (they are not held either)
            self._note_missing(self.seq + 1, seq)
        self.miners = {m["id"]: dict(m) for m in miners}
        self.seq = seq
        # Events held past a hole: those the inventory already reflects are dropped, the ones
        # right after it are applied in order; a hole remaining keeps the site waiting.
        for s in sorted(self.held):
            if s <= seq:
                del self.held[s]
        while (self.seq + 1) in self.held:
            self._apply(self.held.pop(self.seq + 1))
        self.in_gap = bool(self.held)
        return self._count("rebuilt")

    def _note_missing(self, first: int, last: int) -> None:
        """Seqs ``first``..``last`` that neither arrived nor are held are missing."""
        first = max(first, last - MAX_MISSING + 1)
        for s in range(first, last + 1):
            if s not in self.held:
                self.missing.setdefault(s, 0)
        if len(self.missing) > MAX_MISSING:
            for s in sorted(self.missing)[: len(self.missing) - MAX_MISSING]:
                del self.missing[s]

    def to_ask(self, again: bool) -> list[tuple[int, int]]:
        """The missing seqs to ask a replay of now, as runs: those never asked, and with
        ``again`` (an inventory came) those asked fewer than ``MAX_ASKS`` times. Counts the
        asks."""
        due = [s for s, n in self.missing.items() if n == 0 or (again and n < MAX_ASKS)]
        for s in due:
            self.missing[s] += 1
        return ranges(due)

    def on_status(self, body: Mapping[str, Any]) -> Outcome:
        _require(body.get("schema") == STATUS_SCHEMA, f"status: schema is not {STATUS_SCHEMA}")
        state = body.get("state")
        _require(state in ("online", "offline"), "status: 'state' must be online or offline")
        self.status = str(state)
        return self._count("status")

    def to_json(self) -> dict[str, Any]:
        return {
            "owner_bin": self.owner_bin,
            "site": self.site,
            "agent_id": self.agent_id,
            "seq": self.seq,
            "in_gap": self.in_gap,
            "status": self.status,
            "miners": self.miners,
            "held": {str(k): v for k, v in self.held.items()},
            "recent_ids": list(self.recent_ids),
            "counts": self.counts,
            "missing": {str(k): v for k, v in sorted(self.missing.items())},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SiteView:
        return cls(
            owner_bin=d["owner_bin"],
            site=d["site"],
            agent_id=d.get("agent_id"),
            seq=d.get("seq"),
            miners=dict(d.get("miners", {})),
            in_gap=bool(d.get("in_gap", False)),
            held={int(k): v for k, v in d.get("held", {}).items()},
            recent_ids=OrderedDict.fromkeys(d.get("recent_ids", [])),
            status=d.get("status"),
            counts=dict(d.get("counts", {})),
            missing={int(k): int(v) for k, v in d.get("missing", {}).items()},
        )


@dataclass(frozen=True, slots=True)
class Applied:
    owner_bin: str
    site: str
    kind: str  # inventory | events | status
    outcome: Outcome
    agent_id: str | None = None  # the stream's agent on a split site
    # site-level changes this message made to the merged site view (register_merge)
    changes: tuple[dict[str, Any], ...] = ()


_AGENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class RegisterView:
    """Every site under one topic prefix: per site its own stream (``sites``, a single-agent
    site) and one stream per agent of a split site (``shards``), merged into one site view."""

    def __init__(self, prefix: str = "kz/hsc-register/v1") -> None:
        self.prefix = prefix.strip("/")
        self.sites: dict[tuple[str, str], SiteView] = {}
        self.shards: dict[tuple[str, str, str], SiteView] = {}
        self.merges: dict[tuple[str, str], SiteMerge] = {}

    def _parse(self, topic: str) -> tuple[str, str, str | None, str]:
        parts = topic.split("/")
        head = self.prefix.split("/")
        rest = parts[len(head) :] if parts[: len(head)] == head else []
        if len(rest) == 3:
            return rest[0], rest[1], None, rest[2]
        if len(rest) == 5 and rest[2] == "agent" and _AGENT_ID.match(rest[3]):
            return rest[0], rest[1], rest[3], rest[4]
        raise ReceiverError(
            f"topic {topic!r} is not {self.prefix}/{{owner_bin}}/{{site}}/{{kind}} "
            "or …/{site}/agent/{agent_id}/{kind}"
        )

    def stream(self, owner_bin: str, site: str, agent_id: str | None) -> SiteView:
        """The view of one publisher's stream, made on first use."""
        if agent_id is None:
            view = self.sites.get((owner_bin, site))
            if view is None:
                view = self.sites[(owner_bin, site)] = SiteView(owner_bin, site)
            return view
        view = self.shards.get((owner_bin, site, agent_id))
        if view is None:
            view = self.shards[(owner_bin, site, agent_id)] = SiteView(owner_bin, site, agent_id)
        return view

    def _streams(self, owner_bin: str, site: str) -> dict[str, dict[str, dict[str, Any]]]:
        """Stream key ("" for the site's own stream, else the agent id) -> its miners."""
        out = {}
        if (single := self.sites.get((owner_bin, site))) is not None:
            out[""] = single.miners
        for (o, s, agent), view in self.shards.items():
            if (o, s) == (owner_bin, site):
                out[agent] = view.miners
        return out

    def merged(self, owner_bin: str, site: str) -> dict[str, dict[str, Any]]:
        """The one site view: every miner of the site once, from the agent that saw it last,
        with that agent as ``agent_id`` (null for a single-agent site)."""
        merge = self.merges.get((owner_bin, site))
        return merge.miners() if merge else {}

    def handle(self, topic: str, payload: bytes | bytearray) -> Applied:
        """Apply one message; raises only ``ReceiverError``."""
        owner_bin, site, agent_id, kind = self._parse(topic)
        if kind == "replay":  # a request to the agent (a register's own): nothing to apply
            return Applied(owner_bin, site, kind, "request", agent_id)
        if not payload and kind == "inventory":
            return self._clear(owner_bin, site, agent_id)
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            raise ReceiverError(f"{topic}: not JSON ({type(exc).__name__})") from None
        _require(isinstance(body, dict), f"{topic}: payload is not a JSON object")
        view = self.stream(owner_bin, site, agent_id)
        before: set[str] = set()
        try:
            if kind == "events":
                outcome = view.on_event(body)
                touched = {body["miner_id"]} if outcome == "applied" else set()
            elif kind == "inventory":
                before = set(view.miners)
                outcome = view.on_inventory(body)
                touched = before | set(view.miners) if outcome == "rebuilt" else set()
            elif kind == "status":
                outcome = view.on_status(body)
                touched = set()
            else:
                raise ReceiverError(f"{topic}: unknown topic kind {kind!r}")
        except ReceiverError as exc:
            raise ReceiverError(f"{topic}: {exc}") from None
        changes: list[dict[str, Any]] = []
        if touched:
            merge = self.merges.setdefault((owner_bin, site), SiteMerge())
            changes = merge.update(self._streams(owner_bin, site), touched)
        return Applied(owner_bin, site, kind, outcome, agent_id, tuple(changes))

    def _clear(self, owner_bin: str, site: str, agent_id: str | None) -> Applied:
        """An empty retained inventory (``mosquitto_pub -r -n``) deletes the stream: the way to
        retire a single-agent site's topics when it is split across agents, or an agent that
        no longer runs. Its miners leave the site unless another stream has them."""
        if agent_id is None:
            view = self.sites.pop((owner_bin, site), None)
        else:
            view = self.shards.pop((owner_bin, site, agent_id), None)
        changes: list[dict[str, Any]] = []
        if view is not None and view.miners:
            merge = self.merges.setdefault((owner_bin, site), SiteMerge())
            changes = merge.update(self._streams(owner_bin, site), set(view.miners))
        return Applied(owner_bin, site, "inventory", "cleared", agent_id, tuple(changes))

    def to_json(self) -> dict[str, Any]:
        streams = [*self.sites.values(), *self.shards.values()]
        return {"prefix": self.prefix, "sites": [v.to_json() for v in streams]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RegisterView:
        view = cls(d.get("prefix", "kz/hsc-register/v1"))
        for s in d.get("sites", []):
            site = SiteView.from_json(s)
            if site.agent_id is None:
                view.sites[(site.owner_bin, site.site)] = site
            else:
                view.shards[(site.owner_bin, site.site, site.agent_id)] = site
        # The merge is a function of the streams (owners re-decided the same way).
        for owner_bin, site_id in {(v.owner_bin, v.site) for v in view.sites.values()} | {
            (v.owner_bin, v.site) for v in view.shards.values()
        }:
            streams = view._streams(owner_bin, site_id)
            merge = view.merges[(owner_bin, site_id)] = SiteMerge()
            merge.update(streams, {i for miners in streams.values() for i in miners})
        return view


def _save_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RegisterReceiver:
    """The MQTT side: a persistent session that feeds a ``RegisterView`` saved to ``state``."""

    def __init__(
        self,
        *,
        broker: BrokerEndpoint,
        state: Path,
        prefix: str = "kz/hsc-register/v1",
        on_applied: Callable[[Applied], None] | None = None,
    ) -> None:
        self.state = state
        self.on_applied = on_applied
        self.view = self._load(state, prefix)
        self.rejected = 0
        self.connects = 0
        self.replays_asked = 0  # replay requests published
        self.lock = threading.Lock()  # the view is read by other threads (tests, a CLI)
        self._asked: set[str] = set()  # per-site inventory topics subscribed after a gap
        self.client = paho_client(broker, broker.client_id or "kuat-register-receiver")
        self.session = Session(broker)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = lambda c, *_: self.session.fail_over(c)
        self.client.on_message = self._on_message
        self.broker = broker
        # A subscription the broker refuses (SUBACK 0x80: NATS while its JetStream cluster
        # elects leaders after a node died) is asked again with a back-off; without that the
        # session stays connected and receives nothing, for good.
        self.client.on_subscribe = self._on_subscribe
        self.refused_subscriptions = 0
        self._subscribing: dict[int, str] = {}  # SUBSCRIBE mid -> topic
        self._sub_lock = threading.Lock()
        low = max(broker.reconnect_min_s, 0.05)
        self._retry_s = (low, max(broker.reconnect_max_s, low))
        self._retry_delay: dict[str, float] = {}
        self._stopping = threading.Event()
        # Set once the broker granted the site-wide subscription on the current connection:
        # only from then on does a message published reach this receiver (a new subscription
        # starts at new messages), so a caller that starts publishers waits for it.
        self.subscribed = threading.Event()

    def __repr__(self) -> str:  # never the password
        b = self.broker
        return f"RegisterReceiver(host={b.host!r}, port={b.port}, state={self.state!s})"

    @staticmethod
    def _load(path: Path, prefix: str) -> RegisterView:
        if not path.exists():
            return RegisterView(prefix)
        try:
            return RegisterView.from_json(json.loads(path.read_text("utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # A damaged state file is set aside, never a crash loop: the persistent session and
            # the retained inventories rebuild the view.
            aside = path.with_name(f"{path.name}.damaged")
            os.replace(path, aside)
            log.error("register state %s unreadable (%s); moved to %s", path, exc, aside)
            return RegisterView(prefix)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            return
        self.connects += 1
        self.subscribed.clear()
        # With a persistent session the broker still has the subscription; subscribing again is
        # harmless and covers a session the broker dropped.
        self._subscribe(client, self._wildcard)

    def _on_disconnect(self, client: mqtt.Client, *_: Any) -> None:
        self.subscribed.clear()
        self.session.fail_over(client)

    @property
    def _wildcard(self) -> str:
        return f"{self.view.prefix}/+/+/#"

    def _subscribe(self, client: mqtt.Client, topic: str) -> None:
        # Held across the call so that the SUBACK (on paho's thread) finds its topic; paho
        # takes none of its own locks around our on_subscribe that subscribe() would need.
        with self._sub_lock:
            result, mid = client.subscribe(topic, **self._qos1())
            if result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                self._subscribing[mid] = topic

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Sequence[Any], props: Any
    ) -> None:
        with self._sub_lock:
            topic = self._subscribing.pop(mid, None)
        if topic is None:
            return
        if not any(code.is_failure for code in codes):
            self._retry_delay.pop(topic, None)
            if topic == self._wildcard:
                self.subscribed.set()
            return
        self.refused_subscriptions += 1
        low, high = self._retry_s
        delay = self._retry_delay.get(topic, low)
        self._retry_delay[topic] = min(delay * 2, high)
        log.warning(
            "broker refused the subscription %s (%s); asking again in %.1f s",
            topic,
            codes[0],
            delay,
        )
        timer = threading.Timer(delay, self._resubscribe, (client, topic))
        timer.daemon = True
        timer.start()

    def _resubscribe(self, client: mqtt.Client, topic: str) -> None:
        # Only what is still wanted, and only on a live connection (a reconnect subscribes anew).
        wanted = topic == self._wildcard or topic in self._asked
        if wanted and not self._stopping.is_set() and client.is_connected():
            self._subscribe(client, topic)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            try:
                applied = self.view.handle(msg.topic, msg.payload)
            except ReceiverError as exc:
                self.rejected += 1
                log.warning("register message refused: %s", exc)
                return
            _save_atomic(self.state, self.view.to_json())
        if self.on_applied is not None:
            self.on_applied(applied)
        base = f"{self.view.prefix}/{applied.owner_bin}/{applied.site}"
        if applied.agent_id is not None:
            base = f"{base}/agent/{applied.agent_id}"
        topic = f"{base}/inventory"
        if applied.kind in ("events", "inventory") and applied.outcome != "cleared":
            self._ask_replay(client, applied, base)
        if applied.outcome == "gap" and topic not in self._asked:
            # Ask for the retained inventory now: a new subscription delivers retained copies.
            self._asked.add(topic)
            self._subscribe(client, topic)
        elif applied.outcome == "rebuilt" and topic in self._asked:
            # The wildcard subscription delivers later inventories; drop the extra one so
            # they do not arrive twice.
            self._asked.discard(topic)
            client.unsubscribe(topic)

    def _ask_replay(self, client: mqtt.Client, applied: Applied, base: str) -> None:
        """Ask the stream's agent for the events it is missing (kuat.uplink.register_replay)."""
        with self.lock:
            view = self.view.stream(applied.owner_bin, applied.site, applied.agent_id)
            runs = view.to_ask(again=applied.kind == "inventory")
            if runs:
                _save_atomic(self.state, self.view.to_json())
        for first, last in runs:
            client.publish(f"{base}/replay", replay_payload(first, last), qos=1)
            self.replays_asked += 1
            log.info("asked %s for events %d-%d it has not delivered", base, first, last)

    def _qos1(self) -> dict[str, Any]:
        # MQTT 5: retain handling 0 (the default) sends retained copies on every subscribe;
        # MQTT 3.1.1 always does
        if self.session.protocol == "5":
            return {"options": SubscribeOptions(qos=1, retainHandling=0)}
        return {"qos": 1}

    def start(self) -> None:
        self.session.connect_async(self.client)
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping.set()
        self.client.disconnect()
        self.client.loop_stop()

    def site(self, owner_bin: str, site: str) -> SiteView | None:
        """A copy of a single-agent site's stream view."""
        with self.lock:
            view = self.view.sites.get((owner_bin, site))
            return SiteView.from_json(view.to_json()) if view else None

    def shard(self, owner_bin: str, site: str, agent_id: str) -> SiteView | None:
        """A copy of one agent's stream view of a split site."""
        with self.lock:
            view = self.view.shards.get((owner_bin, site, agent_id))
            return SiteView.from_json(view.to_json()) if view else None

    def merged(self, owner_bin: str, site: str) -> dict[str, dict[str, Any]]:
        """A copy of the one site view (``RegisterView.merged``)."""
        with self.lock:
            copy: dict[str, dict[str, Any]] = json.loads(
                json.dumps(self.view.merged(owner_bin, site))
            )
            return copy
