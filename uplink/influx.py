"""Telemetry writer: spool → InfluxDB v2 write API (or anything speaking it, e.g. VictoriaMetrics).

Uses influxdb-client's write API in SYNCHRONOUS mode only: its batching mode acknowledges
points before the server has them and drops them on errors. A spooled batch is ``ack``-ed
only after the server answered 2xx.

Server answers and what happens to the batch:

==================  ===========================================================================
2xx                 acked (removed from the spool)
413                 split in halves and retried; a single line still too large is dead-lettered
400 / 422           bisected to find the bad lines; those are dead-lettered (first one logged),
                    the rest written
401 / 403           kept; ``FlushReport.auth_alert`` set; backoff
429 / 5xx / network kept; backoff (``Retry-After`` honoured, else exponential), reported
==================  ===========================================================================

Threading: ``flush_sync`` blocks on HTTP; the agent awaits ``flush()`` which runs it in a
worker thread. Flushes are serialised by a lock; run one ``InfluxUplink`` per spool.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import threading
import time
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from kuat.uplink.spool import Batch, Spool, SpoolFull

__all__ = ["FlushOutcome", "FlushReport", "InfluxUplink"]

log = logging.getLogger(__name__)

FlushOutcome = Literal["ok", "idle", "disabled", "backoff", "retry", "auth"]


@dataclass(frozen=True, slots=True)
class FlushReport:
    outcome: FlushOutcome  # ok: sent something; idle: nothing to send; others: see module doc
    sent: int = 0  # lines the server accepted in this flush
    requests: int = 0  # write requests made
    dead_lettered: int = 0
    pending: int = 0  # lines still spooled afterwards
    http_status: int | None = None  # of the failure that stopped the flush
    error: str | None = None  # one line, for logs and the dashboard
    retry_in_s: float | None = None  # backoff before the next attempt
    auth_alert: bool = False  # credentials rejected (401/403): an operator must act


class _Stop(Exception):
    """A failure that keeps the batch and ends this flush."""

    def __init__(self, status: int | None, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


def _retry_after(headers: object) -> float | None:
    value = None
    if headers is not None:
        try:
            value = headers.get("Retry-After")  # type: ignore[attr-defined]
        except AttributeError:
            value = None
    if not value:
        return None
    value = str(value).strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def redact_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (kept otherwise as written: path and query matter
    to an operator reading which endpoint failed)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _userinfo_parts(url: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    found = [p for p in (parts.password, parts.username) if p]
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        found.insert(0, userinfo)
        found += [urllib.parse.unquote(p) for p in found]
    # longest first, so "user:pass" goes before "pass"; very short names stay (never secret)
    return sorted({p for p in found if len(p) >= 3}, key=len, reverse=True)


def _body_text(body: object, limit: int = 300) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return " ".join(str(body or "").split())[:limit]


class InfluxUplink:
    """Drains a ``Spool``'s telemetry into an InfluxDB v2-compatible write endpoint."""

    def __init__(
        self,
        url: str | None,
        token: str | None,
        org: str,
        bucket: str,
        spool: Spool,
        *,
        timeout_s: float = 10,
        verify_ssl: bool = True,
        ca_cert: Path | None = None,
        batch_lines: int = 5000,
        max_batches: int = 20,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.url = url
        # user:password in the URL is a credential: logs and reprs show the URL without it.
        self.shown_url = redact_userinfo(url) if url else url
        self._url_secrets = _userinfo_parts(url) if url else []
        self.org = org
        self.bucket = bucket
        self.spool = spool
        self.batch_lines = batch_lines
        self.max_batches = max_batches
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self._lock = threading.Lock()
        self._failures = 0
        self._not_before = 0.0
        self._client = None
        self._write_api = None
        # Acks of delivered batches are written while the next batch is on the wire: one
        # thread, so they commit in order (bench/uplink.py: the spool replay rate).
        self._ack_pool: ThreadPoolExecutor | None = None
        self._acks: list[Future[int]] = []
        if url:
            from influxdb_client.client.influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            # retries=False: we own retrying (the batch stays spooled); debug stays off
            # because the client's debug log would print the Authorization header.
            self._client = InfluxDBClient(
                url=url,
                # influxdb-client annotates token as str but takes None (no Authorization
                # header, an InfluxDB that needs none)
                token=token,  # type: ignore[arg-type]
                org=org,
                timeout=int(timeout_s * 1000),
                verify_ssl=verify_ssl,
                ssl_ca_cert=str(ca_cert) if ca_cert else None,
                retries=False,
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def __repr__(self) -> str:  # never the token
        return f"InfluxUplink(url={self.shown_url!r}, org={self.org!r}, bucket={self.bucket!r})"

    def close(self) -> None:
        if self._ack_pool is not None:
            self._ack_pool.shutdown(wait=True)
            self._ack_pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    async def flush(self, *, force: bool = False) -> FlushReport:
        """Send what the spool holds (up to ``max_batches`` batches) from a worker thread."""
        return await asyncio.to_thread(self.flush_sync, force=force)

    def flush_sync(self, *, force: bool = False) -> FlushReport:
        """Blocking flush. ``force`` ignores the current backoff (e.g. operator's "retry now")."""
        if self._write_api is None:
            return FlushReport("disabled", pending=self.spool.counts().pending)
        with self._lock:
            wait = self._not_before - time.monotonic()
            if wait > 0 and not force:
                return FlushReport("backoff", pending=self.spool.counts().pending, retry_in_s=wait)
            return self._flush_locked()

    # --- internals ----------------------------------------------------------------------

    def _flush_locked(self) -> FlushReport:
        self._sent = self._requests = self._dead = 0
        self._logged_bad = False
        last: int | None = None
        try:
            for _ in range(self.max_batches):
                # rows of a batch whose ack is still being written are not taken again
                batch = self.spool.take(self.batch_lines, after=last)
                if not batch.ids:
                    break
                last = batch.ids[-1]
                self._deliver(batch)
        except _Stop as stop:
            self._settle_acks()
            return self._failed(stop)
        self._settle_acks()
        self._failures = 0
        self._not_before = 0.0
        return FlushReport(
            "ok" if self._requests else "idle",
            sent=self._sent,
            requests=self._requests,
            dead_lettered=self._dead,
            pending=self.spool.counts().pending,
        )

    def _failed(self, stop: _Stop) -> FlushReport:
        self._failures += 1
        auth = stop.status in (401, 403)
        if stop.retry_after_s is not None:
            delay = stop.retry_after_s
        else:
            exp = self.min_backoff_s * 2 ** min(self._failures - 1, 30)
            delay = min(self.max_backoff_s, exp) * random.uniform(0.8, 1.2)
            if auth:  # a wrong token does not fix itself quickly
                delay = self.max_backoff_s if self.min_backoff_s else 0.0
        self._not_before = time.monotonic() + delay
        pending = self.spool.counts().pending
        log.warning(
            "influx write to %s failed (%s), %d lines kept, retry in %.1f s",
            self.shown_url,
            stop.message,
            pending,
            delay,
        )
        return FlushReport(
            "auth" if auth else "retry",
            sent=self._sent,
            requests=self._requests,
            dead_lettered=self._dead,
            pending=pending,
            http_status=stop.status,
            error=stop.message,
            retry_in_s=delay,
            auth_alert=auth,
        )

    def _post(self, lines: tuple[str, ...]) -> tuple[int, str, object]:
        """Returns (status, message, headers); status 0 for a network failure."""
        from influxdb_client.rest import ApiException

        self._requests += 1
        try:
            assert self._write_api is not None
            self._write_api.write(bucket=self.bucket, org=self.org, record=list(lines))
        except ApiException as exc:
            status = int(exc.status or 0)
            reason = exc.reason or ""
            text = f"HTTP {status} {reason} {_body_text(exc.body)}".strip()
            return status, self._scrub(text), exc.headers
        except Exception as exc:  # urllib3 / socket errors: the server is unreachable
            return 0, self._scrub(f"{type(exc).__name__}: {_body_text(str(exc), 200)}"), None
        return 204, "", None

    def _deliver(self, batch: Batch) -> None:
        status, message, headers = self._post(batch.lines)
        if 200 <= status < 300:
            if self._ack_pool is None:
                self._ack_pool = ThreadPoolExecutor(1, thread_name_prefix="kuat-spool-ack")
            self._acks.append(self._ack_pool.submit(self.spool.ack, batch))
            self._sent += len(batch)
        elif status == 413 or (status in (400, 422) and len(batch) > 1):
            if len(batch) == 1:
                self._dead_letter(batch, message)
            else:
                # Halving finds the bad lines in O(bad · log n) requests and keeps the rest.
                for half in batch.split():
                    self._deliver(half)
        elif status in (400, 422):
            self._dead_letter(batch, message)
        else:
            raise _Stop(status or None, message or f"HTTP {status}", _retry_after(headers))

    def _settle_acks(self) -> None:
        """Wait for the acks in flight. One that failed (a disk error) costs a resend of its
        lines, which land on the points they already made; it is logged, not raised."""
        acks, self._acks = self._acks, []
        for f in acks:
            try:
                f.result()
            except SpoolFull as e:
                # The spool said once that the disk is full; a line per flush would bury it.
                log.debug("spool ack failed (%s); those lines will be sent again", e)
            except Exception as e:
                log.error("spool ack failed (%s); those lines will be sent again", e)

    def _scrub(self, text: str) -> str:
        # An error text may quote the URL (or its parts) back; the password never goes out.
        for secret in self._url_secrets:
            text = text.replace(secret, "***")
        return text

    def _dead_letter(self, batch: Batch, reason: str) -> None:
        if not self._logged_bad:
            self._logged_bad = True
            log.error("influx rejected line (%s), dead-lettered: %.300s", reason, batch.lines[0])
        self.spool.dead_letter(batch, reason)
        self._dead += len(batch)
