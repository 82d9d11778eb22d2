"""The shipped example config as an operator deploys it: its /etc/kuat/ files in place."""

from __future__ import annotations

from pathlib import Path

from tests.servers import make_tls_files

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "kuat.example.toml"
# Every { credential = "NAME" } the example uses (the systemd unit's LoadCredential= lines too).
EXAMPLE_CREDENTIALS = (
    "snmp-community",
    "snmp-auth-key",
    "snmp-priv-key",
    "dlms-meter-password",
    "influx-token",
    "quota-token",
    "order-key-kegoc",
    "antminer-web",
    "whatsminer-admin",
)


def deploy_example(tmp_path: Path) -> Path:
    """The example with /etc/kuat/ moved under tmp_path, holding a real CA, client certificate
    and key for the register broker and the schedule and order directories. Returns the config."""
    etc = tmp_path / "etc"
    etc.mkdir()
    tls = make_tls_files(tmp_path / "tls")
    (etc / "register-ca.pem").write_bytes(tls.ca_cert.read_bytes())
    (etc / "register-client.pem").write_bytes(tls.client_cert.read_bytes())
    (etc / "register-client.key").write_bytes(tls.client_key.read_bytes())
    (etc / "quota.d").mkdir()
    (etc / "orders.d").mkdir()
    config = tmp_path / "kuat.toml"
    config.write_text(EXAMPLE.read_text().replace("/etc/kuat/", f"{etc}/"))
    return config


def write_credentials(directory: Path, value: str = "x" * 16) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_CREDENTIALS:
        (directory / name).write_text(value.replace("{name}", name))
    return directory
