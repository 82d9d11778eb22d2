"""[asic.credentials.<firmware>]: the tables the backends declare, and the old flat keys."""

from __future__ import annotations

import pytest

from kuat.agent.config import ConfigError, parse_config
from kuat.agent.i18n import message
from kuat.collectors.cgminer.access import MinerAccess, by_firmware, declared

SITE = '[site]\nid = "s1"\n'


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(SITE + text)
    return [str(p) for p in err.value.problems]


def test_a_firmware_table_reaches_the_miner_access() -> None:
    cfg = parse_config(
        SITE
        + '[asic.credentials.vnish]\npassword = "vn-pass"\n'
        + '[asic.credentials.braiins]\nweb_port = 8081\npassword = "bos"\n'
    )
    access = cfg.asic.miner_access()
    assert access.vnish_password == "vn-pass"
    assert (access.braiins_web_port, access.braiins_password) == (8081, "bos")
    # what the site left out stays at the backend's factory default
    assert access.epic_password == MinerAccess.default("epic_password")
    assert cfg.asic.renamed_keys() == ()


def test_an_empty_config_gives_every_backend_its_defaults() -> None:
    assert parse_config(SITE).asic.miner_access() == MinerAccess()


def test_the_old_flat_keys_still_work_and_are_reported_renamed() -> None:
    old = parse_config(
        SITE + '[asic]\nvnish_password = "vn"\nweb_password = "wp"\nbraiins_web_port = 8081\n'
    )
    new = parse_config(
        SITE
        + '[asic.credentials.vnish]\npassword = "vn"\n'
        + '[asic.credentials.bitmain]\npassword = "wp"\n'
        + "[asic.credentials.braiins]\nweb_port = 8081\n"
    )
    assert old.asic.miner_access() == new.asic.miner_access()
    assert old.asic.renamed_keys() == (
        ("asic.vnish_password", "asic.credentials.vnish.password"),
        ("asic.web_password", "asic.credentials.bitmain.password"),
        ("asic.braiins_web_port", "asic.credentials.braiins.web_port"),
    )


@pytest.mark.parametrize("lang", ["kk", "ru", "en"])
def test_the_rename_warning_names_both_keys_in_each_language(lang: str) -> None:
    text = message("config.renamed_key", lang, old="asic.vnish_password", new="asic.x.password")  # type: ignore[arg-type]
    assert "asic.vnish_password" in text and "asic.x.password" in text
    assert text != "config.renamed_key"


def test_a_key_set_both_ways_is_refused_naming_both() -> None:
    (p,) = problems('[asic]\nvnish_password = "a"\n[asic.credentials.vnish]\npassword = "b"\n')
    assert "asic.vnish_password" in p and "asic.credentials.vnish.password" in p


def test_a_bad_old_key_is_named_as_written() -> None:
    (p,) = problems('[asic]\nvnish_password = { file = "/nonexistent/vnish" }\n')
    assert p.startswith("line 4: asic.vnish_password: cannot read secret file"), p


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[asic.credentials.vnsh]\npassword = "a"\n',
            "line 3: asic.credentials.vnsh: no firmware named 'vnsh': tables are bitmain,",
        ),
        (
            '[asic.credentials.luxos]\npassword = "a"\n',
            "line 3: asic.credentials.luxos: luxos firmware needs no credentials",
        ),
        (
            '[asic.credentials.vnish]\npasswd = "a"\n',
            "line 4: asic.credentials.vnish.passwd: unknown key (a typo?): vnish takes password",
        ),
        (
            "[asic.credentials.braiins]\nweb_port = 0\n",
            "line 4: asic.credentials.braiins.web_port: Input should be greater than or equal to 1",
        ),
    ],
    ids=["unknown-firmware", "firmware-without-credentials", "unknown-key", "bad-port"],
)
def test_a_wrong_table_or_key_is_named(text: str, expected: str) -> None:
    (p,) = problems(text)
    assert p.startswith(expected), p


def test_a_site_can_set_every_password_a_backend_declares() -> None:
    unsettable = [c.name for c in declared().values() if c.secret and c.firmware is None]
    assert not unsettable, "give these a firmware and key: their table is then in the config"


def test_every_declared_credential_has_a_table_key_and_a_meaning() -> None:
    for firmware, table in by_firmware().items():
        for key, c in table.items():
            assert c.doc.strip(), f"{firmware}.{key}: say what it is (Credential doc)"


def test_secrets_in_the_tables_stay_out_of_repr_and_dumps() -> None:
    cfg = parse_config(SITE + '[asic.credentials.vnish]\npassword = "hunter2-vnish"\n')
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())
    assert "hunter2" not in repr(cfg.asic.miner_access())
