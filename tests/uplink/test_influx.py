from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.collectors.readings import AsicReading, MeterReading
from kuat.uplink.influx import InfluxUplink
from kuat.uplink.lineproto import encode
from kuat.uplink.spool import Spool
from tests.servers import VictoriaMetrics, free_port
from tests.uplink.strict_influx import StrictInflux

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool.db") as sp:
        yield sp


def readings(site_serial: str, n: int, start: int = 0) -> list[AsicReading | MeterReading]:
    out: list[AsicReading | MeterReading] = []
    for i in range(start, start + n):
        t = T0 + timedelta(seconds=30 * i)
        out.append(
            AsicReading(
                ip="10.0.0.1",
                port=4028,
                taken_at=t,
                serial=site_serial,
                model="S21",
                hashrate_ths=200.0 + i,
                power_w=3500.0,
            )
        )
        out.append(
            MeterReading(host="10.9.0.1", unit=1, profile="abb-m4m", taken_at=t, p_kw=float(i))
        )
    return out


def uplink(url: str | None, spool: Spool, **kw: object) -> InfluxUplink:
    return InfluxUplink(
        url,
        kw.pop("token", None),
        "farm",
        "telemetry",
        spool,  # type: ignore[arg-type]
        timeout_s=2,
        min_backoff_s=0,
        **kw,
    )  # type: ignore[arg-type]


@pytest.mark.servers
async def test_points_reach_victoria_metrics(
    victoria_metrics: VictoriaMetrics, spool: Spool
) -> None:
    spool.put_lines(encode(readings("VM-A", 30), "vm-a"))
    up = uplink(victoria_metrics.url, spool, batch_lines=7)
    report = await up.flush()
    assert report.outcome == "ok" and report.sent == 60 and report.pending == 0
    assert report.requests == 9  # ceil(60 / 7)
    (hr,) = victoria_metrics.export('{__name__="asic_hashrate_ths", site="vm-a"}')
    assert hr["values"] == [200.0 + i for i in range(30)]
    (pk,) = victoria_metrics.export('{__name__="meter_p_kw", site="vm-a"}')
    assert len(pk["values"]) == 30
    assert (await up.flush()).outcome == "idle"
    up.close()


class _BehindPrefix(VictoriaMetrics):
    """A VictoriaMetrics that serves only under ``/insert/0`` (``-http.pathPrefix``): a write
    that lost its URL's path gets a 404 here."""

    PREFIX = "/insert/0"

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, None, f"-http.pathPrefix={self.PREFIX}")

    @property
    def url(self) -> str:
        return super().url + self.PREFIX


@pytest.mark.servers
async def test_a_url_with_a_path_keeps_it(tmp_path: Path, spool: Spool) -> None:
    # A VictoriaMetrics cluster takes InfluxDB writes at http://vminsert:8480/insert/<tenant>/
    # influx/api/v2/write: [influx] url = "http://vminsert:8480/insert/0/influx" must keep its
    # path (docs/deployment.md).
    server = _BehindPrefix(tmp_path / "vm")
    server.start()
    try:
        spool.put_lines(encode(readings("VM-P", 3), "vm-p"))
        up = uplink(server.url + "/influx", spool)
        report = await up.flush()
        assert report.outcome == "ok" and report.sent == 6, report
        (hr,) = server.export('{__name__="asic_hashrate_ths", site="vm-p"}')
        assert hr["values"] == [200.0, 201.0, 202.0]
        up.close()
    finally:
        server.stop()


@pytest.mark.servers
def test_outage_then_every_point_exactly_once(
    victoria_metrics: VictoriaMetrics, spool: Spool
) -> None:
    up = uplink(victoria_metrics.url, spool, batch_lines=25)
    spool.put_lines(encode(readings("VM-B", 10), "vm-b"))
    assert up.flush_sync().sent == 20
    victoria_metrics.stop()
    try:
        for k in (1, 2):  # two flushes while the server is down
            spool.put_lines(encode(readings("VM-B", 10, start=10 * k), "vm-b"))
            report = up.flush_sync()
            assert report.outcome == "retry" and report.sent == 0
            assert report.http_status is None and report.error
            assert report.pending == 20 * k
    finally:
        victoria_metrics.start()
    spool.put_lines(encode(readings("VM-B", 10, start=30), "vm-b"))
    report = up.flush_sync()
    assert report.outcome == "ok" and report.sent == 60 and report.pending == 0
    for name in ("asic_hashrate_ths", "meter_p_kw"):
        (series,) = victoria_metrics.export(f'{{__name__="{name}", site="vm-b"}}')
        expected = [int((T0 + timedelta(seconds=30 * i)).timestamp() * 1000) for i in range(40)]
        assert series["timestamps"] == expected  # every point, once, in order
    up.close()


def test_bad_lines_dead_lettered_rest_written(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    good = encode(readings("G", 20), "s")
    lines = [*good[:13], "asic,site=s hashrate_ths=oops 1", *good[13:], "bad-line-2"]
    spool.put_lines(lines)
    with StrictInflux() as server, caplog.at_level(logging.ERROR, logger="kuat.uplink.influx"):
        up = uplink(server.url, spool)
        report = up.flush_sync()
        assert report.outcome == "ok"
        assert (report.sent, report.dead_lettered, report.pending) == (40, 2, 0)
        assert server.points == good  # order kept
        up.close()
    assert "asic,site=s hashrate_ths=oops 1" in caplog.text  # the first bad line is named
    assert [ln for ln, _ in spool.dead_lines()] == ["bad-line-2", "asic,site=s hashrate_ths=oops 1"]
    assert "HTTP 400" in spool.dead_lines()[0][1]
    assert spool.counts().dead == 2


def test_413_splits_batch(spool: Spool) -> None:
    lines = encode(readings("BIG", 50), "s")
    spool.put_lines([*lines, "huge v=" + "1" * 5000])
    with StrictInflux(max_body=2000) as server:
        up = uplink(server.url, spool)
        report = up.flush_sync()
        assert report.sent == 100 and report.dead_lettered == 1
        assert server.points == lines
        up.close()


def test_429_honours_retry_after_then_recovers(spool: Spool) -> None:
    spool.put_lines(encode(readings("R", 3), "s"))
    with StrictInflux() as server:
        server.fail_next = [(429, {"Retry-After": "7"}), (503, {})]
        up = InfluxUplink(server.url, None, "o", "b", spool, min_backoff_s=0.5)
        report = up.flush_sync()
        assert (report.outcome, report.http_status, report.retry_in_s) == ("retry", 429, 7.0)
        assert report.pending == 6
        assert up.flush_sync().outcome == "backoff"  # not before Retry-After
        report = up.flush_sync(force=True)
        assert (report.outcome, report.http_status) == ("retry", 503)
        assert 0.3 < (report.retry_in_s or 0) < 1.5  # exponential, second failure
        report = up.flush_sync(force=True)
        assert report.outcome == "ok" and report.sent == 6
        assert server.requests == 3
        up.close()


def test_auth_failure_keeps_data_and_alerts(spool: Spool) -> None:
    spool.put_lines(encode(readings("A", 2), "s"))
    with StrictInflux(token="right-token") as server:
        bad = uplink(server.url, spool, token="wrong-token")
        report = bad.flush_sync()
        assert report.outcome == "auth" and report.auth_alert and report.http_status == 401
        assert report.pending == 4 and server.points == []
        assert "wrong-token" not in repr(bad) and "wrong-token" not in str(report)
        bad.close()
        good = uplink(server.url, spool, token="right-token")
        assert good.flush_sync().sent == 4
        good.close()


def test_connection_refused_is_retry(spool: Spool) -> None:
    spool.put_lines(["m v=1i 1"])
    up = uplink(f"http://127.0.0.1:{free_port()}", spool)
    report = up.flush_sync()
    assert report.outcome == "retry" and report.pending == 1 and not report.auth_alert
    up.close()


@pytest.mark.parametrize("answer", ["refused", "401"])
def test_credentials_in_the_url_never_reach_the_log_or_repr(
    spool: Spool, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    spool.put_lines(["m v=1i 1"])
    with StrictInflux(token="right-token") as server:
        port = server.url.rsplit(":", 1)[1] if answer == "401" else str(free_port())
        url = f"http://kuat-writer:s3cr3t-Pa55word@127.0.0.1:{port}"
        up = uplink(url, spool, token="wrong-token")
        with caplog.at_level(logging.DEBUG):
            report = up.flush_sync()
        assert report.outcome in ("retry", "auth") and report.pending == 1
        shown = caplog.text + repr(up) + str(report)
        assert "s3cr3t-Pa55word" not in shown and "kuat-writer" not in shown
        assert f"127.0.0.1:{port}" in caplog.text  # still says which server
        up.close()


async def test_no_server_configured_keeps_spool(spool: Spool) -> None:
    spool.put_lines(["m v=1i 1"])
    up = uplink(None, spool)
    report = await up.flush()
    assert report.outcome == "disabled" and report.pending == 1
    assert spool.counts().pending == 1


@pytest.mark.servers
def test_https_with_private_ca(tmp_path: Path, spool: Spool) -> None:
    from tests.servers import make_tls_files

    tls = make_tls_files(tmp_path / "tls")
    with VictoriaMetrics(tmp_path / "vm-tls", tls=tls) as vm:
        assert vm.url.startswith("https://")
        spool.put_lines(encode(readings("TLS", 2), "tls"))
        unverified = uplink(vm.url, spool)  # system CAs do not know our test CA
        report = unverified.flush_sync()
        assert report.outcome == "retry" and report.pending == 4
        assert "SSL" in (report.error or "") or "certificate" in (report.error or "").lower()
        unverified.close()
        up = uplink(vm.url, spool, ca_cert=tls.ca_cert)
        assert up.flush_sync().sent == 4
        up.close()
        (s,) = vm.export('{__name__="asic_hashrate_ths", site="tls"}')
        assert len(s["values"]) == 2
