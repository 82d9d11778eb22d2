"""The durable register history and ``kuat register export --since`` built on it, as an owner
notices them: removals still listed after the broker delivered everything and the agent
restarted, re-added miners not excluded, old rows pruned, CSV = JSON, JSON per its schema."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.collectors.readings import AsicReading
from kuat.uplink.mqtt import RegisterPublisher
from kuat.uplink.register_history import HistoryReader
from kuat.uplink.spool import Spool
from tests.servers import Mosquitto
from tests.uplink.schema_check import validate
from tests.uplink.test_mqtt import lab_broker

ROOT = Path(__file__).resolve().parents[2]
OWNER = "230140000001"
SITE = "site-h"
KEY = f"{OWNER}/{SITE}"
# 2026-03-01 17:00 Astana (UTC+5); the filings below use Astana dates.
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def rig(n: int, t: datetime, *, ip: str | None = None, firmware: str = "2025.01") -> AsicReading:
    return AsicReading(
        ip=ip or f"10.0.1.{n}",
        port=4028,
        taken_at=t,
        vendor="Bitmain",
        model="S21",
        serial=f"SN{n:04d}",
        firmware=firmware,
        hashrate_nominal_ths=200.0,
        power_limit_w=3500.0,
    )


def rigs(t: datetime, *ns: int) -> list[AsicReading]:
    return [rig(n, t) for n in ns]


def publisher(spool: Spool, port: int | None = None, **kw: object) -> RegisterPublisher:
    return RegisterPublisher(
        spool,
        owner_bin=OWNER,
        site=SITE,
        broker=lab_broker(port) if port else None,
        forget_after=timedelta(hours=1),  # a miner missing for an hour is removed
        **kw,  # type: ignore[arg-type]
    )


def config(state: Path, prefix: str | None = None) -> Path:
    mqtt = f'\n[mqtt]\nhost = "127.0.0.1"\ntopic_prefix = "{prefix}"\n' if prefix else ""
    path = state.parent / "kuat.toml"
    path.write_text(
        textwrap.dedent(f"""
        [site]
        id = "{SITE}"
        owner_bin = "{OWNER}"

        [agent]
        state_dir = "{state}"
        """)
        + mqtt
    )
    return path


def kuat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kuat.agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ},
    )


def export(cfg: Path, *args: str) -> dict:
    done = kuat("register", "export", "-c", str(cfg), "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    validate("register-export.v1", doc)
    return doc


def actions(doc: dict) -> list[tuple[str, str]]:
    return [(r["action"], r["serial"]) for r in doc["rows"]]


def history_rows(path: Path) -> list[tuple[int, str, str, str]]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT seq, id, type, miner_id FROM register_history ORDER BY seq"
        ).fetchall()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture
def spool(state: Path) -> Iterator[Spool]:
    with Spool(state / "spool.db") as sp:
        yield sp


# --- the history itself -----------------------------------------------------------------


def test_every_event_is_recorded_as_published(spool: Spool) -> None:
    pub = publisher(spool)
    pub.publish_inventory(rigs(T0, 1, 2, 3), T0)
    t1 = T0 + 2 * DAY
    pub.publish_inventory([rig(1, t1, ip="10.0.9.1"), rig(3, t1, firmware="2026.02")], t1)
    outbox = [json.loads(m.payload) for m in spool.outbox_peek() if m.topic.endswith("/events")]
    assert [(e["seq"], e["type"]) for e in outbox] == [
        (1, "added"),
        (2, "added"),
        (3, "added"),
        (4, "removed"),
        (5, "moved"),
        (6, "changed"),
    ]
    rows = history_rows(spool.path)
    assert rows == [(e["seq"], e["id"], e["type"], e["miner_id"]) for e in outbox]
    with sqlite3.connect(spool.path) as db:
        bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM register_history")]
    assert sorted(bodies, key=lambda b: b["seq"]) == outbox  # the very message, seq and id
    for body in bodies:
        validate("event.v1", body)


def test_history_is_append_only(spool: Spool) -> None:
    publisher(spool).publish_inventory(rigs(T0, 1), T0)
    with sqlite3.connect(spool.path) as db, pytest.raises(sqlite3.DatabaseError, match="append"):
        db.execute("UPDATE register_history SET type = 'added'")


def test_failed_history_write_queues_nothing(spool: Spool) -> None:
    pub = publisher(spool)
    pub.publish_inventory(rigs(T0, 1), T0)
    with sqlite3.connect(spool.path) as db:
        db.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON register_history "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    before = (spool.counts().outbox, spool.last_seq(KEY))
    with pytest.raises(sqlite3.DatabaseError, match="disk says no"):
        pub.publish_inventory(rigs(T0 + DAY, 1, 2), T0 + DAY)
    # Neither the event nor its seq: the register never sees an event the history lacks.
    assert (spool.counts().outbox, spool.last_seq(KEY)) == before


KILLED_WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tests.uplink.test_register_history import publisher, rigs
from kuat.uplink.spool import Spool

spool = Spool(Path(sys.argv[1]))
pub = publisher(spool)
t = datetime(2026, 3, 1, tzinfo=UTC)
print("ready", flush=True)
for i in range(1_000_000):
    t += timedelta(hours=2)  # every round: the previous odd/even half removed, the other added
    pub.publish_inventory(rigs(t, *range(i % 2, 40, 2)), t)
"""


def test_kill_9_leaves_outbox_and_history_in_step(state: Path) -> None:
    path = state / "spool.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(1.5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Spool(path) as spool:
        last = spool.last_seq(KEY)
        outbox = sorted(
            json.loads(m.payload)["seq"]
            for m in spool.outbox_peek(limit=10**6)
            if m.topic.endswith("/events")
        )
    assert last > 40  # it got well past the first round
    # Nothing was delivered, so both hold every event 1..last: none in one and not the other.
    assert outbox == list(range(1, last + 1))
    assert [r[0] for r in history_rows(path)] == outbox


def test_retention_prunes_by_age_and_says_from_when(state: Path, spool: Spool) -> None:
    pub = publisher(spool, history_retention=timedelta(days=30))
    pub.publish_inventory(rigs(T0, 1, 2), T0)
    pub.publish_inventory(rigs(T0 + 2 * DAY, 1), T0 + 2 * DAY)  # 2 removed
    assert len(history_rows(spool.path)) == 3
    late = T0 + 40 * DAY
    pub.publish_inventory(rigs(late, 1, 3), late)  # 3 added; the March rows are > 30 days old
    assert [(r[2], r[3]) for r in history_rows(spool.path)] == [("added", "SN0003")]
    with HistoryReader(spool.path, KEY) as reader:
        assert reader.history_from() == late - timedelta(days=30)

    cfg = config(state)
    doc = export(cfg, "--since", "2026-03-01")
    # The removal of SN0002 is pruned; the export says its period is not fully covered.
    # SN0001's "added" is pruned too, but its first_seen (1 March) still makes it an include.
    assert actions(doc) == [("include", "SN0001"), ("include", "SN0003")]
    assert doc["history_from"] == "2026-03-11T12:00:00Z"
    assert doc["warnings"] and "complete only from 2026-03-11" in doc["warnings"][0]
    done = kuat("register", "export", "-c", str(cfg), "--since", "2026-03-01")
    assert done.returncode == 0 and "warning: the register history" in done.stderr
    assert not export(cfg, "--since", "2026-03-20")["warnings"]


def test_upgrade_copies_undelivered_events_once(spool: Spool) -> None:
    pub = publisher(spool)
    pub.publish_inventory(rigs(T0, 1, 2), T0)
    pub.publish_inventory(rigs(T0 + DAY, 1), T0 + DAY)
    with sqlite3.connect(spool.path) as db:  # a spool written before the history existed
        db.executescript("DROP TABLE register_history; DROP TABLE register_history_meta;")
    publisher(spool)
    publisher(spool)  # every start tries; the primary key keeps one copy
    assert [(r[0], r[2]) for r in history_rows(spool.path)] == [
        (1, "added"),
        (2, "added"),
        (3, "removed"),
    ]


# --- the export -------------------------------------------------------------------------


def test_export_is_net_change_over_the_period(state: Path, spool: Spool) -> None:
    pub = publisher(spool)
    pub.publish_inventory(rigs(T0, 1, 2, 3, 4, 5), T0)  # filed on 1 March
    t = T0 + 3 * DAY
    pub.publish_inventory(rigs(t, 1, 3, 4, 5, 6, 7), t)  # 2 removed; 6, 7 added
    t += 3 * DAY
    pub.publish_inventory(  # 3 removed; 7 removed; 4 moves; 5 gets new firmware
        [rig(1, t), rig(4, t, ip="10.0.9.4"), rig(5, t, firmware="2026.02"), rig(6, t)], t
    )
    t += 3 * DAY
    pub.publish_inventory(  # 3 is back (repaired): no longer an exclusion
        [rig(1, t), rig(3, t), rig(4, t, ip="10.0.9.4"), rig(5, t, firmware="2026.02"), rig(6, t)],
        t,
    )
    cfg = config(state)
    doc = export(cfg, "--since", "2026-03-02")
    assert actions(doc) == [("include", "SN0006"), ("exclude", "SN0002")]
    excluded = doc["rows"][1]
    assert excluded["at"] == "2026-03-04T12:00:00Z" and excluded["seq"] == 6
    assert excluded["rated_w"] == 3500.0 and excluded["model"] == "S21"
    assert [m["miner_id"] for m in doc["transient"]] == ["SN0007"]  # came and went: not filed
    assert doc["moved"] == [
        {
            "miner_id": "SN0004",
            "serial": "SN0004",
            "mac": None,
            "at": "2026-03-07T12:00:00Z",
            "from": {"ip": "10.0.1.4", "port": 4028, "location": None},
            "to": {"ip": "10.0.9.4", "port": 4028, "location": None},
        }
    ]
    assert doc["changed"][0]["miner_id"] == "SN0005"
    assert doc["changed"][0]["changes"] == {"firmware": {"from": "2025.01", "to": "2026.02"}}
    assert (doc["include"], doc["exclude"]) == (1, 1)
    assert doc["since"] == "2026-03-02" and doc["period_from"] == "2026-03-01T19:00:00Z"

    # A period starting after the first removals only sees what happened since.
    assert actions(export(cfg, "--since", "2026-03-08")) == [("include", "SN0003")]
    # Without --since: a full declaration of everything present, nothing to exclude.
    full = export(cfg)
    assert actions(full) == [("include", f"SN000{n}") for n in (1, 3, 4, 5, 6)]
    assert full["since"] is None and not full["warnings"]


def test_csv_and_json_agree(state: Path, spool: Spool) -> None:
    pub = publisher(spool)
    pub.publish_inventory(rigs(T0, 1, 2, 3), T0)
    pub.publish_inventory(rigs(T0 + DAY, 1, 4), T0 + DAY)
    cfg = config(state)
    for since in ([], ["--since", "2026-03-01"], ["--since", "2026-03-02"]):
        doc = export(cfg, *since)
        done = kuat("register", "export", "-c", str(cfg), *since)
        assert done.returncode == 0, done.stderr
        rows = list(csv.DictReader(io.StringIO(done.stdout)))
        assert rows, since
        assert len(rows) == len(doc["rows"])
        for got, want in zip(rows, doc["rows"], strict=True):
            assert got == {k: "" if want[k] is None else str(want[k]) for k in got}


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("2026-13-01", "YYYY-MM-DD"),
        ("01.03.2026", "YYYY-MM-DD"),
        ("20260301", "YYYY-MM-DD"),
        ("2999-01-01", "in the future"),
    ],
)
def test_bad_since_is_a_clear_error(state: Path, spool: Spool, since: str, message: str) -> None:
    publisher(spool).publish_inventory(rigs(T0, 1), T0)
    done = kuat("register", "export", "-c", str(config(state)), "--since", since)
    assert done.returncode == 2
    assert message in done.stderr and since in done.stderr
    assert done.stdout == ""


# --- with a real broker: delivery no longer forgets removals ------------------------------


def wait_for_empty(pub: RegisterPublisher) -> None:
    assert pub.wait_idle(15.0), f"{pub.pending()} messages not acknowledged"


@pytest.mark.servers
def test_removal_survives_delivery_and_restart(mosquitto: Mosquitto, state: Path) -> None:
    prefix = "test/history"
    path = state / "spool.db"
    with Spool(path) as spool:
        pub = publisher(spool, mosquitto.port, topic_prefix=prefix)
        pub.start()
        try:
            pub.publish_inventory(rigs(T0, 1, 2, 3), T0)
            wait_for_empty(pub)
            pub.publish_inventory(rigs(T0 + 2 * DAY, 1, 3), T0 + 2 * DAY)  # 2 removed
            pub.kick()
            wait_for_empty(pub)
        finally:
            pub.stop()
    # The agent restarts: a new spool connection and publisher; the broker has everything.
    with Spool(path) as spool:
        pub = publisher(spool, mosquitto.port, topic_prefix=prefix)
        assert pub.pending() == 0 and spool.counts().outbox_dead == 0

    cfg = config(state, prefix)
    doc = export(cfg, "--since", "2026-03-02")
    assert actions(doc) == [("exclude", "SN0002")]
    assert doc["rows"][0]["at"] == "2026-03-03T12:00:00Z"
    done = kuat("register", "export", "-c", str(cfg), "--since", "2026-03-02")
    assert done.returncode == 0, done.stderr
    assert [(r["action"], r["serial"]) for r in csv.DictReader(io.StringIO(done.stdout))] == [
        ("exclude", "SN0002")
    ]
