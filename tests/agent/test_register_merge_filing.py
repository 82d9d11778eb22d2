"""``kuat register merge``: one filing for a site split across agents, from each agent's own
``kuat register export --format json``. A miner whose hall moved to another agent is still on
the site (no row); what really came and went is filed once; mismatched or broken exports are
refused with every problem named."""

from __future__ import annotations

import json
from pathlib import Path

from kuat.uplink.spool import Spool
from tests.uplink.schema_check import validate
from tests.uplink.test_register_history import DAY, T0, config, export, kuat, publisher, rig, rigs


def shard(tmp_path: Path, name: str) -> tuple[Path, Spool]:
    state = tmp_path / name / "state"
    state.mkdir(parents=True)
    return state, Spool(state / "spool.db")


def shard_config(state: Path, agent_id: str) -> Path:
    """The agent's config: its own shard of the split site ([cluster] agent_id)."""
    path = config(state)
    cluster = f'\n[cluster]\nagent_id = "{agent_id}"\nservers = ["nats://127.0.0.1:4222"]\n'
    path.write_text(path.read_text() + cluster)
    return path


def test_two_shards_make_one_filing(tmp_path: Path) -> None:
    (sa, spa), (sb, spb) = shard(tmp_path, "hall-a"), shard(tmp_path, "hall-b")
    a, b = publisher(spa, agent_id="hall-a"), publisher(spb, agent_id="hall-b")
    a.publish_inventory(rigs(T0, 1, 2, 3), T0)  # filed on 1 March: 1-5 on the site
    b.publish_inventory(rigs(T0, 4, 5), T0)
    t = T0 + 3 * DAY
    # miner 2's rack moves to hall B (agent b); 5 leaves the site; 6 arrives in hall B
    a.publish_inventory(rigs(t, 1, 3), t)
    b.publish_inventory([rig(2, t, ip="10.0.2.2"), rig(4, t), rig(6, t)], t)
    for sp in (spa, spb):
        sp.close()
    docs = []
    for state, agent_id in ((sa, "hall-a"), (sb, "hall-b")):
        doc = export(shard_config(state, agent_id), "--since", "2026-03-02")
        path = state.parent / "export.json"
        path.write_text(json.dumps(doc))
        docs.append(path)
    # each shard alone files miner 2 (one as exclude, the other as include)
    assert ("exclude", "SN0002") in [
        (r["action"], r["serial"]) for r in json.loads(docs[0].read_text())["rows"]
    ]

    done = kuat("register", "merge", *map(str, docs), "--format", "json")
    assert done.returncode == 0, done.stderr
    site = json.loads(done.stdout)
    validate("register-export.v1", site)
    assert [(r["action"], r["serial"]) for r in site["rows"]] == [
        ("include", "SN0006"),
        ("exclude", "SN0005"),
    ]
    assert (site["include"], site["exclude"]) == (1, 1)
    assert any("SN0002" in w and "not filed" in w for w in site["warnings"])
    assert "SN0002" in done.stderr  # the owner sees it too

    csv_out = tmp_path / "site.csv"
    done = kuat("register", "merge", *map(str, docs), "--out", str(csv_out))
    assert done.returncode == 0, done.stderr
    assert csv_out.read_text().splitlines()[1].startswith("include,")


def test_mismatched_and_broken_exports_are_refused_naming_each(tmp_path: Path) -> None:
    state, sp = shard(tmp_path, "hall-a")
    publisher(sp).publish_inventory(rigs(T0, 1), T0)
    sp.close()
    cfg = config(state)
    one, other = export(cfg, "--since", "2026-03-01"), export(cfg)
    paths = {}
    for name, body in (("a.json", one), ("b.json", other), ("c.json", {"rows": []})):
        paths[name] = tmp_path / name
        paths[name].write_text(json.dumps(body))
    (tmp_path / "d.json").write_text("{broken")
    done = kuat(
        "register", "merge", str(paths["a.json"]), str(tmp_path / "d.json"), str(paths["c.json"])
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "d.json" in done.stderr and "c.json" in done.stderr  # both problems at once
    done = kuat("register", "merge", str(paths["a.json"]), str(paths["b.json"]))
    assert done.returncode == 2
    assert "b.json: since is None, " in done.stderr and "'2026-03-01'" in done.stderr
