"""kuat.uplink.http and uplink.quota_source against real servers on 127.0.0.1.

HTTP: a small asyncio HTTP/1.1 server in this file (scripted replies: ETag/304, 5xx then 200,
429 with Retry-After, slow and dribbling responses, oversized bodies, HTTPS with a throw-away CA
and client certificates). MQTT: the real Mosquitto from tests/servers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kuat.quota.orders import OrderBook, OrderOutcome, limit_kw, sign_order
from kuat.quota.schedule import BookOutcome, ScheduleBook
from kuat.uplink.http import get_with_retries, http_date, make_client, redact_url
from kuat.uplink.quota_source import (
    HttpScheduleSource,
    MqttScheduleReceiver,
    fmt_from_content_type,
    quota_topics,
)
from tests.servers import Mosquitto, TlsFiles, free_port
from tests.uplink.test_mqtt import lab_broker

SITE = "ekibastuz-1"
TOKEN = "tok-3f9a1c0e5b7d4e2a"
CSV = "site,date,source,version,hour,mwh\n" + "".join(
    f"{SITE},2026-11-25,grid,3,{h},12.5\n" for h in range(1, 25)
)


def schedule_json(version: int, source: str = "grid") -> dict:
    return {"site": SITE, "date": "2026-11-25", "source": source, "version": version,
            "mwh": [10.0] * 24}  # fmt: skip


# --- a scripted HTTP server -------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0  # before the status line: a server that is slow to answer
    drip_s: float | None = None  # then the body one byte at a time: slow but never idle
    content_length: bool = True  # False: no Content-Length, body ends at close


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]


class HttpServer:
    """HTTP/1.1 on 127.0.0.1, one request per connection, replies from ``handler``."""

    def __init__(
        self, handler: Callable[[Request], Reply], ssl_ctx: ssl.SSLContext | None = None
    ) -> None:
        self.handler = handler
        self.ssl_ctx = ssl_ctx
        self.requests: list[Request] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_ctx else 'http'}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> HttpServer:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0, ssl=self.ssl_ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *rest = head.decode("latin-1").split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers = {}
            for h in rest:
                if ":" in h:
                    k, v = h.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            req = Request(method, target, headers)
            self.requests.append(req)
            reply = self.handler(req)
            await asyncio.sleep(reply.delay_s)
            out = [f"HTTP/1.1 {reply.status} X", "Connection: close"]
            out += [f"{k}: {v}" for k, v in reply.headers.items()]
            if reply.content_length:
                out.append(f"Content-Length: {len(reply.body)}")
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            if reply.drip_s is None:
                writer.write(reply.body)
            else:
                for i in range(len(reply.body)):
                    writer.write(reply.body[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(reply.drip_s)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.LimitOverrunError):
            pass  # the client went away (timeouts, refused certificates): that is the test
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def script(*replies: Reply) -> Callable[[Request], Reply]:
    """Replies in order; the last one repeats."""
    queue = list(replies)

    def handler(_: Request) -> Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler


def etag_handler(body: bytes, etag: str, ctype: str = "text/csv") -> Callable[[Request], Reply]:
    def handler(req: Request) -> Reply:
        if req.headers.get("if-none-match") == etag:
            return Reply(304, {"ETag": etag})
        return Reply(200, {"ETag": etag, "Content-Type": ctype}, body)

    return handler


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # trust_env is on by design; a proxy set in the developer's shell must not reroute tests.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def client() -> AsyncIterator:
    c = make_client(timeout_s=2.0)
    try:
        yield c
    finally:
        await c.aclose()


# --- get_with_retries -------------------------------------------------------------------


async def test_etag_then_304(client) -> None:  # type: ignore[no-untyped-def]
    async with HttpServer(etag_handler(CSV.encode(), '"v3"')) as srv:
        first = await get_with_retries(client, srv.url + "/s.csv")
        assert (first.status, first.etag, first.not_modified, first.error) == (
            200,
            '"v3"',
            False,
            None,
        )
        assert first.body == CSV.encode() and first.content_type == "text/csv"
        again = await get_with_retries(client, srv.url + "/s.csv", etag=first.etag)
        assert again.status == 304 and again.not_modified and again.body is None and again.ok
        assert again.etag == '"v3"'
        assert srv.requests[1].headers["if-none-match"] == '"v3"'
        assert "user-agent" in srv.requests[0].headers


async def test_500_then_200_is_retried(client) -> None:  # type: ignore[no-untyped-def]
    async with HttpServer(script(Reply(500), Reply(502), Reply(200, body=b"ok"))) as srv:
        r = await get_with_retries(client, srv.url, attempts=3, backoff_s=0.01)
        assert r.ok and r.body == b"ok" and r.attempts == 3


async def test_persistent_5xx_gives_up_without_raising(client) -> None:  # type: ignore[no-untyped-def]
    async with HttpServer(script(Reply(503))) as srv:
        r = await get_with_retries(client, srv.url, attempts=3, backoff_s=0.01)
        assert (r.status, r.body, r.attempts) == (503, None, 3)
        assert r.error is not None and "503" in r.error and len(srv.requests) == 3


async def test_4xx_is_not_retried(client) -> None:  # type: ignore[no-untyped-def]
    async with HttpServer(script(Reply(401), Reply(200))) as srv:
        r = await get_with_retries(client, srv.url, attempts=3, backoff_s=0.01)
        assert (r.status, r.attempts, len(srv.requests)) == (401, 1, 1) and not r.ok


async def test_429_honours_retry_after(client) -> None:  # type: ignore[no-untyped-def]
    async with HttpServer(script(Reply(429, {"Retry-After": "1"}), Reply(200, body=b"ok"))) as srv:
        t0 = time.monotonic()
        r = await get_with_retries(client, srv.url, attempts=2, backoff_s=0.01)
        assert r.ok and r.attempts == 2
        assert time.monotonic() - t0 >= 0.9  # the server's 1 s, not our 10 ms


async def test_retry_after_as_http_date(client) -> None:  # type: ignore[no-untyped-def]
    when = http_date(datetime.now(UTC) + timedelta(seconds=2))
    async with HttpServer(script(Reply(503, {"Retry-After": when}), Reply(200))) as srv:
        t0 = time.monotonic()
        r = await get_with_retries(client, srv.url, attempts=2, backoff_s=0.01)
        assert r.ok and time.monotonic() - t0 >= 0.5


async def test_long_retry_after_is_reported_not_slept(client) -> None:  # type: ignore[no-untyped-def]
    async with HttpServer(script(Reply(429, {"Retry-After": "3600"}))) as srv:
        t0 = time.monotonic()
        r = await get_with_retries(client, srv.url, attempts=3, backoff_s=0.01)
        assert time.monotonic() - t0 < 1
        assert (r.status, r.attempts, r.retry_after_s) == (429, 1, 3600.0) and not r.ok


async def test_slow_answer_times_out_and_is_retried() -> None:
    c = make_client(timeout_s=0.3)
    async with c, HttpServer(script(Reply(delay_s=3.0, body=b"late"))) as srv:
        t0 = time.monotonic()
        r = await get_with_retries(c, srv.url, attempts=2, backoff_s=0.01)
        elapsed = time.monotonic() - t0
        assert r.status is None and r.error is not None and "timed out" in r.error
        assert r.attempts == 2 and len(srv.requests) == 2 and elapsed < 2.5


async def test_dribbling_body_hits_the_attempt_deadline() -> None:
    # Each byte arrives well within the read timeout; only a total deadline stops this.
    c = make_client(timeout_s=0.3)
    async with c, HttpServer(script(Reply(body=b"x" * 200, drip_s=0.05))) as srv:
        t0 = time.monotonic()
        r = await get_with_retries(c, srv.url, attempts=1)
        assert r.error is not None and "timed out" in r.error
        assert time.monotonic() - t0 < 3.0


async def test_connection_refused_is_a_result(client) -> None:  # type: ignore[no-untyped-def]
    r = await get_with_retries(
        client, f"http://127.0.0.1:{free_port()}/x", attempts=2, backoff_s=0.01
    )
    assert r.status is None and r.attempts == 2 and "ConnectError" in (r.error or "")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
async def test_body_is_capped(client, declared: bool) -> None:  # type: ignore[no-untyped-def]
    big = Reply(body=b"y" * 50_000, content_length=declared)
    async with HttpServer(script(big)) as srv:
        r = await get_with_retries(client, srv.url, attempts=3, max_bytes=10_000)
        assert r.body is None and "cap" in (r.error or "") and r.attempts == 1
        ok = await get_with_retries(client, srv.url, max_bytes=50_000)
        assert ok.ok and ok.body is not None and len(ok.body) == 50_000


async def test_secrets_never_reach_the_log(client, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    async with HttpServer(script(Reply(500), Reply(401))) as srv:
        url = f"{srv.url}/q?token={TOKEN}"
        r = await get_with_retries(
            client, url, headers={"Authorization": f"Bearer {TOKEN}"}, backoff_s=0.01
        )
        assert r.status == 401
        assert srv.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    r = await get_with_retries(
        client,
        f"http://127.0.0.1:{free_port()}/q?token={TOKEN}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        attempts=1,
    )
    assert caplog.records, "the failures were logged"
    assert TOKEN not in caplog.text
    assert redact_url(f"https://u:p@h:8443/a/b?token={TOKEN}#f") == "https://h:8443/a/b?…"


async def test_proxy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The "proxy" is our server: it sees the absolute-form target a proxy gets.
    async with HttpServer(script(Reply(body=b"via proxy"))) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        c = make_client(timeout_s=2.0)
        async with c:
            r = await get_with_retries(c, "http://quota.example.invalid/s.csv", attempts=1)
        assert r.body == b"via proxy"
        assert proxy.requests[0].target == "http://quota.example.invalid/s.csv"


# --- HTTPS ------------------------------------------------------------------------------


def server_ctx(tls: TlsFiles, *, require_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.server_cert, tls.server_key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(tls.ca_cert)
    return ctx


async def test_https_verifies_against_the_given_ca(tls_certs: TlsFiles) -> None:
    async with HttpServer(script(Reply(body=b"secure")), server_ctx(tls_certs)) as srv:
        c = make_client(timeout_s=2.0, verify=tls_certs.ca_cert)
        async with c:
            assert (await get_with_retries(c, srv.url)).body == b"secure"
        # Default trust store: our throw-away CA is unknown; refused at once, not retried.
        c = make_client(timeout_s=2.0)
        async with c:
            r = await get_with_retries(c, srv.url, attempts=3, backoff_s=0.01)
        assert r.error is not None and r.error.startswith("TLS") and r.attempts == 1
        # verify=False (a lab) connects anyway.
        c = make_client(timeout_s=2.0, verify=False)
        async with c:
            assert (await get_with_retries(c, srv.url)).ok


async def test_https_client_certificate(tls_certs: TlsFiles) -> None:
    ctx = server_ctx(tls_certs, require_client_cert=True)
    async with HttpServer(script(Reply(body=b"mtls")), ctx) as srv:
        c = make_client(
            timeout_s=2.0,
            verify=tls_certs.ca_cert,
            cert=(tls_certs.client_cert, tls_certs.client_key),
        )
        async with c:
            assert (await get_with_retries(c, srv.url)).body == b"mtls"
        c = make_client(timeout_s=2.0, verify=tls_certs.ca_cert)
        async with c:
            r = await get_with_retries(c, srv.url, attempts=2, backoff_s=0.01)
        assert not r.ok and r.body is None


# --- HttpScheduleSource -----------------------------------------------------------------


async def test_source_fetches_csv_once_then_304_and_the_book_takes_it(client) -> None:  # type: ignore[no-untyped-def]
    async with HttpServer(etag_handler(CSV.encode(), '"v3"', "text/csv; charset=utf-8")) as srv:
        src = HttpScheduleSource(srv.url + "/ekb.csv", token=TOKEN, interval_s=300, client=client)
        docs = await src.fetch()
        assert docs == [(CSV, "csv")] and src.etag == '"v3"'
        assert srv.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
        book = ScheduleBook()
        change = book.offer(docs[0][0], docs[0][1], description=src.description)
        assert change.outcome == BookOutcome.ADDED and change.version == 3
        assert await src.fetch() is None and src.last_error is None and src.last_status == 304
        assert TOKEN not in repr(src)


async def test_source_splits_a_json_list_and_reads_cp1251(client) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"schedules": [schedule_json(1), schedule_json(1, "bilateral")]})
    csv_ru = "# график КОРЭМ\n" + CSV
    replies = script(
        Reply(200, {"Content-Type": "application/json", "ETag": "a"}, body.encode()),
        Reply(200, {"Content-Type": "text/csv; charset=windows-1251"}, csv_ru.encode("cp1251")),
    )
    async with HttpServer(replies) as srv:
        src = HttpScheduleSource(srv.url + "/api", token=None, interval_s=60, client=client)
        docs = await src.fetch()
        assert docs is not None and [fmt for _, fmt in docs] == ["json", "json"]
        book = ScheduleBook()
        assert [book.offer(t, f).outcome for t, f in docs] == [BookOutcome.ADDED] * 2
        assert "authorization" not in srv.requests[0].headers
        docs = await src.fetch()
        assert docs == [(csv_ru, "csv")]


async def test_source_refuses_unknown_content_and_keeps_refetching(client) -> None:  # type: ignore[no-untyped-def]
    handler = script(Reply(200, {"Content-Type": "application/pdf", "ETag": "p"}, b"%PDF"))
    async with HttpServer(handler) as srv:
        src = HttpScheduleSource(srv.url + "/latest", token=None, interval_s=60, client=client)
        assert await src.fetch() is None
        assert "application/pdf" in (src.last_error or "") and src.etag is None
        await src.fetch()
        assert "if-none-match" not in srv.requests[1].headers


async def test_source_failure_is_none_with_the_reason(client) -> None:  # type: ignore[no-untyped-def]
    src = HttpScheduleSource(
        f"http://127.0.0.1:{free_port()}/s.csv",
        token=TOKEN,
        interval_s=60,
        client=client,
        attempts=1,
    )
    assert await src.fetch() is None and src.last_error


@pytest.mark.parametrize(
    ("ctype", "url", "fmt"),
    [
        ("text/csv", "", "csv"),
        ("text/csv; charset=utf-8", "", "csv"),
        ("application/json", "", "json"),
        ("application/schedule+json", "", "json"),
        ("text/plain", "http://h/a/ekb.CSV", "csv"),
        (None, "http://h/a.json?x=1", "json"),
        ("application/octet-stream", "http://h/a", None),
    ],
)
def test_fmt_from_content_type(ctype: str | None, url: str, fmt: str | None) -> None:
    assert fmt_from_content_type(ctype, url) == fmt


def test_source_refuses_a_non_http_url(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        HttpScheduleSource("file:///etc/passwd", token=None, interval_s=1, client=client)


# --- MQTT push --------------------------------------------------------------------------

pytest_servers = pytest.mark.servers


class Inbox:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, str, int]] = []
        self.cond = threading.Condition()

    def __call__(self, topic: str, text: str, fmt: str) -> None:
        with self.cond:
            self.items.append((topic, text, fmt, threading.get_ident()))
            self.cond.notify_all()

    def wait(self, n: int, timeout_s: float = 10.0) -> list[tuple[str, str, str, int]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, timeout_s), self.items
            return list(self.items)


def publish(
    port: int,
    topic: str,
    payload: bytes,
    content_type: str | None = None,
    tls: TlsFiles | None = None,
) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if tls is not None:
        c.tls_set(str(tls.ca_cert), str(tls.client_cert), str(tls.client_key))
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        props = None
        if content_type:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = content_type
        c.publish(topic, payload, qos=1, properties=props).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., MqttScheduleReceiver]]:
    made: list[MqttScheduleReceiver] = []

    def make(port: int, inbox: Inbox, **kw: object) -> MqttScheduleReceiver:
        loop = kw.pop("loop", None)
        broker = lab_broker(port, reconnect_max_s=0.5, **kw)
        r = MqttScheduleReceiver(broker, quota_topics(SITE), on_document=inbox, loop=loop)  # type: ignore[arg-type]
        made.append(r)
        r.start()
        assert r.wait_subscribed(10), "SUBACK"
        return r

    yield make
    for r in made:
        r.stop()


@pytest_servers
def test_mqtt_push_hands_documents_with_their_format(
    mosquitto: Mosquitto, receiver_factory: Callable[..., MqttScheduleReceiver]
) -> None:
    inbox = Inbox()
    rx = receiver_factory(mosquitto.port, inbox, client_id="kuat-test-push")
    schedule_topic, orders_topic = quota_topics(SITE)
    assert schedule_topic == f"kz/quota/v1/{SITE}/schedule"
    publish(mosquitto.port, schedule_topic, CSV.encode(), "text/csv")
    publish(mosquitto.port, schedule_topic, b"%PDF", "application/pdf")  # dropped
    publish(mosquitto.port, schedule_topic, b"\xff\xfe bad", "text/csv")  # not UTF-8: dropped
    order = sign_order(
        {
            "id": "O-1",
            "issuer": "kegoc",
            "site": SITE,
            "target_mw": 4.0,
            "start": datetime.now(UTC).isoformat(),
            "end": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "issued_at": datetime.now(UTC).isoformat(),
        },
        b"k" * 32,
    )
    publish(mosquitto.port, orders_topic, order.encode())  # no content type: JSON
    items = inbox.wait(2)
    assert [(t, f) for t, _, f, _ in items] == [(schedule_topic, "csv"), (orders_topic, "json")]
    assert items[0][1] == CSV
    assert rx.dropped == 2 and rx.received == 2
    # What the agent does with them: the book takes the schedule, the order book the order.
    assert ScheduleBook().offer(items[0][1], "csv").outcome == BookOutcome.ADDED
    book = OrderBook()
    now = datetime.now(UTC) + timedelta(seconds=1)
    assert book.offer(items[1][1], {"kegoc": b"k" * 32}, now=now, site=SITE).outcome == (
        OrderOutcome.ADDED
    )
    assert limit_kw(book, now)[0] == 4000.0


@pytest_servers
def test_mqtt_orders_sent_while_down_arrive_on_reconnect(
    mosquitto: Mosquitto, receiver_factory: Callable[..., MqttScheduleReceiver]
) -> None:
    inbox = Inbox()
    rx = receiver_factory(mosquitto.port, inbox, client_id="kuat-test-offline")
    rx.stop()
    _, orders_topic = quota_topics(SITE)
    publish(mosquitto.port, orders_topic, b'{"id": "queued"}')
    receiver_factory(mosquitto.port, inbox, client_id="kuat-test-offline")
    assert inbox.wait(1)[0][1] == '{"id": "queued"}'


@pytest_servers
async def test_mqtt_callback_runs_on_the_event_loop(
    mosquitto: Mosquitto, receiver_factory: Callable[..., MqttScheduleReceiver]
) -> None:
    got: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def on_document(topic: str, text: str, fmt: str) -> None:
        got.put_nowait((text, threading.get_ident()))  # asyncio.Queue: loop thread only

    def boom(topic: str, text: str, fmt: str) -> None:
        raise RuntimeError("handler bug")

    inbox = Inbox()
    rx = receiver_factory(mosquitto.port, inbox, client_id="kuat-test-loop", loop=loop)
    rx.on_document = boom  # a failing handler is logged, the receiver lives on
    await asyncio.to_thread(publish, mosquitto.port, quota_topics(SITE)[0], b"{}")
    await asyncio.sleep(0.3)
    rx.on_document = on_document
    await asyncio.to_thread(publish, mosquitto.port, quota_topics(SITE)[0], b'{"a": 1}')
    text, ident = await asyncio.wait_for(got.get(), 10)
    assert text == '{"a": 1}' and ident == threading.get_ident()


@pytest_servers
def test_mqtt_over_tls_with_client_certificate(
    mosquitto_tls: Mosquitto,
    tls_certs: TlsFiles,
    receiver_factory: Callable[..., MqttScheduleReceiver],
) -> None:
    assert mosquitto_tls.tls_port is not None
    inbox = Inbox()
    receiver_factory(
        mosquitto_tls.tls_port,
        inbox,
        tls=True,
        ca_cert=tls_certs.ca_cert,
        client_cert=tls_certs.client_cert,
        client_key=tls_certs.client_key,
        client_id="kuat-test-tls",
    )
    publish(mosquitto_tls.tls_port, quota_topics(SITE)[1], b'{"tls": true}', tls=tls_certs)
    assert inbox.wait(1)[0][1] == '{"tls": true}'


def test_repr_hides_credentials(tmp_path: Path) -> None:
    broker = lab_broker(1, username="kuat", password="hunter2-secret")
    rx = MqttScheduleReceiver(broker, ["t"], on_document=Inbox())
    assert "hunter2" not in repr(broker)
    assert "hunter2" not in repr(rx)


# --- issue 11 ------------------------------------------------------------------------------


async def test_an_empty_order_list_is_no_documents_and_no_error(  # type: ignore[no-untyped-def]
    client, caplog: pytest.LogCaptureFixture
) -> None:
    handler = script(Reply(200, {"Content-Type": "application/json", "ETag": "e"}, b"[]"))
    async with HttpServer(handler) as srv:
        src = HttpScheduleSource(srv.url + "/orders", token=None, interval_s=60, client=client)
        with caplog.at_level(logging.WARNING):
            assert await src.fetch() == []
        assert src.last_error is None and not caplog.records


async def test_one_bad_document_does_not_hide_the_good_one(client) -> None:  # type: ignore[no-untyped-def]
    bad = dict(schedule_json(2), mwh=[10**400] + [1.0] * 23)  # OverflowError before issue 11
    body = json.dumps({"schedules": [bad, schedule_json(2, "bilateral")]})
    async with HttpServer(etag_handler(body.encode(), '"b"', "application/json")) as srv:
        src = HttpScheduleSource(srv.url + "/s", token=None, interval_s=60, client=client)
        docs = await src.fetch()
        assert docs is not None
        book = ScheduleBook()
        outcomes = [book.offer(t, f, description=f"doc {i}").outcome for i, (t, f) in
                    enumerate(docs)]  # fmt: skip
        assert outcomes == [BookOutcome.REFUSED, BookOutcome.ADDED]
        assert await src.fetch() is None and src.last_status == 304  # and it stays loaded
        assert len(book) == 1


def test_quota_broker_unreachable_from_the_start_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    rx = MqttScheduleReceiver(
        lab_broker(port, reconnect_max_s=0.2), quota_topics(SITE), on_document=lambda *_: None
    )
    with caplog.at_level(logging.DEBUG, logger="kuat.quota.source"):
        rx.start()
        time.sleep(1.5)
        rx.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"quota broker 127.0.0.1:{port} unreachable: cannot connect; retrying"]
