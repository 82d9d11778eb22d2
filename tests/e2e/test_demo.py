"""The README's first command: `kuat demo` shows a working farm and stops by itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_farm_and_stops_by_itself(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kuat.agent.cli",
            "demo",
            "--duration",
            "9",
            "--miners",
            "200",
            "--plain",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cycles = [line for line in done.stdout.splitlines() if re.match(r"\[\d+\] ", line)]
    assert len(cycles) >= 3, done.stdout
    last = cycles[-1]
    assert "Miners up: 200 / 200" in last
    power = re.search(r"Metered power: ([\d,.]+) kW", last)
    assert power and float(power.group(1).replace(",", "")) > 100
    assert "Quota status: OK" in last
    assert "Grid connection (item 5): pass" in last
    # three simulated miners mine on a foreign pool: item 7 must say so
    assert "Mining through a pool (item 7): fail (3 miners" in last
    # nothing needed a server: telemetry waits in the spool under the state directory
    assert (tmp_path / "spool.db").exists()
    assert "Traceback" not in done.stderr
