"""The agent turns each broker section of the config into one BrokerEndpoint and hands it to
every MQTT client on that broker: same nodes, protocol and credentials, each its own session id."""

from __future__ import annotations

from pathlib import Path

from kuat.agent.config import parse_config
from kuat.agent.uplinks import Uplinks

CONFIG = """
[site]
id = "s1"
owner_bin = "123456789012"

[mqtt]
host = "reg-a.example"
port = 8884
failover = ["reg-b.example:8885", "[fd00::7]:8886"]
protocol = "3.1.1"
username = "kuat-s1"
password = "register-secret"

[quota.mqtt]
host = "korem.example"
client_id = "korem-s1"
username = "farm"
password = "quota-secret"
"""


def test_each_client_gets_its_brokers_settings_and_its_own_session(tmp_path: Path) -> None:
    uplinks = Uplinks(parse_config(CONFIG), tmp_path)
    try:
        register = uplinks.register
        assert register.session.endpoints == [
            ("reg-a.example", 8884),
            ("reg-b.example", 8885),
            ("fd00::7", 8886),
        ]
        assert register.session.protocol == "3.1.1"
        assert register.client_id == "kuat-123456789012-s1"
        assert uplinks.register_broker is not None
        assert uplinks.register_broker.password == "register-secret"

        quota = uplinks.quota_broker
        assert quota is not None and quota.client_id == "korem-s1"  # the receiver's session
        assert uplinks.quota_out is not None
        # the results publisher shares the broker, never the receiver's session id
        assert uplinks.quota_out.client_id == "kuat-quota-out-s1"
        assert uplinks.quota_out.session.endpoints == [("korem.example", 8883)]
        assert "secret" not in repr(quota) + repr(uplinks.register_broker)
    finally:
        uplinks.spool.close()
        uplinks._quota_spool.close()


def test_agents_of_a_split_site_publish_quota_results_under_ids_of_their_own(
    tmp_path: Path,
) -> None:
    ids = []
    for agent in ("hall-a", "hall-b"):
        cfg = CONFIG + f'[cluster]\nagent_id = "{agent}"\nservers = ["nats://127.0.0.1:4222"]\n'
        uplinks = Uplinks(parse_config(cfg), tmp_path / agent)
        try:
            assert uplinks.quota_out is not None
            ids.append(uplinks.quota_out.client_id)
        finally:
            uplinks.spool.close()
            uplinks._quota_spool.close()
    # one id would make the broker evict each agent's session when the other connects
    assert ids == ["kuat-quota-out-s1-hall-a", "kuat-quota-out-s1-hall-b"]
