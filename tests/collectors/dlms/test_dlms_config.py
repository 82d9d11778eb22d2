"""DLMS config keys: HDLC on a serial line, HLS-GMAC keys from files or systemd credentials —
checked at start, never shown — and a wrong key reported for the meter it belongs to."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from kuat.agent.config import ConfigError, parse_config
from kuat.agent.runtime import Agent, dlms_meter
from kuat.collectors.dlms.sim import DlmsMeterSimulator
from kuat.collectors.readings import DeviceError, MeterReading

EK = "000102030405060708090a0b0c0d0e0f"
AK = "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"


def config(tmp_path: Path, meter: str) -> str:
    return f"""
[site]
id = "ekibastuz-1"
owner_bin = "123456789012"
[agent]
state_dir = "{tmp_path / "state"}"
[[meter]]
name = "tariff"
protocol = "dlms"
role = "commercial"
{meter}
"""


def test_hdlc_on_a_serial_line_is_configured(tmp_path: Path) -> None:
    cfg = parse_config(
        config(
            tmp_path,
            'serial_port = "/dev/ttyUSB0"\nbaudrate = 19200\nphysical_address = 2345\n'
            "client_address = 32\nserver_address = 1",
        )
    )
    m = dlms_meter(cfg.meter[0])
    assert (m.serial_port, m.baudrate, m.transport) == ("/dev/ttyUSB0", 19200, "hdlc")
    assert (m.client_address, m.server_address, m.physical_address) == (32, 1, 2345)
    with pytest.raises(ConfigError, match=r"host .* or serial_port"):
        parse_config(config(tmp_path, 'host = "10.0.0.5"\nserial_port = "/dev/ttyUSB0"'))


def test_hls_keys_from_a_file_and_a_credential_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ek").write_text(EK + "\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "tariff-ak").write_text(AK)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = parse_config(
        config(
            tmp_path,
            f'host = "127.0.0.1"\nclient_address = 48\n'
            f'encryption_key = {{ file = "{tmp_path / "ek"}" }}\n'
            'authentication_key = { credential = "tariff-ak" }\n'
            'system_title = "4B55415400000007"',
        )
    )
    m = dlms_meter(cfg.meter[0])
    assert m.encryption_key == bytes.fromhex(EK) and m.authentication_key == bytes.fromhex(AK)
    assert m.system_title == b"KUAT\x00\x00\x00\x07"
    shown = repr(cfg) + str(cfg) + repr(m) + str(cfg.model_dump())
    assert EK not in shown.lower() and AK not in shown.lower()
    assert repr(bytes.fromhex(EK)) not in shown


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        (f'encryption_key = "{EK}"', "encryption_key is given without authentication_key"),
        (
            f'encryption_key = "{EK[:-2]}"\nauthentication_key = "{AK}"',
            "encryption_key must be 32 hex digits",
        ),
        (
            f'encryption_key = "{EK}"\nauthentication_key = "{AK}"\npassword = "12345678"',
            "exclude each other",
        ),
        ('system_title = "KUAT"', "system_title"),
        ('invocation_counter_obis = "0.0.43.1"', "invocation_counter_obis"),
    ],
)
def test_bad_hls_settings_are_refused_naming_the_key(tmp_path: Path, keys: str, says: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(config(tmp_path, f'host = "127.0.0.1"\n{keys}'))
    assert says in str(exc.value)
    assert EK[:-2] not in str(exc.value)  # a key's value is never quoted back


async def test_a_wrong_key_is_that_meters_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with DlmsMeterSimulator("spodes", hls_keys=(bytes.fromhex(EK), bytes.fromhex(AK))) as s:
        s.set(p_kw=100.0, import_kwh=10.0)
        wrong = "ff" * 16
        cfg = parse_config(
            config(
                tmp_path,
                f'host = "{s.host}"\nport = {s.port}\nclient_address = 48\n'
                f'encryption_key = "{EK}"\nauthentication_key = "{wrong}"\ntimeout_s = 3',
            )
        )
        agent = Agent(cfg)
        caplog.set_level(logging.INFO)
        try:
            await agent._poll_meter(cfg.meter[0], time.monotonic())
            got = agent.state.meters["tariff"]
            assert isinstance(got, DeviceError), got
            assert "association refused with HLS-GMAC" in got.cause
            assert "authentication_key of [[meter]] tariff is not this meter's" in got.cause
            await agent.reconcile()
            assert "load profile of tariff not read: association refused with HLS-GMAC" in (
                caplog.text
            )
            assert wrong not in caplog.text and AK not in caplog.text
        finally:
            agent.ledger.close()
        # the right key: the same meter reads
        good = parse_config(
            config(
                tmp_path,
                f'host = "{s.host}"\nport = {s.port}\nclient_address = 48\n'
                f'encryption_key = "{EK}"\nauthentication_key = "{AK}"\ntimeout_s = 3',
            )
        )
        agent = Agent(good)
        try:
            await agent._poll_meter(good.meter[0], time.monotonic())
            assert isinstance(agent.state.meters["tariff"], MeterReading)
        finally:
            agent.ledger.close()
