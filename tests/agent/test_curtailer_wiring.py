"""The curtailer gets its firmware knowledge from the backends, through the agent's wiring: the
credentials from [asic.credentials], the apply times from each backend's Controls."""

from __future__ import annotations

from kuat.agent.config import parse_config
from kuat.agent.curtailment import Curtailer
from kuat.agent.state import SiteState
from kuat.collectors.cgminer.firmware.controls import apply_times
from kuat.quota.plant import FALLBACK_APPLY_S, Verb

SITE = '[site]\nid = "s1"\n'


def test_the_curtailer_uses_the_credential_tables() -> None:
    cfg = parse_config(SITE + '[asic.credentials.vnish]\npassword = "vn"\n[asic]\nweb_port = 0\n')
    access = Curtailer(cfg, SiteState()).access
    assert access.vnish_password == "vn"
    assert access.web_port == 80  # web_port = 0 turns off identity reads, not the writes' port


def test_the_plant_assumes_the_apply_times_the_backends_declare() -> None:
    plant = Curtailer(parse_config(SITE), SiteState()).plant
    declared = apply_times()
    assert declared[("bitmain", "sleep")] == 15.0  # what kuat assumed before it was declared
    for (firmware, verb), seconds in declared.items():
        assert plant.apply_s(firmware, Verb(verb)) == seconds
    assert plant.apply_s("luxos", Verb.SLEEP) == FALLBACK_APPLY_S  # declares none: one poll
