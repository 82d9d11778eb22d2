from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kuat.uplink.spool import Spool


def test_put_take_ack(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as sp:
        sp.put_lines([f"m v={i}i {i}" for i in range(10)])
        b = sp.take(4)
        assert b.lines == tuple(f"m v={i}i {i}" for i in range(4))
        assert sp.take(4) == b  # take does not remove; only ack does
        assert sp.ack(b) == 4
        assert sp.take(100).lines[0] == "m v=4i 4"
        assert sp.counts().pending == 6


def test_ack_removes_exactly_the_batch_dense_or_not(tmp_path: Path) -> None:
    from kuat.uplink.spool import Batch

    with Spool(tmp_path / "s.db") as sp:
        sp.put_lines([f"m v={i}i {i}" for i in range(10)])
        ids = sp.take(10).ids
        # a dead-lettered line leaves a hole: the rest of its batch is acked around it
        assert sp.ack(Batch(ids[0:2] + ids[3:5], ("x",) * 4)) == 4
        assert [ln.split()[-1] for ln in sp.take(10).lines] == ["2", "5", "6", "7", "8", "9"]
        assert sp.ack(Batch(ids[5:8], ("x",) * 3)) == 3  # a dense run
        assert [ln.split()[-1] for ln in sp.take(10).lines] == ["2", "8", "9"]
        assert sp.counts().pending == 3


def test_wal_and_full_sync(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as sp:
        assert sp._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert sp._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_cap_drops_oldest_with_counter(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path / "s.db", max_rows=100) as sp:
        assert sp.put_lines([f"a v={i}i" for i in range(80)]) == 0
        with caplog.at_level(logging.DEBUG, logger="kuat.uplink.spool"):
            dropped = sp.put_lines([f"b v={i}i" for i in range(50)])
        assert dropped == 30
        assert "dropped the 30 oldest lines" in caplog.text
        stats = sp.counts()
        assert (stats.pending, stats.dropped) == (100, 30)
        lines = sp.take(1000).lines
        assert lines[0] == "a v=30i" and lines[-1] == "b v=49i"
    with Spool(tmp_path / "s.db", max_rows=100) as sp:  # the counter is persistent
        assert sp.counts().dropped == 30
        assert sp.put_lines(["c v=1i"]) == 1
        assert sp.counts().dropped == 31


def test_cap_while_batch_in_flight(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_rows=10) as sp:
        sp.put_lines([f"a v={i}i" for i in range(10)])
        b = sp.take(5)
        sp.put_lines([f"b v={i}i" for i in range(5)])  # drops exactly the in-flight rows
        assert sp.ack(b) == 0
        assert sp.counts().pending == 10


def test_dead_letter(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_dead=3) as sp:
        sp.put_lines(["good v=1i", "bad", "good v=2i"])
        b = sp.take(3)
        bad = type(b)(b.ids[1:2], b.lines[1:2])
        assert sp.dead_letter(bad, "HTTP 400 unable to parse") == 1
        assert sp.take(10).lines == ("good v=1i", "good v=2i")
        assert sp.dead_lines() == [("bad", "HTTP 400 unable to parse")]
        sp.dead_letter(["x1", "x2", "x3", "x4"], "never spooled")  # bare lines too
        s = sp.counts()
        assert (s.pending, s.dead) == (2, 3)  # dead table is capped, newest kept
        assert [ln for ln, _ in sp.dead_lines()] == ["x4", "x3", "x2"]


def test_threads_share_one_spool(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as sp:

        def writer(k: int) -> None:
            for i in range(50):
                sp.put_lines([f"t{k} v={i}i"])

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        taken = 0
        while any(t.is_alive() for t in threads) or sp.counts().pending:
            b = sp.take(7)
            sp.ack(b)
            taken += len(b)
        for t in threads:
            t.join()
        assert taken == 200 and sp.counts().pending == 0


def test_outbox_sequenced_and_coalesced(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as sp:
        assert sp.outbox_put_sequenced("site-1", "t/events", [{"a": 1}, {"a": 2}]) == [1, 2]
        sp.outbox_put("t/inv", b"v1", retain=True, coalesce=True)
        sp.outbox_put("t/inv", b"v2", retain=True, coalesce=True)
        assert sp.outbox_put_sequenced("site-1", "t/events", [{"a": 3}]) == [3]
        msgs = sp.outbox_peek()
        assert [m.payload for m in msgs] == [
            b'{"a":1,"seq":1}',
            b'{"a":2,"seq":2}',
            b"v2",
            b'{"a":3,"seq":3}',
        ]
        assert sp.retained() == {"t/inv": b"v2"}
        assert sp.outbox_peek(after_id=msgs[1].id, limit=1)[0].payload == b"v2"
        assert sp.outbox_ack(msgs[0].id) and not sp.outbox_ack(msgs[0].id)
        assert sp.outbox_dead_letter(msgs[1].id, "not authorized")
        s = sp.counts()
        assert (s.outbox, s.outbox_dead) == (2, 1)
    with Spool(tmp_path / "s.db") as sp:
        assert sp.last_seq("site-1") == 3


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from kuat.uplink.spool import Spool
    sp = Spool(Path(sys.argv[1]))
    n = 0
    while True:
        sp.put_lines([f"m,k=v f={n + i}i {n + i}" for i in range(100)])
        n += 100
        sp.outbox_put_sequenced("s", "t", [{"n": n}])
        print(n, flush=True)  # printed only after the commit returned
    """
)


def test_kill_9_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db)], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    confirmed = 0
    deadline = time.monotonic() + 10
    while confirmed < 3000 and time.monotonic() < deadline:
        confirmed = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert confirmed >= 3000
    # The WAL and the main file must open cleanly and hold every confirmed row, in order.
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Spool(db) as sp:
        lines = sp.take(10_000_000).lines
        assert len(lines) >= confirmed and len(lines) % 100 == 0
        assert lines == tuple(f"m,k=v f={i}i {i}" for i in range(len(lines)))
        seqs = [m.payload for m in sp.outbox_peek(limit=1_000_000)]
        assert len(seqs) == len(lines) // 100 or len(seqs) == len(lines) // 100 - 1
        assert sp.last_seq("s") == len(seqs)


# --- damage: quarantine, seq, salvage (issue 11) -------------------------------------------

PAGE = 4096


def _filled_spool(path: Path, lines: int = 20_000) -> int:
    """A checkpointed spool with ``lines`` telemetry lines and three register events; the
    last seq issued."""
    with Spool(path) as sp:
        for i in range(0, lines, 5000):
            sp.put_lines([f"asic,device=d{j} v={j}i {j}" for j in range(i, i + 5000)])
        seqs = sp.outbox_put_sequenced("bin/site", "t/events", [{"n": 1}, {"n": 2}, {"n": 3}])
        sp._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return seqs[-1]


def _truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _header(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(b"\xa5" * 100)


def _one_page(path: Path) -> None:
    # A page in the middle of the telemetry table's b-tree.
    pages = path.stat().st_size // PAGE
    with path.open("r+b") as f:
        f.seek((pages // 2) * PAGE)
        f.write(b"\x0d\xff" * (PAGE // 2))


def _zero(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, "malformed"),
        (_header, "not a database"),
        (_one_page, ""),
        (_zero, "empty file"),
    ],
    ids=["truncated", "header", "one-page", "zero-bytes"],
)
def test_a_damaged_spool_is_quarantined_and_seq_keeps_growing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, reason: str
) -> None:
    path = tmp_path / "spool.db"
    last = _filled_spool(path)
    damage(path)
    with caplog.at_level(logging.WARNING, logger="kuat.uplink.spool"), Spool(path) as sp:
        assert sp.quarantine is not None
        moved = sp.quarantine.moved_to
        assert moved.exists() and moved.name.startswith("spool.db.damaged-")
        stats = sp.counts()
        assert stats.quarantined == 1 and stats.pending == 0
        # the fresh spool works, and the register's seq never goes back
        sp.put_lines(["m v=1i 1"])
        assert sp.take(10).lines == ("m v=1i 1",)
        new = sp.outbox_put_sequenced("bin/site", "t/events", [{"n": 4}])
        assert new[0] > last
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(str(path) in m and str(moved) in m and reason in m for m in errors), errors
    with Spool(path) as sp:  # the next start finds a healthy spool: no new quarantine
        assert sp.quarantine is None and sp.counts().quarantined == 1
        assert sp.outbox_put_sequenced("bin/site", "t/events", [{"n": 5}])[0] == new[0] + 1


def test_seq_survives_a_spool_replaced_by_an_older_copy(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path) as sp:
        sp.outbox_put_sequenced("k", "t", [{"n": 1}])
        sp._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    backup = path.read_bytes()
    with Spool(path) as sp:
        last = sp.outbox_put_sequenced("k", "t", [{"n": i} for i in range(2500)])[-1]
    (tmp_path / "spool.db-wal").unlink(missing_ok=True)
    path.write_bytes(backup)  # restored from last week's backup: counter at 1
    with Spool(path) as sp:  # same spool id, so the reservation tells it is behind
        assert sp.outbox_put_sequenced("k", "t", [{"n": 0}])[0] > last


def test_a_transaction_that_reserved_and_never_committed_leaves_no_gap(tmp_path: Path) -> None:
    # An agent killed while it publishes can stop between the .seq file's reservation (written
    # before the commit) and the commit. Its events were never issued, so the next start must
    # not skip them: a gap tells every receiver to rebuild from the inventory (and the agent
    # logged that its spool was gone). Seen as a CI failure of test_register_history's kill -9.
    from kuat.uplink.spool import SEQ_RESERVE

    path = tmp_path / "spool.db"

    def killed(seq: int) -> bytes:
        raise KeyboardInterrupt  # stands for the kill: after the reservation, before COMMIT

    with Spool(path) as sp:
        assert sp.outbox_put_sequenced("k", "t", [{"n": 1}]) == [1]
        with pytest.raises(KeyboardInterrupt):
            sp.outbox_put_sequenced(
                "k", "t", [{"n": i} for i in range(SEQ_RESERVE + 5)], retained=("inv", killed)
            )
    with Spool(path) as sp:
        assert sp.last_seq("k") == 1
        assert sp.outbox_put_sequenced("k", "t", [{"n": 2}]) == [2]


def test_a_copy_older_than_a_reserving_commit_is_behind(tmp_path: Path) -> None:
    # The counter a reservation starts from is also what an older copy holds; only the value
    # written after the commit tells the two apart.
    from kuat.uplink.spool import SEQ_RESERVE

    path = tmp_path / "spool.db"
    with Spool(path) as sp:
        sp.outbox_put_sequenced("k", "t", [{"n": i} for i in range(SEQ_RESERVE)])
        sp._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    backup = path.read_bytes()  # the counter where the next reservation starts
    with Spool(path) as sp:  # past the reservation made by the first put: reserves again
        last = sp.outbox_put_sequenced("k", "t", [{"n": i} for i in range(SEQ_RESERVE + 1)])[-1]
    (tmp_path / "spool.db-wal").unlink(missing_ok=True)
    path.write_bytes(backup)
    with Spool(path) as sp:
        assert sp.outbox_put_sequenced("k", "t", [{"n": 2}])[0] > last


def test_a_healthy_restart_leaves_no_gap_in_seq(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    for expected in (1, 2, 3):
        with Spool(path) as sp:
            assert sp.outbox_put_sequenced("k", "t", [{"n": expected}]) == [expected]


def test_salvage_recovers_what_is_readable(tmp_path: Path) -> None:
    from kuat.uplink.spool import read_damaged, salvage_into

    path = tmp_path / "spool.db"
    last = _filled_spool(path, lines=20_000)
    _one_page(path)
    with Spool(path) as sp:
        assert sp.quarantine is not None
        report = read_damaged(sp.quarantine.moved_to)
        assert report.readable
        n = report.counts()["telemetry"]
        # one 4 KB page holds a few dozen lines: everything else comes back
        assert 20_000 - 200 <= n < 20_000 + 1
        done = salvage_into(report, sp)
        assert done["telemetry"] == n == sp.counts().pending
        assert done["outbox"] == 3
        assert sp.last_seq("bin/site") > last


def test_spool_command_inspects_and_salvages(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kuat.agent.cli import app
    from kuat.agent.commands import register_all

    register_all(app)
    state = tmp_path / "state"
    state.mkdir()
    cfg = tmp_path / "kuat.toml"
    cfg.write_text(
        f'[site]\nid = "s"\nowner_bin = "230140000045"\n[agent]\nstate_dir = "{state}"\n'
    )
    path = state / "spool.db"
    _filled_spool(path, lines=5000)
    _truncate(path)
    Spool(path).close()
    (damaged,) = state.glob("spool.db.damaged-*")
    runner = CliRunner()
    status = runner.invoke(app, ["spool", "status", "-c", str(cfg)])
    assert status.exit_code == 1 and str(damaged) in status.output
    inspect = runner.invoke(app, ["spool", "inspect", str(damaged), "--json"])
    assert inspect.exit_code == 0, inspect.output
    body = json.loads(inspect.output)
    assert body["readable"] and body["rows"]["telemetry"] > 0 and body["problems"]
    salvage = runner.invoke(app, ["spool", "salvage", str(damaged), "-c", str(cfg)])
    assert salvage.exit_code == 0, salvage.output
    assert f"{body['rows']['telemetry']:,} telemetry lines" in salvage.output
    assert not damaged.exists()
    with Spool(path) as sp:
        assert sp.counts().pending == body["rows"]["telemetry"]
        assert sp.counts().quarantined == 0
    assert runner.invoke(app, ["spool", "status", "-c", str(cfg)]).exit_code == 0
    # a production config whose secrets only systemd can read still names its spool
    prod = tmp_path / "prod.toml"
    prod.write_text(
        cfg.read_text() + '[influx]\nurl = "http://127.0.0.1:1"\ntoken = { credential = "t" }\n'
    )
    shown = runner.invoke(
        app, ["spool", "status", "-c", str(prod)], env={"CREDENTIALS_DIRECTORY": ""}
    )
    assert shown.exit_code == 0 and str(path) in shown.output, shown.output


def test_full_disk_drops_oldest_says_so_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.tmpfs import fill, small_tmpfs

    with small_tmpfs(tmp_path / "small", "24m") as disk:
        sp = Spool(disk / "spool.db", reserve_bytes=2 << 20)
        filler = fill(disk, leave_bytes=3 << 20)
        line = "asic,device=d{} hashrate_ths=100.5,power_w=3250i,temp_c=71.5 {}"
        n = 0
        with caplog.at_level(logging.INFO, logger="kuat.uplink.spool"):
            for _ in range(300):  # about 9 MB of lines into 3 MB of room
                sp.put_lines([line.format(i, i) for i in range(n, n + 250)])
                n += 250
            stats = sp.counts()
            assert stats.disk_full and stats.dropped > 0
            kept = sp.take(stats.pending + 10).lines
            assert kept[-1] == line.format(n - 1, n - 1)  # the newest line is kept
            assert stats.pending + stats.dropped == n  # nothing vanished uncounted
            filler.unlink()
            sp.put_lines([line.format(n, n)])
            assert not sp.counts().disk_full
        full = [r for r in caplog.records if "no space left" in r.getMessage()]
        assert len(full) == 1 and full[0].levelno == logging.ERROR
        assert sum("space is available again" in r.getMessage() for r in caplog.records) == 1
        sp.close()


def _sqlite_memory_used() -> int | None:
    """SQLite's own count of the memory it holds (the library the sqlite3 module uses)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    fn = ctypes.CDLL(name).sqlite3_memory_used
    fn.restype = ctypes.c_int64
    return int(fn())


def test_sequenced_messages_staged_in_chunks_are_each_body_dumped_with_its_seq(
    tmp_path: Path,
) -> None:
    # The bodies are written to the spool a chunk at a time before the transaction that numbers
    # them (Spool.staged) and get their seq inside SQLite: what a register receives is still
    # each body dumped with its seq, in order, across chunks, whatever its text.
    from kuat.uplink.spool import STAGE_CHUNK

    bodies = [
        {"n": i, "miner": {"id": f"Ж-{i}", "note": 'q"\\\u2028', "w": 3.5, "pool": None}}
        for i in range(2 * STAGE_CHUNK + 7)
    ]
    with Spool(tmp_path / "s.db") as sp:
        sp.outbox_put_sequenced("k", "t/other", [{"a": 0}])
        seqs = sp.outbox_put_sequenced("k", "t/events", bodies)
        got = [m.payload for m in sp.outbox_peek(limit=10_000) if m.topic == "t/events"]
    assert seqs == list(range(2, len(bodies) + 2))
    assert got == [
        json.dumps({**b, "seq": s}, ensure_ascii=False, separators=(",", ":")).encode()
        for b, s in zip(bodies, seqs, strict=True)
    ]


def test_a_retained_message_requeued_goes_last_once(tmp_path: Path) -> None:
    # what the register publisher does on every new connection: its snapshot again, after
    # whatever is queued, and not twice if the last copy was not sent yet
    with Spool(tmp_path / "s.db") as sp:
        sp.outbox_put_sequenced("k", "ev", [{"a": 1}], retained=("inv", lambda _: b"snap-1"))
        sp.outbox_put("other", b"x")
        assert sp.outbox_requeue_retained("inv") is True
        assert sp.outbox_requeue_retained("nothing-retained") is False
        msgs = sp.outbox_peek()
        assert [(m.topic, m.payload, m.retain) for m in msgs] == [
            ("ev", b'{"a":1,"seq":1}', False),
            ("other", b"x", False),
            ("inv", b"snap-1", True),
        ]
        assert sp.retained() == {"inv": b"snap-1"}


def test_a_retained_payload_is_not_kept_by_sqlite_after_it_is_queued(tmp_path: Path) -> None:
    # A bound value is copied by SQLite and kept with its cached statement until the next
    # bind: the inventory snapshot (19 MB at 50,000 miners), bound to the retained row and to
    # its outbox copy, stayed in the agent twice between publishes (issue 15).
    spool = Spool(tmp_path / "s.db")
    if _sqlite_memory_used() is None:
        pytest.skip("the SQLite library is not found by ctypes")
    payload = bytearray(os.urandom(5_000_000))
    before = _sqlite_memory_used()
    assert before is not None
    spool.outbox_put_sequenced("k", "events", [{"a": 1}], retained=("inventory", lambda _: payload))
    after = _sqlite_memory_used()
    assert after is not None
    assert after - before < len(payload) // 2, (before, after)
    assert spool.retained() == {"inventory": bytes(payload)}
    (msg,) = [m for m in spool.outbox_peek() if m.topic == "inventory"]
    assert msg.payload == payload and msg.retain


def _sqlite_memory_highwater() -> int:
    """SQLite's high-water mark of the memory it held since the last call (reset each call)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("sqlite3")
    assert name is not None
    fn = ctypes.CDLL(name).sqlite3_memory_highwater
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_int]
    return int(fn(1))


def test_a_snapshot_queued_and_queued_again_is_never_copied_inside_sqlite(
    tmp_path: Path,
) -> None:
    # The outbox row of a retained snapshot refers to the stored one. Copied into the outbox
    # inside SQLite, a farm's inventory (19 MB at 50,000 miners) was held twice in SQLite's
    # memory at each publish and on every new broker connection: +37 MB at the agent's peak
    # (issue 15), and the spool file held it twice.
    if _sqlite_memory_used() is None:
        pytest.skip("the SQLite library is not found by ctypes")
    payload = bytearray(os.urandom(5_000_000))
    with Spool(tmp_path / "s.db") as spool:
        spool.outbox_put("warm", b"x")  # statements and schema loaded before the marks
        before = _sqlite_memory_used()
        assert before is not None
        _sqlite_memory_highwater()
        spool.outbox_put_sequenced(
            "k", "events", [{"a": 1}], retained=("inventory", lambda _: payload)
        )
        assert _sqlite_memory_highwater() - before < len(payload) // 2
        assert spool.outbox_requeue_retained("inventory")
        assert _sqlite_memory_highwater() - before < len(payload) // 2
        (msg,) = [m for m in spool.outbox_peek() if m.topic == "inventory"]
        assert msg.payload == payload and msg.retain
        spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert (tmp_path / "s.db").stat().st_size < len(payload) * 1.5


def test_a_snapshot_is_read_for_sending_without_copies_inside_sqlite(tmp_path: Path) -> None:
    # Read as a column through the outbox row that refers to it, a farm's snapshot (19 MB at
    # 50,000 miners) was held twice by SQLite besides the bytes returned: the agent's peak at
    # every publish to a broker (issue 15, bench/inventory_peak.py --send). A snapshot spilled
    # to a file (FilePayload) is stored the same way, its file closed.
    from kuat.uplink.spool import FilePayload

    if _sqlite_memory_used() is None:
        pytest.skip("the SQLite library is not found by ctypes")
    head, body = b'{"seq":', os.urandom(5_000_000)
    spill = tempfile.TemporaryFile()  # noqa: SIM115 - the spool closes it
    spill.write(body)
    payload = FilePayload(head, spill, len(body))
    with Spool(tmp_path / "s.db") as spool:
        spool.outbox_put_sequenced(
            "k", "events", [{"a": 1}], retained=("inventory", lambda _: payload)
        )
        assert spill.closed
        spool.outbox_peek(limit=1)  # statements warmed
        before = _sqlite_memory_used()
        assert before is not None
        _sqlite_memory_highwater()
        (msg,) = [m for m in spool.outbox_peek() if m.topic == "inventory"]
        assert _sqlite_memory_highwater() - before < len(body) // 2
    assert msg.payload == head + body and msg.retain


def test_a_newer_retained_message_leaves_the_unsent_older_one_as_it_was(tmp_path: Path) -> None:
    # The snapshot's outbox row refers to the stored retained message; a newer one put on the
    # same topic without coalescing must not change what the older row sends.
    with Spool(tmp_path / "s.db") as sp:
        sp.outbox_put_sequenced("k", "ev", [{"a": 1}], retained=("inv", lambda _: b"snap-1"))
        sp.outbox_put("inv", b"snap-2", retain=True)
        sent = [(m.topic, m.payload) for m in sp.outbox_peek() if m.topic == "inv"]
        assert sent == [("inv", b"snap-1"), ("inv", b"snap-2")]
        assert sp.retained() == {"inv": b"snap-2"}
        (first, _) = [m for m in sp.outbox_peek() if m.topic == "inv"]
        assert sp.outbox_dead_letter(first.id, "too large")
        dead = sp._db.execute("SELECT payload FROM outbox_dead").fetchall()
        assert [bytes(r[0]) for r in dead] == [b"snap-1"]


def test_a_salvaged_snapshot_row_comes_back_with_its_snapshot(tmp_path: Path) -> None:
    # read back from a damaged spool, the row that refers to its retained snapshot is
    # restored with that snapshot, not with the marker it holds in place of it
    from kuat.uplink.spool import read_damaged, salvage_into

    damaged = tmp_path / "damaged.db"
    with Spool(damaged) as sp:
        sp.outbox_put_sequenced("k", "ev", [{"a": 1}], retained=("inv", lambda _: b"snap-1"))
        sp._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    report = read_damaged(damaged)
    with Spool(tmp_path / "live.db") as live:
        assert salvage_into(report, live)["outbox"] == 2
        sent = [(m.topic, m.payload) for m in live.outbox_peek()]
        assert sent == [("ev", b'{"a":1,"seq":1}'), ("inv", b"snap-1")]


def test_an_empty_message_is_sent_as_it_is(tmp_path: Path) -> None:
    # an empty retained message clears the broker's copy: it must go out, not stay queued
    with Spool(tmp_path / "s.db") as sp:
        sp.outbox_put("site/inventory", b"", retain=True, coalesce=True)
        assert [(m.topic, m.payload) for m in sp.outbox_peek()] == [("site/inventory", b"")]
