"""The test servers themselves: what the end-to-end tests read back must be what was stored."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import VictoriaMetrics

pytestmark = pytest.mark.servers


def test_export_returns_points_written_a_moment_ago(tmp_path: Path) -> None:
    # VictoriaMetrics 1.79 (Debian's) ends an export without an explicit `end` short of "now":
    # a point stamped in the last second was missing, which made the e2e exactly-once tests
    # report a miner's last point as lost in about one run in twenty-five.
    with VictoriaMetrics(tmp_path / "vm") as vm:
        now_ns = time.time_ns()
        stamps = [now_ns - 900_000_000, now_ns, now_ns + 500_000_000]
        body = "\n".join(f"asic,device=d{i} hashrate_ths=1 {ns}" for i, ns in enumerate(stamps))
        req = urllib.request.Request(
            f"{vm.url}/api/v2/write?bucket=b&org=o", data=body.encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 204
        series = {s["metric"]["device"]: s["timestamps"] for s in vm.export()}
        assert series == {f"d{i}": [ns // 10**6] for i, ns in enumerate(stamps)}
