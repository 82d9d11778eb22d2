"""Whatsminer write access: btminer API v2 (get_token + AES) and API v3 (signed set.*).

Crypto against known vectors (cross-checked with ``openssl passwd -1`` / ``openssl enc``), then
sleep, wake and power limit against the simulator over real sockets on 127.93.x.1, each
confirmed by a fresh poll; a wrong admin password is refused with a detail that never shows it.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.client import CgminerClient, decode_reply, exchange
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.control import MinerAccess
from kuat.collectors.cgminer.firmware.whatsminer import btminer_auth as A
from kuat.collectors.cgminer.firmware.whatsminer.v3 import V3Client
from kuat.collectors.cgminer.sim import AsicFarmSimulator, SimMiner
from kuat.collectors.readings import AsicReading

_ranges = itertools.count(1)
SECRET = "Kz7_pass"  # a non-default admin password, as real write access needs
ADMIN = MinerAccess(whatsminer_password=SECRET)
FAMILIES = {"whatsminer": "whatsminer", "whatsminer_v3": "whatsminer_v3"}


@asynccontextmanager
async def one_miner(personality: str, password: str = SECRET) -> AsyncIterator[SimMiner]:
    sim = AsicFarmSimulator(
        1, first_ip=f"127.93.{next(_ranges) % 250}.1", personalities=[personality]
    )
    sim.miners[0].admin_password = password
    await sim.start()
    try:
        yield sim.miners[0]
    finally:
        await sim.stop()


async def poll(m: SimMiner) -> AsicReading:
    r = await AsicPoller(web_port=None).poll(m.ip, m.port)
    assert isinstance(r, AsicReading), r
    return r


# --- crypto --------------------------------------------------------------------------------

# get_token's salt from MicroBT's API v2 examples; the body is also the factory admin hash
# found in btminer's API daemon ("admin"), and what `openssl passwd -1 -salt BQ5hoXV9 admin` gives
ADMIN_KEY = "RxmaDUO33TS7O26yeMHZ81"


def test_md5_crypt_known_vectors() -> None:
    assert A.md5_crypt_body("admin", "BQ5hoXV9") == ADMIN_KEY
    # openssl passwd -1 -salt saltsalt password
    assert A.md5_crypt_body("password", "saltsalt") == "qjXMvbEw8oaL.CzflDtaK/"


def test_v2_session_key_and_sign() -> None:
    s = A.v2_session("admin", A.V2Token(time="1234", salt="BQ5hoXV9", newsalt="zU6zJR0u"))
    assert s.key == ADMIN_KEY
    # openssl passwd -1 -salt zU6zJR0u RxmaDUO33TS7O26yeMHZ811234
    assert s.sign == "MP0NpbO0kpDEZgnXydAn01"


def test_v2_aes_known_vector_and_round_trip() -> None:
    plain = b'{"cmd":"power_on","token":"MP0NpbO0kpDEZgnXydAn01"}'
    # openssl enc -aes-256-ecb -nopad -K $(sha256 of the key) on the zero-padded text
    want = (
        "WVz5U209eNn5F0vAECDsXr9wUp6KRSlb9/6EKCwDP+hIvo3ccgcA8+IiYygDtRlN0q0lXz39UE5UzxlxOFbR6A=="
    )
    assert A.v2_encrypt(ADMIN_KEY, plain) == want
    assert A.v2_decrypt(ADMIN_KEY, want) == plain
    for n in (0, 1, 15, 16, 17, 100):
        text = b"x" * n
        assert A.v2_decrypt("k", A.v2_encrypt("k", text)) == text


def test_v2_request_is_encrypted_and_carries_the_sign() -> None:
    s = A.v2_session("admin", A.V2Token("1234", "BQ5hoXV9", "zU6zJR0u"))
    wire = json.loads(A.v2_request(s, "power_off", respbefore="true"))
    assert wire["enc"] == 1 and set(wire) == {"enc", "data"}
    inner = json.loads(A.v2_decrypt(s.key, wire["data"]))
    assert inner == {"cmd": "power_off", "token": s.sign, "respbefore": "true"}
    reply = {"enc": A.v2_encrypt(s.key, b'{"STATUS":"S","Code":131,"Msg":"API command OK"}')}
    assert A.v2_open_reply(s, reply)["Code"] == 131
    plain_error = {"STATUS": "E", "Code": 135, "Msg": "check token error"}
    assert A.v2_open_reply(s, plain_error) is plain_error


@pytest.mark.parametrize("bad", ["", "abc$def", "toolongsalt", "sp ace"])
def test_bad_salts_are_refused_without_the_password(bad: str) -> None:
    with pytest.raises(A.AuthError) as e:
        A.md5_crypt_body(SECRET, bad)
    assert SECRET not in str(e.value)


def test_v3_token_known_vector() -> None:
    # the documentation's example inputs; printf %s ... | openssl dgst -sha256 -binary | base64
    assert A.v3_token("set.miner.service", "abcdefg", "QbVy1Ou3", 1700000000) == "dgyje6kE"
    req = A.v3_set_request(
        "set.miner.service", "stop", account="super", password="abcdefg", salt="QbVy1Ou3", ts=1
    )
    assert req["token"] == A.v3_token("set.miner.service", "abcdefg", "QbVy1Ou3", 1)
    assert {k: req[k] for k in ("cmd", "ts", "account", "param")} == {
        "cmd": "set.miner.service",
        "ts": 1,
        "account": "super",
        "param": "stop",
    }
    assert "abcdefg" not in json.dumps(req)


# --- against the simulator -----------------------------------------------------------------


@pytest.mark.parametrize("personality", ["whatsminer", "whatsminer_v3"])
async def test_sleep_and_wake_are_done_and_confirmed(personality: str) -> None:
    async with one_miner(personality) as m:
        family = FAMILIES[personality]
        res = await control.sleep(m.ip, m.port, family, "quota", access=ADMIN)
        assert res.outcome == "done", res
        assert res.action == "sleep" and "sleeping" in res.detail
        r = await poll(m)
        assert r.state == "sleeping" and not r.hashrate_ths
        res = await control.wake(m.ip, m.port, family, "quota lifted", access=ADMIN)
        assert res.outcome == "done", res
        assert (await poll(m)).state == "mining"


@pytest.mark.parametrize("personality", ["whatsminer", "whatsminer_v3"])
async def test_power_limit_is_set_reported_and_drawn_under(personality: str) -> None:
    async with one_miner(personality) as m:
        family = FAMILIES[personality]
        before = await poll(m)
        assert before.power_limit_w == m.factory_limit_w
        res = await control.set_power_limit(
            m.ip,
            m.port,
            family,
            2500,
            "share 2.5 kW",
            access=ADMIN,
        )
        assert res.outcome == "done", res
        assert "2500 W" in res.detail and "share 2.5 kW" in res.detail
        for _ in range(3):
            r = await poll(m)
            assert r.power_limit_w == 2500
            assert r.power_w is not None and r.power_w <= 2500
            assert r.hashrate_ths is not None and r.hashrate_ths < before.hashrate_nominal_ths
        # raise it back to the factory limit: the miner runs at its nameplate again
        res = await control.set_power_limit(
            m.ip,
            m.port,
            family,
            m.factory_limit_w,
            "restore",
            access=ADMIN,
        )
        assert res.outcome == "done", res
        r = await poll(m)
        assert r.power_limit_w == m.factory_limit_w
        assert r.power_w is not None and r.power_w > 2500


@pytest.mark.parametrize("personality", ["whatsminer", "whatsminer_v3"])
async def test_wrong_password_is_refused_and_never_shown(
    personality: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wr0ng_pw"
    caplog.set_level(logging.DEBUG)
    async with one_miner(personality) as m:
        family = FAMILIES[personality]
        results = [
            await control.sleep(
                m.ip, m.port, family, "t", access=MinerAccess(whatsminer_password=wrong)
            ),
            await control.wake(
                m.ip, m.port, family, "t", access=MinerAccess(whatsminer_password=wrong)
            ),
            await control.set_power_limit(
                m.ip, m.port, family, 2500, "t", access=MinerAccess(whatsminer_password=wrong)
            ),
        ]
        for res in results:
            assert res.outcome == "refused", res
            assert "admin password" in res.detail
            assert wrong not in repr(res) and SECRET not in repr(res)
        assert not m.sleeping and m.power_limit_w == m.factory_limit_w
    assert wrong not in caplog.text and SECRET not in caplog.text


async def test_v2_default_password_is_refused_by_a_miner_that_changed_it() -> None:
    async with one_miner("whatsminer") as m:
        res = await control.sleep(m.ip, m.port, "whatsminer", "t")  # the default password, "admin"
        assert res.outcome == "refused" and "check token error" in res.detail
        assert not m.sleeping


async def test_v2_plain_write_commands_are_refused_like_real_firmware() -> None:
    async with one_miner("whatsminer") as m:
        client = CgminerClient()
        for cmd, param in [("power_off", "respbefore=true"), ("adjust_power_limit", "2500")]:
            reply = await client.command(m.ip, m.port, cmd, param)
            assert reply["STATUS"] == "E" and reply["Msg"] == "can't access write cmd"
        assert not m.sleeping and m.power_limit_w == m.factory_limit_w
        assert (await poll(m)).state == "mining"


async def test_v2_token_is_tied_to_the_session_that_asked_for_it() -> None:
    async with one_miner("whatsminer") as m:
        # a sign made up without get_token: right password, but a token the miner never issued
        s = A.v2_session(SECRET, A.V2Token("0000", m.v2_salt, "abcdefgh"))
        client = CgminerClient()
        raw = await exchange(
            m.ip,
            m.port,
            A.v2_request(s, "power_off", respbefore="true"),
            deadlines=client.deadlines,
            deadline_at=client.deadline(),
        )
        reply = decode_reply(raw)
        assert reply["Code"] == 135 and reply["Msg"] == "check token error"
        assert not m.sleeping


async def test_v2_limit_above_the_factory_limit_is_refused() -> None:
    async with one_miner("whatsminer") as m:
        res = await control.set_power_limit(
            m.ip,
            m.port,
            "whatsminer",
            m.factory_limit_w + 1000,
            "t",
            access=ADMIN,
        )
        assert res.outcome == "refused", res
        assert "adjust_power_limit" in res.detail and "admin password" not in res.detail
        assert m.power_limit_w == m.factory_limit_w


async def test_v3_unsigned_set_is_refused() -> None:
    async with one_miner("whatsminer_v3") as m:
        client = V3Client()
        reply = await client.command(m.ip, 4433, "set.miner.service", "stop")
        assert reply["code"] == -4 and reply["msg"] == "no permission"
        # "admin" is no account for v3 writes, whatever its password
        reply = await client.set_command(
            m.ip, 4433, "set.miner.service", "stop", account="admin", password=SECRET
        )
        assert reply["code"] == -4
        assert not m.sleeping


@pytest.mark.parametrize("family", ["whatsminer", "whatsminer_v3"])
async def test_unreachable_is_failed(family: str) -> None:
    # nothing listens on 127.93.251.x
    host = "127.93.251.7"
    res = await control.sleep(host, 4028, family, "t", timeout_s=0.5, access=ADMIN)
    assert res.outcome == "failed", res
    lim = await control.set_power_limit(host, 4028, family, 2500, "t", timeout_s=0.5, access=ADMIN)
    assert lim.outcome == "failed", lim
    assert SECRET not in res.detail + lim.detail


async def test_zero_watts_is_a_sleep_not_a_limit() -> None:
    res = await control.set_power_limit("127.93.251.8", 4028, "whatsminer", 0, "t")
    assert res.outcome == "unsupported" and "sleep" in res.detail
