"""The command line as an operator meets it: exit codes and what is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.example import EXAMPLE, deploy_example, write_credentials
from tests.servers import make_tls_files

ROOT = Path(__file__).resolve().parents[2]
KUAT = [sys.executable, "-m", "kuat.agent.cli"]


def kuat(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KUAT, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_check_config_ok_on_example(tmp_path: Path) -> None:
    config = deploy_example(tmp_path)
    creds = write_credentials(tmp_path / "credentials")
    done = kuat("check-config", str(config), "--credentials-dir", str(creds))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: site ekibastuz-1, 337 miners, 2 PDUs, 3 meters")


def test_check_config_names_every_file_the_run_would_miss(tmp_path: Path) -> None:
    # The example as shipped, on a host where nothing is in place yet: every missing secret
    # and file at once, with its key, and how to give credentials outside systemd.
    done = kuat("check-config", str(EXAMPLE), env={"CREDENTIALS_DIRECTORY": ""})
    assert done.returncode == 2
    err = done.stderr
    assert "Traceback" not in err
    for key, path in (
        ("mqtt.ca_cert", "/etc/kuat/register-ca.pem"),
        ("mqtt.client_cert", "/etc/kuat/register-client.pem"),
        ("quota.schedules", "/etc/kuat/quota.d"),
        ("quota.orders.directory", "/etc/kuat/orders.d"),
    ):
        assert any(key in ln and path in ln for ln in err.splitlines()), (key, err)
    assert "--credentials-dir" in err


def test_check_config_refuses_a_key_that_does_not_match_its_certificate(tmp_path: Path) -> None:
    config = deploy_example(tmp_path)
    creds = write_credentials(tmp_path / "credentials")
    other = make_tls_files(tmp_path / "other")
    (tmp_path / "etc" / "register-client.key").write_bytes(other.rogue_client_key.read_bytes())
    done = kuat("check-config", str(config), "--credentials-dir", str(creds))
    assert done.returncode == 2
    assert "register-client.key" in done.stderr and "do not load" in done.stderr, done.stderr


def test_check_config_lists_problems_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "kuat.toml"
    bad.write_text('[site]\nid = "x"\nnmae = "typo"\n\n[intervals]\nasic = 0\n')
    done = kuat("check-config", str(bad))
    assert done.returncode == 2
    assert f"{bad}: 2 problem(s)" in done.stderr
    assert "line 3: site.nmae: unknown key" in done.stderr
    assert "line 6: intervals.asic: Input should be greater than or equal to 1" in done.stderr


def test_help_lists_every_command() -> None:
    done = kuat("--help")
    assert done.returncode == 0
    for command in ("run", "demo", "check-config", "probe"):
        assert command in done.stdout


def test_version_names_the_installed_release() -> None:
    from importlib.metadata import version

    done = kuat("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"kuat {version('kuat')}"


# What `kuat --help` and `kuat --version` must not load: each costs tens to hundreds of ms of
# every such call, the config models (kuat.agent.config) ~0.4 s; the commands import them when
# they run. (typer itself loads pydantic to show a command's options.)
_HEAVY = {
    "kuat.agent.config",
    "pymodbus",
    "paho",
    "httpx",
    "pysnmp",
    "dlms_cosem",
    "babel",
    "aiohttp",
    "apscheduler",
    "influxdb_client",
    "jinja2",
    "nats",
    "orjson",
    "cryptography",
    "asyncio",
}
_LOADED_AFTER = """
import json, sys
from kuat.agent.cli import main
sys.argv = ["kuat", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("report", "--help")])
def test_help_and_version_load_no_heavy_library(args: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LOADED_AFTER, *args], capture_output=True, text=True, timeout=60
    )
    assert done.stdout  # the help or the version was printed
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert sorted(_HEAVY & (loaded | {m.split(".")[0] for m in loaded})) == []


def test_help_shows_config_keys_in_brackets_and_flags_without_types() -> None:
    # Rich markup used to eat "[agent] language" and "[[asic.groups]]"; flags showed "<bool>".
    report = kuat("compliance", "report", "--help", env={"COLUMNS": "200"})
    assert "[agent] language" in report.stdout, report.stdout
    discover = kuat("discover", "--help", env={"COLUMNS": "200"})
    assert "[[asic.groups]]" in discover.stdout, discover.stdout
    run = kuat("run", "--help", env={"COLUMNS": "200"})
    assert "--once" in run.stdout and "<bool>" not in run.stdout, run.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("asic", "127.0.0.1:9", "--timeout", "2"),
        ("meter", "127.0.0.1:9", "--profile", "schneider-pm5560"),
        ("pdu", "127.0.0.1:9", "--community", "public", "--timeout", "1"),
    ],
    ids=["asic", "meter", "pdu"],
)
def test_probe_unreachable_device_is_one_line_on_stderr(args: tuple[str, ...]) -> None:
    # Port 9 on loopback: nothing listens (TCP refused at once, UDP unanswered).
    done = kuat("probe", *args, "--json")
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:9" in lines[0], done.stderr


def test_config_show_prints_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    import tomllib

    config = deploy_example(tmp_path)
    creds = write_credentials(tmp_path / "credentials", "credential-secret-{name}")
    # an inline secret as well as credentials: neither value may be printed (the inline one
    # under its old, deprecated key: it still works, with a warning)
    text = config.read_text().replace(
        "web_port = 80\n", 'web_port = 80\nvnish_password = "inline-secret-value"\n', 1
    )
    config.write_text(text)
    done = kuat("config", "show", str(config), "--credentials-dir", str(creds))
    assert done.returncode == 0, done.stderr
    assert "secret" not in done.stdout.replace("secrets/", "")
    assert "asic.vnish_password" in done.stderr and "asic.credentials.vnish.password" in done.stderr
    shown = tomllib.loads(done.stdout)
    assert shown["asic"]["credentials"]["bitmain"]["password"] == {"credential": "antminer-web"}
    assert shown["asic"]["credentials"]["vnish"]["password"] == {"value": "**********"}
    assert shown["quota"]["warn_fraction"] == 0.95  # a default the file never wrote
    as_json = kuat("config", "show", str(config), "--json", "--credentials-dir", str(creds))
    assert json.loads(as_json.stdout)["site"]["id"] == "ekibastuz-1"


def test_check_config_json(tmp_path: Path) -> None:
    config = deploy_example(tmp_path)
    creds = write_credentials(tmp_path / "credentials")
    done = kuat("check-config", str(config), "--json", "--credentials-dir", str(creds))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "ok": True,
        "file": str(config),
        "site": "ekibastuz-1",
        "miners": 337,
        "pdus": 2,
        "meters": 3,
    }
    bad = tmp_path / "bad.toml"
    bad.write_text('[site]\nid = "x"\nnmae = "typo"\n')
    done = kuat("check-config", str(bad), "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["problems"] == [
        {"path": "site.nmae", "line": 3, "message": "unknown key (a typo?)"}
    ]


_AGENT_LOADS = """
import json, sys
from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
Agent(parse_config(f'[site]\\nid = "s1"\\n[agent]\\nstate_dir = "{sys.argv[1]}"\\n'))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_an_agent_without_snmpv3_or_dlms_loads_neither_library(tmp_path: Path) -> None:
    # pysnmp (with pysmi, requests, jinja2, lark) and dlms-cosem cost ~0.5-1 s of CPU at every
    # start of `kuat run`; a site without an SNMPv3 PDU or a DLMS meter never needs them.
    done = subprocess.run(
        [sys.executable, "-c", _AGENT_LOADS, str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert sorted(loaded & {"pysnmp", "pysmi", "dlms_cosem"}) == []
