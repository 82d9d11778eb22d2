"""[cluster]: an agent polls only its share of the site, and tags every line with its id."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuat.agent.config import ConfigError, parse_config
from kuat.agent.uplinks import Uplinks
from kuat.uplink.lineproto import with_tag

SITE = """
[site]
id = "s1"
[[asic.groups]]
hosts = ["10.0.0.1-10.0.0.4"]
location.hall = "A"
[[asic.groups]]
hosts = ["10.0.1.1-10.0.1.4"]
location.hall = "B"
"""


def cluster(extra: str) -> str:
    return SITE + f'[cluster]\nagent_id = "hall-b"\nservers = ["nats://127.0.0.1:4222"]\n{extra}'


def test_an_agent_polls_its_halls_and_ranges_only() -> None:
    assert len(parse_config(SITE).asic_targets()) == 8
    by_hall = parse_config(cluster('halls = ["B"]\n')).asic_targets()
    assert [ip for ip, _ in by_hall] == ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"]
    both = parse_config(cluster('halls = ["B"]\nhosts = ["10.0.1.2-10.0.1.3"]\n')).asic_targets()
    assert [ip for ip, _ in both] == ["10.0.1.2", "10.0.1.3"]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('hosts = ["10.0.1.x"]\n', "hosts"),
        ("lease_ttl_s = 0.5\n", "lease_ttl_s"),
        ("lease_ttl_s = 30\ncap_hold_s = 45\n", "cap_hold_s = 45.0 is shorter than a controller"),
    ],
)
def test_bad_cluster_keys_are_named(extra: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_config(cluster(extra))


def test_a_bad_server_url_is_named() -> None:
    text = SITE + '[cluster]\nagent_id = "a"\nservers = ["127.0.0.1:4222"]\n'
    with pytest.raises(ConfigError, match="servers"):
        parse_config(text)


@pytest.mark.parametrize(
    ("line", "tagged"),
    [
        ("asic,site=s1 p=1 5", "asic,site=s1,agent=hall-b p=1 5"),
        ("asic,site=a\\ b p=1 5", "asic,site=a\\ b,agent=hall-b p=1 5"),
        ("asic,site=a\\\\ p=1 5", "asic,site=a\\\\,agent=hall-b p=1 5"),
    ],
)
def test_every_line_carries_the_agent_id(line: str, tagged: str) -> None:
    assert with_tag(line, "agent", "hall-b") == tagged


def test_the_agent_tags_what_it_spools(tmp_path: Path) -> None:
    cfg = parse_config(cluster("") + f'[agent]\nstate_dir = "{tmp_path}"\n')
    up = Uplinks(cfg, tmp_path)
    try:
        up.record_lines(["asic,site=s1,device=SN1 power_w=3000 5"])
        assert up.spool.take(10).lines == ("asic,site=s1,device=SN1,agent=hall-b power_w=3000 5",)
        assert up.register.agent_id == "hall-b"
    finally:
        up.spool.close()
