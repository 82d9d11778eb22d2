"""`kuat probe meter HOST:PORT --protocol dlms --json` against the loopback DLMS server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from kuat.collectors.dlms.sim import DlmsMeterSimulator


async def probe(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kuat.agent.cli",
        "probe",
        "meter",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_probe_meter_dlms_json() -> None:
    async with DlmsMeterSimulator("spodes", password="12345678") as sim:
        sim.set(p_kw=500.0, import_kwh=1_000.5, v_ln=(230.0, 231.0, 232.0))
        target = f"127.0.0.1:{sim.port}"
        code, out, err = await probe(
            target, "--protocol", "dlms", "--password", "12345678", "--json"
        )
        assert code == 0, err
        reading = json.loads(out)  # stdout is the JSON alone: dlms-cosem's logging kept off it
        assert reading["profile"] == "spodes" and reading["p_kw"] == 500.0
        assert reading["import_kwh"] == 1000.5 and reading["v_ln"] == [230.0, 231.0, 232.0]
        assert reading["q_kvar"] is None
        code, out, err = await probe(target, "--protocol", "dlms", "--json")
        assert code == 1 and out == ""
        assert err.strip() == (
            f"meter {target}: association refused (client 16, server 1, password needed?)"
        )
        assert "12345678" not in err
    code, out, _ = await probe("--protocol", "dlms", "--list-profiles")
    assert code == 0 and {"spodes", "iec"} <= set(out.split())
