import json
from datetime import UTC, datetime

import pytest

from kuat.collectors.readings import AsicReading, PoolInfo, to_jsonable
from kuat.quota.checks import CheckStatus
from kuat.quota.pools import check_pools, pool_host
from kuat.quota.reasons import Code

T = datetime(2026, 11, 25, 4, tzinfo=UTC)
ACCREDITED = ["stratum+tcp://kz.pool-one.kz:3333", "POOL-TWO.kz", "eu.pool-three.kz:443"]


def miner(serial: str, url: str | None, state: str = "mining", active: bool = True) -> AsicReading:
    pools = (PoolInfo(url, "farm.w1", "Alive", active),) if url is not None else ()
    return AsicReading(
        ip="10.0.0.1", port=4028, taken_at=T, serial=serial, pools=pools, state=state
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("stratum+tcp://KZ.Pool-One.kz:3333", "kz.pool-one.kz"),
        (
            "stratum2+ssl://pool-two.kz/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh",
            "pool-two.kz",
        ),
        ("pool-two.kz.:443", "pool-two.kz"),
        ("pool-two.kz", "pool-two.kz"),
        ("stratum+tcp://[2001:db8::1]:3333", "2001:db8::1"),
        ("", None),
        ("stratum+tcp://:3333", None),
        ("http://[bad", None),
    ],
)
def test_pool_host(url: str, host: str | None) -> None:
    assert pool_host(url) == host


def test_all_accredited_passes() -> None:
    miners = [
        miner("A1", "stratum+tcp://kz.pool-one.kz:25"),
        miner("A2", "stratum+ssl://pool-two.KZ:700"),
        miner("A3", None, state="sleeping"),
        miner("A4", "stratum+tcp://bad.example.com:3333", state="sleeping", active=False),
    ]
    r = check_pools(miners, ACCREDITED, data_centre_registered=True, data_centre_id="ЦОД-42")
    assert (r.item, r.status, r.offenders, r.miners_checked) == ("7", CheckStatus.PASS, (), 2)
    assert r.reasons[0].code == Code.POOLS_OK


def test_offenders_listed() -> None:
    miners = [
        miner("A1", "stratum+tcp://kz.pool-one.kz:25"),
        miner("B1", "stratum+tcp://btc.foreign-pool.com:3333"),
        miner("B2", "stratum+tcp://kz.pool-one.kz.evil.com:3333"),  # suffix tricks do not match
        miner("B3", None),
        miner("B4", "stratum+tcp://btc.foreign-pool.com:443", state="error"),
    ]
    r = check_pools(miners, ACCREDITED, data_centre_registered=True, data_centre_id="ЦОД-42")
    assert r.status is CheckStatus.FAIL
    assert [(o.device_id, o.reason.code) for o in r.offenders] == [
        ("B1", Code.POOLS_MINER_NOT_ACCREDITED),
        ("B2", Code.POOLS_MINER_NOT_ACCREDITED),
        ("B3", Code.POOLS_MINER_NO_POOL),
        ("B4", Code.POOLS_MINER_NOT_ACCREDITED),
    ]
    # each offender's reason is made from its fields when read (not kept per miner)
    assert r.offenders[0].reason.params == {"device_id": "B1", "pool": "btc.foreign-pool.com"}
    assert r.offenders[2].reason.params == {"device_id": "B3"}
    assert [x.code for x in r.reasons] == [Code.POOLS_NOT_ACCREDITED, Code.POOLS_NONE_ACTIVE]
    assert r.reasons[0].params == {
        "miners": 3,
        "pools": ["btc.foreign-pool.com", "kz.pool-one.kz.evil.com"],
    }
    json.dumps(to_jsonable(r))


@pytest.mark.parametrize(
    ("registered", "dc_id", "accredited", "miners", "status", "codes"),
    [
        (False, "ЦОД-42", ACCREDITED, [], CheckStatus.FAIL, [Code.DC_NOT_REGISTERED]),
        (True, "", ACCREDITED, [], CheckStatus.FAIL, [Code.DC_NOT_REGISTERED]),
        (True, "ЦОД-42", [], [], CheckStatus.FAIL, [Code.POOLS_LIST_EMPTY]),
        (True, "ЦОД-42", ACCREDITED, [], CheckStatus.UNKNOWN, [Code.POOLS_NO_MINERS]),
    ],
)
def test_site_level(
    registered: bool,
    dc_id: str,
    accredited: list[str],
    miners: list[AsicReading],
    status: CheckStatus,
    codes: list[Code],
) -> None:
    r = check_pools(miners, accredited, data_centre_registered=registered, data_centre_id=dc_id)
    assert r.status is status and [x.code for x in r.reasons] == codes
