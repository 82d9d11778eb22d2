"""Config: the shipped example loads; broken configs are refused with every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuat.agent.config import ConfigError, load_config, parse_config
from kuat.agent.tomlpos import locate
from tests.agent.example import deploy_example, write_credentials

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """
[site]
id = "s1"
"""


@pytest.fixture
def creds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = write_credentials(tmp_path / "credentials", "secret-{name}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    return directory


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """config/kuat.example.toml with its /etc/kuat/ files in place."""
    return deploy_example(tmp_path)


def test_example_config_loads(creds: Path, example: Path) -> None:
    cfg = load_config(example)
    assert cfg.site.id == "ekibastuz-1"
    # 10.20.1.0/24 gives 254 hosts, 10.20.2.10-90 gives 81, plus two single addresses
    assert len(cfg.asic_targets()) == 254 + 81 + 2
    assert cfg.site_meter is not None and cfg.site_meter.profile == "schneider-pm5560"
    assert cfg.influx is not None and cfg.influx.token is not None
    assert cfg.influx.token.get() == "secret-influx-token"
    assert cfg.pdu[1].v3 is not None and cfg.pdu[1].v3.priv_key.get() == "secret-snmp-priv-key"
    creds = cfg.asic.credentials
    assert creds.whatsminer.password.get() == "secret-whatsminer-admin"
    assert creds.epic.password.get() == "letmein"  # left out: the factory default
    assert cfg.asic.renamed_keys() == ()


def test_secret_never_in_repr(creds: Path, example: Path) -> None:
    cfg = load_config(example)
    assert "secret-" not in repr(cfg)
    assert "secret-" not in str(cfg.model_dump())


def test_example_without_credentials_names_each_missing_one(
    monkeypatch: pytest.MonkeyPatch, example: Path
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError) as err:
        load_config(example)
    paths = {p.path for p in err.value.problems}
    assert paths == {
        "pdu[0].community",
        "pdu[1].v3.auth_key",
        "pdu[1].v3.priv_key",
        "quota.http.token",
        "quota.orders.issuers.kegoc",
        "influx.token",
        "asic.credentials.bitmain.password",
        "asic.credentials.whatsminer.password",
        "meter[1].password",
    }
    assert all("CREDENTIALS_DIRECTORY" in p.message for p in err.value.problems)


# Each case: config text, then (key path, fragment of the message, line) for EVERY problem.
BROKEN = [
    pytest.param(
        MINIMAL + '\n[agent]\nlangauge = "kk"\n',
        [("agent.langauge", "unknown key", 6)],
        id="typo-is-an-unknown-key",
    ),
    pytest.param(
        '[site]\nid = "Bad Site"\nowner_bin = "12"\n',
        [("site.id", "a-z, 0-9", 2), ("site.owner_bin", "12 digits", 3)],
        id="site-identity",
    ),
    pytest.param(
        MINIMAL + '\n[[asic.groups]]\nhosts = ["10.0.0.1", "10.0.0.300"]\nport = 70000\n',
        [("asic.groups[0].hosts", "10.0.0.300", 6), ("asic.groups[0].port", "65535", 7)],
        id="miner-hosts-and-port",
    ),
    pytest.param(
        MINIMAL
        + '\n[[pdu]]\nname = "a"\nhost = "h"\n\n[[pdu]]\nname = "b"\nhost = "h"\n'
        + 'community = { file = "/nonexistent/community" }\n',
        [
            ("pdu[0]", "either community", 5),
            ("pdu[1].community", "cannot read secret file /nonexistent/community", 12),
        ],
        id="pdu-auth-and-secret-file",
    ),
    pytest.param(
        MINIMAL + "\n[grid]\nvoltage_kv = -1\n",
        [
            ("grid.voltage_kv", "greater than 0", 6),
            ("grid.permitted_mw", "missing", 5),
            ("grid.connected_on", "missing", 5),
        ],
        id="grid-record",
    ),
    pytest.param(
        MINIMAL
        + '\n[influx]\nurl = "influx:8086"\n\n[mqtt]\nhost = "b"\nclient_cert = "/dev/null"\n',
        [("influx.url", "http://", 6), ("mqtt", "go together", 8)],
        id="uplinks",
    ),
    pytest.param("[site\nid = 1\n", [("", "not valid TOML", None)], id="toml-syntax"),
    pytest.param("", [("site", "missing", None)], id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_config_lists_every_problem(
    text: str, expected: list[tuple[str, str, int | None]]
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "kuat.toml")
    got = [(p.path, p.message, p.line) for p in err.value.problems]
    assert len(got) == len(expected), err.value.render()
    for (path, fragment, line), (gpath, gmsg, gline) in zip(
        sorted(expected), sorted(got), strict=True
    ):
        assert gpath == path
        assert fragment in gmsg, gmsg
        assert gline == line, err.value.render()


def test_duplicate_names_refused() -> None:
    text = MINIMAL + '\n[[meter]]\nname = "m"\nhost = "a"\n\n[[meter]]\nname = "m"\nhost = "b"\n'
    with pytest.raises(ConfigError, match="meter names must be unique: m repeated"):
        parse_config(text)


def test_locate_follows_array_of_tables() -> None:
    text = '[[pdu]]\nname = "a"\n\n[[pdu]]\nname = "b"\n[pdu.v3]\nuser = "u"\n'
    assert locate(text, ("pdu", 1, "name")) == 5
    assert locate(text, ("pdu", 1, "v3", "user")) == 7
    assert locate(text, ("pdu", 1, "v3", "auth_key")) == 6  # missing key: its table


def test_environment_references_in_string_values(monkeypatch: pytest.MonkeyPatch) -> None:
    # Containers configure through the environment: ${VAR}, ${VAR:-default}, $${ for a literal.
    monkeypatch.setenv("KUAT_SITE", "astana-2")
    monkeypatch.setenv("KUAT_INFLUX", "https://influx.example:8086")
    monkeypatch.delenv("KUAT_UNSET", raising=False)
    cfg = parse_config(
        '[site]\nid = "${KUAT_SITE}"\nname = "price $${not a var}"\n'
        '[agent]\nlanguage = "${KUAT_UNSET:-kk}"\n'
        '[influx]\nurl = "${KUAT_INFLUX}"\n'
    )
    assert cfg.site.id == "astana-2"
    assert cfg.site.name == "price ${not a var}"
    assert cfg.agent.language == "kk"
    assert cfg.influx is not None and cfg.influx.url == "https://influx.example:8086"


def test_unset_environment_reference_is_named_with_the_other_problems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUAT_NOPE", raising=False)
    with pytest.raises(ConfigError) as err:
        parse_config(
            '[site]\nid = "s1"\n\n[influx]\nurl = "${KUAT_NOPE}"\n\n[intervals]\nasic = 0\n'
        )
    got = {(p.path, p.message, p.line) for p in err.value.problems}
    assert ("influx.url", "environment variable KUAT_NOPE is not set", 5) in got
    assert any(p.path == "intervals.asic" for p in err.value.problems)


def test_uvloop_as_the_event_loop_only_where_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = MINIMAL + '\n[agent]\nevent_loop = "uvloop"\n'
    assert parse_config(text).agent.event_loop == "uvloop"  # the test extra installs it
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    (problem,) = exc.value.problems
    assert problem.path == "agent.event_loop" and "pip install 'kuat[uvloop]'" in problem.message


def test_a_groups_targets_are_made_once_and_shared() -> None:
    # The agent's poll list and the inventory's locations take a group's (address, port)
    # pairs each: made per call, 50,000 miners' pairs and address strings were held twice
    cfg = parse_config(
        '[site]\nid = "t"\n[[asic.groups]]\nhosts = ["10.0.0.1-10.0.0.20"]\nport = 4029\n'
    )
    group = cfg.asic.groups[0]
    first, again = group.targets(), group.targets()
    assert first == [(f"10.0.0.{i}", 4029) for i in range(1, 21)]
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert all(a is b for a, b in zip(cfg.asic_targets(), first, strict=True))
