"""The poller is a generic engine: what it does for a firmware comes from that firmware's backend
declaration, so adding a firmware touches its backend, its simulator personality and its case
folders, never the engine; and the credentials a site gives are exactly those backends declare."""

from __future__ import annotations

import ast
import inspect

import pytest

from kuat.collectors.cgminer import collector
from kuat.collectors.cgminer.access import MinerAccess
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.parsers import SPECS


def test_the_poller_names_no_firmware() -> None:
    tree = ast.parse(inspect.getsource(collector))
    # "cgminer" is also the API the engine speaks (a transport), not only the generic derivative
    names = {f.value for f in Firmware} - {"cgminer"}
    named = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "Firmware":
                named.append(f"Firmware.{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.lower() in names:
                named.append(repr(node.value))
        elif isinstance(node, ast.Name) and node.id.lower() in names:
            named.append(node.id)
    assert not named, f"collector.py should ask the backends, not name {named}"


def test_every_firmware_has_a_backend_spec() -> None:
    assert set(SPECS) == set(Firmware)
    for spec in SPECS.values():
        # a field naming an endpoint has a way to read it
        assert not spec.web_paths or spec.web is not None, spec.family


def test_access_takes_the_declared_credentials_and_hides_the_secrets() -> None:
    a = MinerAccess(web_password="s3cret", braiins_web_port=8080)
    assert a.braiins_web_port == 8080 and a.web_password == "s3cret"
    assert a.web_port == MinerAccess.default("web_port")  # not given: the backend's default
    assert "s3cret" not in repr(a) and "braiins_web_port=8080" in repr(a)
    assert a.replace(web_port=81).web_port == 81 and a.web_port != 81
    with pytest.raises(TypeError, match="no_such_port"):
        MinerAccess(no_such_port=1)


async def test_a_port_set_to_none_turns_off_what_backends_read_there() -> None:
    on = AsicPoller()
    off = AsicPoller(web_port=None, braiins_web_port=None)
    try:
        assert on.fetches_identity(Firmware.BITMAIN) and on.fetches_identity(Firmware.BRAIINS)
        assert not off.fetches_identity(Firmware.BITMAIN)
        assert not off.fetches_identity(Firmware.BRAIINS)
    finally:
        await on.aclose()
        await off.aclose()
