"""Where allocation schedules and curtailment orders come from besides a local file.

* :class:`HttpScheduleSource` polls an HTTP endpoint of the energy company (pull). It sends the
  last ETag as ``If-None-Match`` so an unchanged schedule costs one 304; a changed one comes
  back as ``(text, fmt)`` documents for ``ScheduleBook.offer``.
* :class:`MqttScheduleReceiver` subscribes to topics the energy company (or the farm's own
  back office) publishes to (push): ``{prefix}/{site}/schedule`` and ``{prefix}/{site}/orders``
  by default (:func:`quota_topics`). QoS 1 with a persistent session, so a schedule or an order
  published while the agent was down is delivered when it comes back.

Neither parses schedules nor verifies orders: that is ``quota`` (pure). They only fetch bytes,
decode text and name its format.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from kuat.uplink.broker import BrokerEndpoint
from kuat.uplink.http import DEFAULT_MAX_BYTES, get_with_retries, redact_url
from kuat.uplink.paho_client import Session, paho_client

__all__ = [
    "DEFAULT_QUOTA_PREFIX",
    "HttpScheduleSource",
    "MqttScheduleReceiver",
    "fmt_from_content_type",
    "quota_topics",
]

log = logging.getLogger("kuat.quota.source")

DEFAULT_QUOTA_PREFIX = "kz/quota/v1"
MAX_MQTT_PAYLOAD = 1024 * 1024

Document = tuple[str, str]  # (text, fmt) with fmt "csv" or "json"


def quota_topics(site: str, prefix: str = DEFAULT_QUOTA_PREFIX) -> tuple[str, str]:
    """The schedule and orders topics of one site."""
    base = f"{prefix.strip('/')}/{site}"
    return f"{base}/schedule", f"{base}/orders"


def fmt_from_content_type(content_type: str | None, url: str = "") -> str | None:
    """``csv`` or ``json`` from a Content-Type (or, when it says nothing useful, the URL suffix).

    ``text/csv``, ``application/csv`` → csv; ``application/json``, ``text/json`` and any
    ``+json`` type → json. ``None`` when neither tells: guessing would feed a CSV to the JSON
    parser and report nonsense reasons.
    """
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in ("text/csv", "application/csv", "text/comma-separated-values"):
        return "csv"
    if mime in ("application/json", "text/json") or mime.endswith("+json"):
        return "json"
    try:
        path = httpx.URL(url).path.lower() if url else ""
    except (httpx.InvalidURL, ValueError):  # not a URL we could have fetched: no hint there
        path = ""
    if path.endswith(".csv"):
        return "csv"
    if path.endswith(".json"):
        return "json"
    return None


def _charset(content_type: str | None) -> str:
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def split_documents(text: str, fmt: str) -> list[Document]:
    """One body may carry several JSON documents (a list, or ``{"schedules": [...]}``) — e.g.
    grid and own generation for tomorrow in one response, or the orders endpoint's list of
    orders; each becomes its own document, judged alone. An empty list is no documents: the
    documented way to say "no orders now", not an error."""
    if fmt != "json":
        return [(text, fmt)]
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return [(text, fmt)]  # let the parser name the JSON error, with the operator's words
    items = doc.get("schedules") if isinstance(doc, dict) else doc
    if isinstance(items, list):
        out: list[Document] = []
        for item in items:
            try:
                out.append((json.dumps(item, ensure_ascii=False), "json"))
            except (ValueError, RecursionError):  # cannot happen for parsed JSON; be sure
                out.append((text, fmt))
        return out
    return [(text, fmt)]


class HttpScheduleSource:
    """Polls one URL for schedules; ``fetch`` returns new documents or ``None``.

    ``None`` means "nothing new" — unchanged (304), or the fetch failed (``last_error`` says
    why and it was logged). Failure never drops what the book holds: the agent keeps the last
    good schedule. The ETag is remembered only once a body was decoded, so a body we could not
    use is fetched again next time rather than hidden behind a 304.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        interval_s: float,
        client: httpx.AsyncClient,
        attempts: int = 3,
        backoff_s: float = 1.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("schedule URL must start with http:// or https://")
        self.url = url
        self.interval_s = interval_s  # the agent schedules ``fetch`` at this interval
        self.client = client
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_bytes = max_bytes
        self._token = token
        self.etag: str | None = None
        self.last_error: str | None = None
        self.last_status: int | None = None

    def __repr__(self) -> str:  # the token stays out of reprs and tracebacks
        return f"HttpScheduleSource({self.description!r}, interval_s={self.interval_s:g})"

    @property
    def description(self) -> str:
        """The source as it may appear in a log line or a schedule's description."""
        return redact_url(self.url)

    async def fetch(self) -> list[Document] | None:
        headers = {"Accept": "text/csv, application/json;q=0.9"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        result = await get_with_retries(
            self.client,
            self.url,
            etag=self.etag,
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            max_bytes=self.max_bytes,
            headers=headers,
        )
        self.last_status = result.status
        if result.error is not None:
            self.last_error = result.error
            return None
        if result.not_modified or result.body is None:
            self.last_error = None
            return None
        fmt = fmt_from_content_type(result.content_type, self.url)
        if fmt is None:
            self.last_error = f"unknown content type {result.content_type!r}"
            log.error(
                "schedule from %s: %s (want text/csv or application/json)",
                self.description,
                self.last_error,
            )
            return None
        try:
            text = result.body.decode(_charset(result.content_type))
        except (UnicodeDecodeError, LookupError) as exc:
            self.last_error = f"cannot decode body: {exc}"
            log.error("schedule from %s: %s", self.description, self.last_error)
            return None
        self.last_error = None
        self.etag = result.etag
        return split_documents(text, fmt)


OnDocument = Callable[[str, str, str], None]  # (topic, text, fmt)


class MqttScheduleReceiver:
    """Subscribes (QoS 1) to ``topics`` and hands every payload to ``on_document``.

    ``fmt`` comes from the MQTT v5 Content-Type property (``text/csv`` or ``application/json``),
    JSON when absent. Payloads that are too large, not UTF-8 or of an unknown content type are
    logged and dropped.

    paho calls back on its own network thread. Pass ``loop`` (the agent's event loop) and the
    callback runs on that loop instead (``call_soon_threadsafe``), so it may touch the
    ``ScheduleBook`` / ``OrderBook`` without locks. An exception in the callback is logged and
    never kills paho's thread.
    """

    def __init__(
        self,
        broker: BrokerEndpoint,
        topics: Sequence[str],
        *,
        on_document: OnDocument,
        loop: asyncio.AbstractEventLoop | None = None,
        max_payload: int = MAX_MQTT_PAYLOAD,
    ) -> None:
        if not topics:
            raise ValueError("at least one topic")
        self.broker = broker
        self.topics = list(topics)
        self.on_document = on_document
        self.loop = loop
        self.max_payload = max_payload
        # A stable id: the persistent session (and its queued messages) is keyed by it.
        digest = hashlib.sha256("|".join(self.topics).encode()).hexdigest()[:12]
        self.client_id = broker.client_id or f"kuat-quota-{digest}"
        self.received = 0
        self.dropped = 0
        self._subscribed = threading.Event()
        self._started = False
        self._down_reported = False  # once per outage, not once per retry
        self._client = paho_client(broker, self.client_id)
        # A persistent session: the broker queues QoS 1 messages for us while we are away.
        self.session = Session(broker)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def _where(self) -> str:
        host, port = self.session.current
        return f"{host}:{port}"

    def __repr__(self) -> str:
        b = self.broker
        return f"MqttScheduleReceiver(host={b.host!r}, port={b.port}, topics={self.topics!r})"

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (paho's thread retries until the broker is there)."""
        if self._started:
            return
        self._started = True
        self.session.connect_async(self._client)
        self._client.loop_start()

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()
        self._subscribed.clear()

    def wait_subscribed(self, timeout_s: float) -> bool:
        """True once the broker acknowledged the subscriptions (blocking; tests and ``--once``)."""
        return self._subscribed.wait(timeout_s)

    # --- paho callbacks (network thread) ------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        where = self._where()
        if reason.is_failure:
            log.error("quota broker %s refused the connection: %s", where, reason)
            return
        log.info("connected to quota broker %s (session present: %s)", where, flags.session_present)
        self._down_reported = False
        # Subscribing again on a present session is harmless and covers a broker that lost it.
        if self.session.protocol == "5":
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.topics])
        else:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._subscribed.clear()
        if self._started:
            where = self._where()
            log.warning("quota broker %s disconnected: %s; retrying", where, reason)
            self.session.fail_over(client)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._started:
            return
        if not self._down_reported:
            self._down_reported = True
            where = self._where()
            log.warning("quota broker %s unreachable: cannot connect; retrying", where)
        self.session.fail_over(client)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [t for t, rc in zip(self.topics, reason_codes, strict=False) if rc.is_failure]
        if refused:
            log.error("quota broker refused subscriptions to %s", ", ".join(refused))
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = self._decode(msg)
        except Exception:  # a malformed message must never stop the network thread
            log.exception("quota message on %s could not be read", msg.topic)
            doc = None
        if doc is None:
            self.dropped += 1
            return
        self.received += 1
        text, fmt = doc
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._deliver, msg.topic, text, fmt)
        else:
            self._deliver(msg.topic, text, fmt)

    def _decode(self, msg: mqtt.MQTTMessage) -> Document | None:
        payload = msg.payload
        if len(payload) > self.max_payload:
            log.error(
                "quota message on %s dropped: %d bytes (cap %d)",
                msg.topic,
                len(payload),
                self.max_payload,
            )
            return None
        if not payload:
            return None  # an empty retained message clears the topic; nothing to parse
        ctype = getattr(msg.properties, "ContentType", None) if msg.properties else None
        fmt = fmt_from_content_type(ctype) if ctype else "json"
        if fmt is None:
            log.error("quota message on %s dropped: content type %r", msg.topic, ctype)
            return None
        try:
            text = payload.decode(_charset(ctype))
        except (UnicodeDecodeError, LookupError) as exc:
            log.error("quota message on %s dropped: %s", msg.topic, exc)
            return None
        return text, fmt

    def _deliver(self, topic: str, text: str, fmt: str) -> None:
        try:
            self.on_document(topic, text, fmt)
        except Exception:
            log.exception("handling the quota message on %s failed", topic)
