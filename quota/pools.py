"""Inspection checklist item 7: mining through an accredited digital mining pool, using a
registered data processing centre.

Pools are matched by host only, case-insensitively, ignoring scheme and port: a pool publishes
several ports (per region, per difficulty) and stratum URLs are written many ways
(``stratum+tcp://Host:3333``, ``host:443``, ``stratum2+ssl://host/pubkey``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from kuat.collectors.readings import AsicReading
from kuat.quota.checks import CheckStatus
from kuat.quota.reasons import Code, Reason


# A farm's miners name a handful of pools: each URL is parsed once, not per miner per check
# (urlsplit for each of 50,000 miners every quota interval was most of the check's time).
@lru_cache(maxsize=4096)
def pool_host(url: str) -> str | None:
    """The host of a pool URL in lower case, without port or trailing dot; None if there is none."""
    text = url.strip()
    if not text:
        return None
    if "://" not in text:
        text = "//" + text  # urlsplit only finds a host after "//"
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    return (host.rstrip(".").lower() or None) if host else None


@dataclass(frozen=True, slots=True)
class PoolOffender:
    """A miner off an accredited pool; ``pool_url`` None: it names no active pool at all."""

    device_id: str
    ip: str
    pool_url: str | None
    pool_host: str | None

    @property
    def reason(self) -> Reason:
        # made when read (a page, a report), not kept: on a farm whose pools are not yet listed
        # every miner is an offender, and a Reason with its parameters is ~0.3 KB and two
        # objects for the collector to walk per miner, from fields the offender holds anyway
        if self.pool_url is None:
            return Reason.of(Code.POOLS_MINER_NO_POOL, device_id=self.device_id)
        return Reason.of(
            Code.POOLS_MINER_NOT_ACCREDITED,
            device_id=self.device_id,
            pool=self.pool_host or self.pool_url,
        )


@dataclass(frozen=True, slots=True)
class PoolCheckResult:
    item: str
    status: CheckStatus
    reasons: tuple[Reason, ...]
    offenders: tuple[PoolOffender, ...]
    miners_checked: int


def check_pools(
    miners: Iterable[AsicReading],
    accredited: Iterable[str],
    *,
    data_centre_registered: bool,
    data_centre_id: str = "",
) -> PoolCheckResult:
    allowed = {h for h in (pool_host(a) for a in accredited) if h}
    offenders: list[PoolOffender] = []
    checked = 0
    for miner in miners:
        # AsicReading.active_pool unrolled: this runs for every miner every quota interval
        pool = None
        for p in miner.pools:
            if p.active:
                pool = p
                break
        if pool is None:
            # A sleeping or failed miner mines nowhere; only a mining one must name its pool.
            if miner.state == "mining":
                checked += 1
                offenders.append(PoolOffender(miner.device_id, miner.ip, None, None))
            continue
        checked += 1
        host = pool_host(pool.url)
        if host not in allowed:
            offenders.append(PoolOffender(miner.device_id, miner.ip, pool.url, host))

    failures: list[Reason] = []
    if not data_centre_registered or not data_centre_id.strip():
        failures.append(Reason.of(Code.DC_NOT_REGISTERED, data_centre_id=data_centre_id or None))
    if not allowed:
        failures.append(Reason.of(Code.POOLS_LIST_EMPTY))
    not_accredited = [o for o in offenders if o.pool_url is not None]
    if not_accredited:
        hosts = sorted({o.pool_host or o.pool_url or "" for o in not_accredited})
        failures.append(
            Reason.of(Code.POOLS_NOT_ACCREDITED, miners=len(not_accredited), pools=hosts[:20])
        )
    none_active = len(offenders) - len(not_accredited)
    if none_active:
        failures.append(Reason.of(Code.POOLS_NONE_ACTIVE, miners=none_active))

    if failures:
        status = CheckStatus.FAIL
        reasons = tuple(failures)
    elif checked == 0:
        status = CheckStatus.UNKNOWN
        reasons = (Reason.of(Code.POOLS_NO_MINERS),)
    else:
        status = CheckStatus.PASS
        reasons = (Reason.of(Code.POOLS_OK, miners=checked, data_centre_id=data_centre_id),)
    return PoolCheckResult("7", status, reasons, tuple(offenders), checked)
