"""`kuat demo` reads its simulated commercial DLMS meter and shows the settlement figure of the
last closed hour with its reconciliation against kuat's own ledger."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[3]


def test_demo_shows_the_settlement_figure_and_reconciliation(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kuat.agent.cli",
            "demo",
            "--duration",
            "12",
            "--miners",
            "30",
            "--plain",
            "--lang",
            "ru",
            "--state-dir",
            str(tmp_path),
            # addresses and a dashboard port of its own: a person's demo, or another test's,
            # may be running on the defaults
            "--base",
            "127.47.0.1",
            "--listen",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next((x for x in done.stdout.splitlines() if x.startswith("Коммерческий учёт:")), None)
    assert line is not None, done.stdout
    figures = re.search(
        r"коммерческий счётчик ([\d,]+) кВт·ч, kuat ([\d,]+) кВт·ч — сходятся", line
    )
    assert figures, line
    meter, kuat = (float(f.replace(",", ".")) for f in figures.groups())
    # the commercial meter sits before the transformer: it counts the losses on top
    assert meter > kuat > 0
    assert "Traceback" not in done.stderr
