"""An agent loads an optional subsystem's libraries only when its config uses that subsystem.

Each library is memory every agent pays whether it uses it or not (issue 15: the 300 MB a
50,000-miner agent may take): NATS with aiohttp behind it (the [cluster] lease), aiohttp and
jinja2 (the dashboard), prometheus_client (the dashboard's /metrics), cryptography (Ed25519
order keys, Whatsminer writes) and passlib (Whatsminer writes) were ~26 MB of every agent's RSS
before they were imported where used. An agent run on its own interpreter polls a farm of every
firmware twice; what it has then imported is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# the optional libraries, by the top-level name sys.modules holds them under
OPTIONAL = ("nats", "aiohttp", "jinja2", "prometheus_client", "cryptography", "passlib")

_RUN = """
import asyncio, json, socket, sys, time
from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator

async def main(state_dir, dashboard):
    sim = AsicFarmSimulator(
        4, first_ip="127.48.0.1", seed=5,
        personalities=("antminer", "whatsminer", "luxos", "braiins"),
    )
    await sim.start()
    hosts = ", ".join(f'"{ip}"' for ip, _ in sim.targets)
    listen = ""
    if dashboard:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            listen = f"127.0.0.1:{s.getsockname()[1]}"
    cfg = parse_config(
        f'[site]\\nid = "lazy"\\n[agent]\\nstate_dir = "{state_dir}"\\n'
        f'[dashboard]\\nlisten = "{listen}"\\n'
        f"[intervals]\\nasic = 1\\nquota = 1\\n[[asic.groups]]\\nhosts = [{hosts}]\\n"
    )
    agent = Agent(cfg)
    task = asyncio.create_task(agent.run())
    try:
        deadline = time.monotonic() + 30
        while min(m.requests["summary"] for m in sim.miners) < 2:
            assert not task.done(), "the agent stopped by itself"
            assert time.monotonic() < deadline, "the agent did not poll its miners twice"
            await asyncio.sleep(0.1)
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 30)
        await sim.stop()

asyncio.run(main(sys.argv[1], sys.argv[2] == "dashboard"))
optional = set(json.loads(sys.argv[3]))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & optional)))
"""


def _loaded(tmp_path: Path, dashboard: bool) -> list[str]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _RUN,
            str(tmp_path),
            "dashboard" if dashboard else "none",
            json.dumps(OPTIONAL),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_an_agent_polling_without_dashboard_cluster_or_keys_loads_none_of_them(
    tmp_path: Path,
) -> None:
    assert _loaded(tmp_path, dashboard=False) == []


def test_an_agent_with_its_dashboard_loads_what_the_dashboard_needs(tmp_path: Path) -> None:
    # the same run with the dashboard on: the check above sees what an agent imports
    loaded = _loaded(tmp_path, dashboard=True)
    assert {"aiohttp", "jinja2"} <= set(loaded), loaded
