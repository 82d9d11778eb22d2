"""The simulator itself: lifecycle, communities, and a clear error without snmpsim."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kuat.collectors.snmp.sim import RECORDINGS_DIR, SimulatorError, SnmpSimulator, find_responder


def test_communities_are_the_recording_stems() -> None:
    sim = SnmpSimulator()
    assert sim.communities == ["apc_apdu9959eu3", "eatonpdu_2", "raritan-pdu_px3", "sentry4"]
    assert sim.data_dir == RECORDINGS_DIR and not sim.running


def test_missing_responder_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(SimulatorError, match="snmpsim-command-responder not found next to"):
        find_responder()
    with pytest.raises(SimulatorError, match="not found"):
        SnmpSimulator().start()


def test_empty_data_dir_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("snmpsim")
    with pytest.raises(SimulatorError, match=r"no \*\.snmprec recordings"):
        SnmpSimulator(tmp_path).start()


def test_repr_hides_v3_keys() -> None:
    sim = SnmpSimulator(v3_user="u", v3_auth_key="auth-secret", v3_priv_key="priv-secret")
    assert "secret" not in repr(sim)


@pytest.mark.servers
def test_module_simulator_answers_on_a_picked_port(sim: SnmpSimulator) -> None:
    assert sim.running and sim.port > 0 and sim.host == "127.0.0.1"


@pytest.mark.servers
def test_start_stop_on_a_private_data_dir(tmp_path: Path) -> None:
    try:
        find_responder()
    except SimulatorError as exc:
        pytest.skip(str(exc))
    (tmp_path / "one.snmprec").write_text(
        (RECORDINGS_DIR / "apc_apdu9959eu3.snmprec").read_text(), encoding="utf-8"
    )
    sim = SnmpSimulator(tmp_path)
    sim.start()
    try:
        assert sim.running and sim.communities == ["one"]
    finally:
        sim.stop()
    assert not sim.running
    sim.stop()  # idempotent
