"""Every outgoing HTTP request of kuat goes through here.

One place decides how kuat talks HTTP, so the rules hold everywhere:

* TLS verification is on unless a config explicitly turns it off; a private CA is a file (or
  a directory) given as ``verify``, a client certificate is a ``(cert, key)`` pair.
* Proxies come from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``,
  ``NO_PROXY``) because farms behind a corporate or operator proxy set them in the systemd unit;
  ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured the same way for the default trust store.
* A request never raises for a network problem: :func:`get_with_retries` returns an
  :class:`HttpResult` whose ``error`` says what went wrong, so a job logs one line and carries on.
* Bodies are capped: a misconfigured endpoint that streams a video must not eat the edge box's
  memory.
* Secrets never reach a log: URLs are logged without user info and query string, and error texts
  are scrubbed of the client's credential header values.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SENSITIVE_HEADERS",
    "HttpResult",
    "get_with_retries",
    "make_client",
    "redact_url",
]

log = logging.getLogger("kuat.http")
# httpx logs every request's full URL at INFO ("HTTP Request: GET https://…?token=…"), and
# portals that take the token in the query would put it in the journal. Our own lines say the
# same with the URL redacted; httpx's and httpcore's are for debugging and must be asked for.
for _name in ("httpx", "httpcore"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)

USER_AGENT = "kuat/0.1"
DEFAULT_MAX_BYTES = 4 * 1024 * 1024  # a day's schedule is a few KB; orders are smaller still
# A Retry-After longer than this is not slept inside a job (jobs have their own deadline); the
# result reports it and the next scheduled run tries again.
MAX_RETRY_AFTER_S = 60.0
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token"}
)


def make_client(
    *,
    timeout_s: float = 10.0,
    verify: bool | Path = True,
    cert: tuple[Path, Path] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with kuat's defaults; the caller closes it (``aclose``).

    ``verify``: ``True`` (system/certifi trust store, or ``SSL_CERT_FILE``), ``False`` (lab only),
    or the path of a CA bundle file or directory. ``cert``: client certificate and key files.
    """
    if isinstance(verify, Path):
        # A directory of hashed certs (c_rehash) or one PEM bundle: both are common on Debian.
        ctx = (
            ssl.create_default_context(capath=str(verify))
            if verify.is_dir()
            else ssl.create_default_context(cafile=str(verify))
        )
    else:
        # httpx's own builder: certifi by default, SSL_CERT_FILE/DIR with trust_env.
        ctx = httpx.create_ssl_context(verify=verify, trust_env=True)
    if cert is not None:
        # Not httpx's deprecated ``cert=``: load the pair into the context we already own.
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    merged = {"User-Agent": USER_AGENT, **(headers or {})}
    return httpx.AsyncClient(
        verify=ctx,
        timeout=httpx.Timeout(timeout_s),
        headers=merged,
        trust_env=True,
        # Energy-company portals move endpoints behind redirects; httpx drops Authorization
        # when a redirect leaves the origin (or downgrades https to http).
        follow_redirects=True,
        max_redirects=5,
    )


@dataclass(frozen=True, slots=True)
class HttpResult:
    """What one logical GET came to, after retries.

    ``status`` is the last HTTP status seen (``None`` when no response arrived at all);
    ``body`` is set only for a successful (2xx) response; ``not_modified`` is the 304 answer to
    an ``If-None-Match``; ``error`` is ``None`` exactly when the GET succeeded (2xx or 304).
    """

    status: int | None
    body: bytes | None
    etag: str | None
    not_modified: bool
    error: str | None
    content_type: str | None = None
    attempts: int = 0
    retry_after_s: float | None = None  # the server asked for more than we would sleep

    @property
    def ok(self) -> bool:
        return self.error is None


def redact_url(url: str | httpx.URL) -> str:
    """The URL without user info, query or fragment: tokens travel there on some portals."""
    try:
        u = httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError, ValueError):  # ValueError: e.g. a lone surrogate
        return "<invalid url>"
    port = f":{u.port}" if u.port else ""
    query = "?…" if u.query else ""
    return f"{u.scheme}://{u.host}{port}{u.path}{query}"


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def _secret_values(client: httpx.AsyncClient, headers: Mapping[str, str] | None) -> list[str]:
    values: list[str] = []
    for source in (client.headers, httpx.Headers(headers or {})):
        for name, value in source.items():
            if name.lower() in SENSITIVE_HEADERS:
                values.append(value)
                # "Bearer abc": the bare token may show up on its own as well.
                values.extend(part for part in value.split() if len(part) >= 8)
    return sorted(set(values), key=len, reverse=True)


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _has_cert_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class _TooLarge(Exception):
    pass


def _attempt_deadline(client: httpx.AsyncClient) -> float | None:
    # httpx timeouts are per operation (each read may take timeout_s); a server dribbling one
    # byte a second would never trip them. One attempt gets connect + read + a little in total.
    t = client.timeout
    parts = [p for p in (t.connect, t.read) if p is not None]
    return sum(parts) + 1.0 if parts else None


async def _once(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    max_bytes: int,
) -> tuple[httpx.Response, bytes]:
    async with client.stream("GET", url, headers=headers) as resp:
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise _TooLarge(f"body of {declared} bytes exceeds the cap of {max_bytes}")
        chunks: list[bytes] = []
        size = 0
        # Only read a body we will use: a 5xx page is dropped unread (and the connection with it).
        if resp.status_code < 300:
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise _TooLarge(f"body exceeds the cap of {max_bytes} bytes")
                chunks.append(chunk)
        return resp, b"".join(chunks)


async def get_with_retries(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None = None,
    attempts: int = 3,
    backoff_s: float = 1.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    headers: Mapping[str, str] | None = None,
    attempt_timeout_s: float | None = None,
    max_retry_after_s: float = MAX_RETRY_AFTER_S,
) -> HttpResult:
    """GET ``url``; retry connect errors, timeouts, 429 and 5xx; never raise for the network.

    ``etag`` is sent as ``If-None-Match``; a 304 comes back as ``not_modified=True`` with that
    etag. Backoff doubles from ``backoff_s`` with jitter (many farms polling one endpoint must
    not retry in lockstep); a Retry-After on 429/503 is honoured up to ``max_retry_after_s``.
    Cancellation is not swallowed: a job being shut down stops here.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    req_headers = dict(headers or {})
    if etag:
        req_headers["If-None-Match"] = etag
    secrets = _secret_values(client, headers)
    where = redact_url(url)
    deadline = attempt_timeout_s if attempt_timeout_s is not None else _attempt_deadline(client)
    status: int | None = None
    error = "no attempt made"
    retry_after: float | None = None

    for attempt in range(1, attempts + 1):
        wait = backoff_s * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
        retry_after = None
        try:
            async with asyncio.timeout(deadline):
                resp, body = await _once(client, url, req_headers, max_bytes)
        except _TooLarge as exc:
            # The same URL will be as large next time: retrying only wastes the link.
            return HttpResult(status, None, None, False, str(exc), attempts=attempt)
        except (TimeoutError, httpx.TimeoutException) as exc:
            status, error = None, f"timed out ({_describe(exc)})"
        except httpx.TransportError as exc:
            status = None
            error = _scrub(_describe(exc), secrets)
            if _has_cert_error(exc):
                # A certificate that does not verify will not verify in a second either.
                log.warning("GET %s: TLS verification failed: %s", where, error)
                return HttpResult(None, None, None, False, f"TLS: {error}", attempts=attempt)
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            # Anything else httpx or the socket layer throws is still "the network said no".
            return HttpResult(
                None, None, None, False, _scrub(_describe(exc), secrets), attempts=attempt
            )
        else:
            status = resp.status_code
            ctype = resp.headers.get("content-type")
            new_etag = resp.headers.get("etag")
            if status == 304:
                return HttpResult(304, None, new_etag or etag, True, None, ctype, attempt)
            if 200 <= status < 300:
                return HttpResult(status, body, new_etag, False, None, ctype, attempt)
            error = f"HTTP {status} {resp.reason_phrase}".strip()
            if status == 429 or status == 503:
                retry_after = _retry_after(resp.headers.get("retry-after"), time.time())
                if retry_after is not None:
                    if retry_after > max_retry_after_s:
                        log.warning(
                            "GET %s: %s, server asks to wait %.0f s; giving up this run",
                            where,
                            error,
                            retry_after,
                        )
                        return HttpResult(
                            status, None, None, False, error, ctype, attempt, retry_after
                        )
                    wait = retry_after
            elif status < 500:
                # 4xx (bad token, wrong URL) and stray 3xx: repeating the request cannot help.
                log.warning("GET %s: %s", where, error)
                return HttpResult(status, None, None, False, error, ctype, attempt)
        if attempt < attempts:
            log.info(
                "GET %s: %s (attempt %d/%d), retrying in %.1f s",
                where,
                error,
                attempt,
                attempts,
                wait,
            )
            await asyncio.sleep(wait)
    log.warning("GET %s failed after %d attempts: %s", where, attempts, error)
    return HttpResult(
        status, None, None, False, error, attempts=attempts, retry_after_s=retry_after
    )


def http_date(when: datetime) -> str:
    """An RFC 9110 HTTP-date (for tests and servers that want to send Retry-After dates)."""
    return email.utils.format_datetime(when.astimezone(UTC), usegmt=True)
