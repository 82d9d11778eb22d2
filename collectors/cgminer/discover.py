"""Find miners on a network: a TCP connect probe per host:port, then one real poll of each open
cgminer API port to say what answers there.

Targets use the config's hosts syntax (an address, a CIDR block without its network and
broadcast addresses, or an inclusive ``a-b`` range), so what ``kuat discover`` scans is exactly
what a ``[[asic.groups]]`` entry would poll. Addresses are expanded lazily and fed to a fixed
pool of workers: a /16 with three ports is ~200,000 probes, and a task (or even a string) per
probe up front is memory and scheduler time for nothing.

Port roles: the web port (80 unless told otherwise) and 4433 (Whatsminer API v3, a different,
length-framed protocol) are only recorded as open; every other port is treated as a
cgminer-family API and polled with :class:`AsicPoller`, exactly as the agent would poll it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from kuat.collectors.cgminer.collector import AsicPoller, web_api_ports
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.common import is_web
from kuat.collectors.cgminer.parsers import SPECS
from kuat.collectors.cgminer.ports import DEFAULT_PORTS, DEFAULT_WEB_PORT, WHATSMINER_V3_PORT
from kuat.collectors.errors import KuatError
from kuat.collectors.readings import AsicReading

# Same cap as agent.config.expand_hosts, so an entry discover accepts is one a config accepts.
MAX_HOSTS_PER_ENTRY = 65536
# An open API port is a miner that is there: give its poll (and a stock Antminer's slow web CGI)
# at least this long, even when the connect probe's timeout is short to get through empty space.
MIN_IDENTIFY_TIMEOUT_S = 3.0
# Running out of descriptors or buffers says nothing about the host: a probe that hits these
# must stop the scan, never report the address as empty.
_LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Found:
    """One open host:port. ``vendor`` etc. are None when the device did not say (or was not
    asked: web and API v3 ports); ``note`` says what was seen there in words."""

    ip: str
    port: int
    vendor: str | None
    model: str | None
    firmware_family: str | None
    serial: str | None
    mac: str | None
    hashrate_ths: float | None
    note: str

    @property
    def identified(self) -> bool:
        """True if a cgminer-family API answered here: a miner the agent can poll."""
        return self.firmware_family is not None


class ScanError(KuatError, RuntimeError):
    """The scan could not go on for a local reason (out of file descriptors, say)."""


# --- targets ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """An inclusive run of addresses of one IP version, as integers."""

    version: int
    lo: int
    hi: int

    def __len__(self) -> int:
        return self.hi - self.lo + 1


def parse_entry(entry: str) -> Span:
    """One hosts entry -> its span, with agent.config.expand_hosts's semantics and messages,
    but without building a list of addresses. Raises ValueError naming the entry."""
    text = entry.strip()
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if net.num_addresses > MAX_HOSTS_PER_ENTRY:
                raise ValueError(f"{text!r} has more than {MAX_HOSTS_PER_ENTRY} addresses")
            lo, hi = int(net.network_address), int(net.broadcast_address)
            # as ipaddress's hosts(): a /31 or /32 (/127, /128) keeps every address
            if net.num_addresses > 2:
                lo, hi = lo + 1, hi - 1 if net.version == 4 else hi
            return Span(net.version, lo, hi)
        if "-" in text:
            lo_s, hi_s = (p.strip() for p in text.split("-", 1))
            a, b = ipaddress.ip_address(lo_s), ipaddress.ip_address(hi_s)
            if a.version != b.version or int(b) < int(a):
                raise ValueError(f"{text!r} is not an ascending range")
            if int(b) - int(a) >= MAX_HOSTS_PER_ENTRY:
                raise ValueError(f"{text!r} has more than {MAX_HOSTS_PER_ENTRY} addresses")
            return Span(a.version, int(a), int(b))
        ip = ipaddress.ip_address(text)
        return Span(ip.version, int(ip), int(ip))
    except ValueError as exc:
        if str(exc).startswith(repr(text)):
            raise
        raise ValueError(f"{text!r} is not an address, CIDR block or a-b range") from None


def merge_spans(entries: Iterable[str]) -> list[Span]:
    """Parse every entry (all errors before any traffic) and merge overlaps, so an address
    given twice (a /24 and one of its addresses) is probed once and counted once."""
    spans = sorted((parse_entry(e) for e in entries), key=lambda s: (s.version, s.lo))
    out: list[Span] = []
    for s in spans:
        last = out[-1] if out else None
        if last is not None and last.version == s.version and s.lo <= last.hi + 1:
            out[-1] = Span(s.version, last.lo, max(last.hi, s.hi))
        else:
            out.append(s)
    return out


def _addr(version: int, value: int) -> str:
    # ipaddress.ip_address(int) makes any value below 2**32 an IPv4 address, ::1 included
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def iter_addresses(spans: Iterable[Span]) -> Iterator[str]:
    for s in spans:
        for i in range(s.lo, s.hi + 1):
            yield _addr(s.version, i)


def ip_key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return a.version, int(a)


# --- probing ----------------------------------------------------------------------------


async def port_open(host: str, port: int, timeout_s: float) -> bool:
    """A TCP connect and an immediate close: nothing is sent, so no device logs a bad request."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except TimeoutError:
        return False
    except OSError as exc:
        if exc.errno in _LOCAL_ERRNOS:
            raise ScanError(f"cannot open a socket to {host}:{port}: {exc.strerror}") from exc
        return False  # refused, unreachable, reset: nothing usable there
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), timeout_s)
    return True


# what a person calls the identity fields a backend may read from its web API
_IDENTITY = {"serial": "serial", "mac": "MAC"}


def _identity_note(r: AsicReading, why: str) -> str:
    """Why a miner is known by its address alone: its backend reads its identity from its web
    API (a stock Antminer's web UI, Braiins OS's REST API, …), and that gave none of it."""
    spec = SPECS[Firmware(r.firmware_family)] if r.firmware_family in SPECS else None
    if spec is None or spec.web is None:
        return ""
    web = [f for f in _IDENTITY if (s := spec.fields.get(f)) and any(map(is_web, s.commands))]
    if not web or any(getattr(r, f) is not None for f in web):
        return ""
    return f"; no {' or '.join(_IDENTITY[f] for f in web)} from {spec.web.name} ({why})"


def _from_reading(r: AsicReading, why_no_serial: str) -> Found:
    note = "cgminer API" if r.state == "mining" else f"cgminer API, {r.state}"
    note += _identity_note(r, why_no_serial)
    return Found(
        ip=r.ip,
        port=r.port,
        vendor=r.vendor,
        model=r.model,
        firmware_family=r.firmware_family,
        serial=r.serial,
        mac=r.mac,
        hashrate_ths=r.hashrate_ths,
        note=note,
    )


def _open_only(host: str, port: int, note: str) -> Found:
    return Found(host, port, None, None, None, None, None, None, note)


async def discover(
    hosts: Iterable[str],
    ports: Sequence[int] = DEFAULT_PORTS,
    *,
    timeout_s: float = 1.0,
    concurrency: int = 256,
    on_progress: Progress | None = None,
    web_port: int = DEFAULT_WEB_PORT,
    web_username: str = "root",
    web_password: str = "root",
) -> list[Found]:
    """Probe every address of ``hosts`` (entries in the config's hosts syntax) on ``ports``.

    ``timeout_s`` bounds each connect probe; an open API port gets at least
    MIN_IDENTIFY_TIMEOUT_S for its poll. ``concurrency`` is the number of probes (or polls) in
    flight. ``on_progress(done, total)`` counts addresses, and is called once with (0, total)
    before the first probe. Raises ValueError for a bad entry or argument (before any traffic)
    and ScanError when the host runs out of sockets. Results are sorted by IP, then port.
    """
    spans = merge_spans(hosts)
    ports = list(dict.fromkeys(ports))  # a port given twice is probed once
    if not ports:
        raise ValueError("no ports to probe")
    for p in ports:
        if not 1 <= p <= 65535:
            raise ValueError(f"port {p} is not 1-65535")
    if timeout_s <= 0:
        raise ValueError("timeout must be positive")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    total = sum(len(s) for s in spans)
    identify_s = max(timeout_s, MIN_IDENTIFY_TIMEOUT_S)
    # every backend's web API (the stock web UI's identity, a REST API…) on the web port, and
    # only when that port is in the scan: an operator who left it out does not want it touched
    on = web_port if web_port in ports else None
    poller = AsicPoller(
        timeout_s=identify_s,
        concurrency=concurrency,
        web_username=web_username,
        web_password=web_password,
        web_timeout_s=identify_s,
        **dict.fromkeys(web_api_ports(), on),
    )
    found: list[Found] = []
    # ports left to probe per address; an address is done (for progress) when it reaches zero.
    # Workers take (address, port) pairs in address order, so only the ~concurrency addresses
    # in flight are ever in this dict.
    left: dict[str, int] = {}
    done = 0
    # One lazy iterator shared by a fixed pool of ``concurrency`` workers, each doing one probe
    # (or poll) at a time: the pool is the bound, and nothing is created per address up front.
    pairs = ((ip, port) for ip in iter_addresses(spans) for port in ports)

    if on_progress is not None:
        on_progress(0, total)

    async def probe(ip: str, port: int) -> Found | None:
        if not await port_open(ip, port, timeout_s):
            return None
        if port == web_port:
            return _open_only(ip, port, "web UI port open")
        if port == WHATSMINER_V3_PORT:
            return _open_only(ip, port, "Whatsminer API v3 port open (not queried)")
        result = await poller.poll(ip, port, wait_identity=True)
        if isinstance(result, AsicReading):
            if web_port not in ports:
                why = f"port {web_port} not scanned"
            else:
                why = poller.identity_error(ip, port) or "no answer in time"
            return _from_reading(result, why)
        return _open_only(ip, port, f"port open, no usable cgminer API reply: {result.cause}")

    async def worker() -> None:
        nonlocal done
        # a shared iterator: each pair is taken by exactly one worker, when it is free
        for ip, port in pairs:
            left.setdefault(ip, len(ports))
            f = await probe(ip, port)
            if f is not None:
                found.append(f)
            left[ip] -= 1
            if left[ip] == 0:
                del left[ip]
                done += 1
                if on_progress is not None:
                    on_progress(done, total)

    try:
        n = min(concurrency, total * len(ports))
        if n:
            await asyncio.gather(*(worker() for _ in range(n)))
    finally:
        await poller.aclose()
    found.sort(key=lambda f: (*ip_key(f.ip), f.port))
    return found


# --- what to do with the results -------------------------------------------------------


def product_line(f: Found) -> str:
    """Antminer, Whatsminer, …: the model's first word, which is what operators count by
    (LuxOS and Braiins OS boxes are Antminers too); the vendor when there is no model."""
    if f.model:
        return f.model.split()[0]
    return f.vendor or f.firmware_family or "unknown"


def compact_ranges(ips: Iterable[str]) -> list[str]:
    """Addresses -> hosts entries: consecutive addresses merged into ``a-b`` ranges."""
    keys = sorted({ip_key(ip) for ip in ips})
    out: list[str] = []
    i = 0
    while i < len(keys):
        j = i
        while j + 1 < len(keys) and keys[j + 1] == (keys[j][0], keys[j][1] + 1):
            j += 1
        lo, hi = _addr(*keys[i]), _addr(*keys[j])
        out.append(lo if i == j else f"{lo}-{hi}")
        i = j + 1
    return out


def _toml_str(s: str) -> str:
    # entries are addresses and ranges, but quote properly anyway: this text becomes config
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_fragment(found: Sequence[Found], header: str = "") -> str:
    """``[[asic.groups]]`` tables, one per API port, for every identified miner: the text to
    append to a config that has its ``[site]``. Web-only and API-v3-only hosts are listed in a
    comment, not as groups: the agent polls the cgminer API, and there is none to poll there."""
    by_port: dict[int, list[str]] = {}
    for f in found:
        if f.identified:
            by_port.setdefault(f.port, []).append(f.ip)
    miner_ips = {f.ip for f in found if f.identified}
    others = sorted({f.ip for f in found if f.ip not in miner_ips}, key=ip_key)
    lines = [f"# {line}" for line in header.splitlines()]
    for port in sorted(by_port):
        ips = by_port[port]
        entries = compact_ranges(ips)
        lines += ["", "[[asic.groups]]", f"# {len(set(ips))} miners"]
        if port != 4028:
            lines.append(f"port = {port}")
        if len(entries) <= 4:
            lines.append(f"hosts = [{', '.join(_toml_str(e) for e in entries)}]")
        else:
            lines += ["hosts = [", *(f"    {_toml_str(e)}," for e in entries), "]"]
    if others:
        lines += ["", "# open ports but no cgminer API (not added):"]
        lines += [f"#   {ip}" for ip in others]
    return "\n".join(lines).lstrip("\n") + "\n"
