"""The outbox on real SQLite files: durability, migrations, per-uplink delivery, the cap,
corrupt files. No mocks: a crash is a real SIGKILL of a real process."""

from __future__ import annotations

import logging
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from buffer.outbox import Outbox
from buffer.schema import LATEST, MIGRATIONS, migrate
from tests.buffer_helpers import (
    committed_high_water,
    evicted_ranges,
    expand,
    integrity,
    reading,
    stored_seqs,
)

ROOT = Path(__file__).resolve().parents[1]


def fill(ob: Outbox, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        ob.submit(reading(i))
    assert ob.sync(30), "the writer did not commit in time"


# -- 1. durability ---------------------------------------------------------------------

CRASHER = textwrap.dedent("""
    import os, signal, sys
    from buffer.outbox import Outbox
    from tests.buffer_helpers import reading
    ob = Outbox(sys.argv[1], ["central"], commit_interval=0.05)
    ob.start()
    for i in range(5000):
        ob.submit(reading(i))
    assert ob.sync(30)
    print(ob.last_seq, flush=True)
    for i in range(5000, 5300):   # submitted, maybe committed, then the process dies
        ob.submit(reading(i))
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_process_loses_nothing_committed_and_seq_never_jumps(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(db)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    synced = int(proc.stdout.strip())
    assert synced == 5000
    assert integrity(db) == "ok"
    high = committed_high_water(db)
    assert high >= synced
    # every committed reading is there, nothing beyond what was committed
    assert stored_seqs(db) == set(range(1, high + 1))
    # the next run continues right after the last committed seq: no gap a platform would count as loss
    ob = Outbox(db, ["central"])
    ob.start()
    fill(ob, 1, start=9000)
    ob.close()
    assert max(stored_seqs(db)) == high + 1


@pytest.mark.slow
def test_a_reading_is_committed_within_the_commit_interval(tmp_path: Path) -> None:
    """What a power cut can take is bounded by the commit interval (commits are synchronous=FULL)."""
    db = tmp_path / "outbox.db"
    ob = Outbox(db, ["central"], commit_interval=0.1)
    ob.start()
    try:
        assert ob._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        fill(ob, 1)  # the file exists
        lags = []
        for i in range(10):
            t0 = time.monotonic()
            ob.submit(reading(100 + i))
            while len(stored_seqs(db)) < i + 2:
                assert time.monotonic() - t0 < 2, "reading not committed"
                time.sleep(0.005)
            lags.append(time.monotonic() - t0)
    finally:
        ob.close()
    assert max(lags) < 0.1 + 0.15, lags
    journal = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"


# -- migrations ---------------------------------------------------------------------------

def test_an_older_schema_is_migrated_in_order_and_keeps_its_readings(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    assert migrate(conn, upto=1) == 1
    conn.execute("INSERT INTO uplinks(bit, name) VALUES (0, 'central')")
    conn.executemany("INSERT INTO readings(seq, device, ts, status, vals, pending) VALUES (?, ?, ?, ?, ?, 1)",
                     [(s, "dust-1", 1000 + s, "ok", f'{{"pm2_5":{s}}}') for s in range(1, 51)])
    conn.execute("INSERT INTO evictions(at, first_seq, last_seq, count, reason, pending)"
                 " VALUES (1, 1, 10, 10, 'max_bytes', 1)")
    conn.close()

    ob = Outbox(db, ["central"])
    ob.start()
    try:
        versions = [r[0] for r in ob._conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [v for v, _, _ in MIGRATIONS] == list(range(1, LATEST + 1))
        reader = ob.reader()
        rows = reader.fetch(ob.uplink_bits["central"], 0, None, 100)
        assert [r.seq for r in rows] == list(range(1, 51))
        assert rows[7].vals == '{"pm2_5":8}'
        (old,) = reader.evictions(ob.uplink_bits["central"])
        assert (old.first_seq, old.last_seq, old.uplink) == (1, 10, None)  # a v1 row: every uplink
        fill(ob, 1)
        assert ob.last_seq == 51
        reader.close()
    finally:
        ob.close()


def test_a_buffer_from_a_newer_edge_agent_is_refused_not_moved_aside(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    Outbox(db, ["central"]).close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 0)", (LATEST + 1,))
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this edge-agent"):
        Outbox(db, ["central"])
    assert not list(tmp_path.glob("*.corrupt-*"))


# -- 2. per-uplink delivery ---------------------------------------------------------------

def test_an_uplink_that_is_down_holds_nothing_back_for_the_other(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.db", ["central", "city-ops"])
    ob.start()
    central, city = ob.uplink_bits["central"], ob.uplink_bits["city-ops"]
    r_central, r_city = ob.reader(), ob.reader()
    try:
        delivered = 0
        for round_ in range(5):  # city-ops is down the whole time; central delivers every round
            fill(ob, 1000, start=round_ * 1000)
            rows = r_central.fetch(central, 0, None, 10_000)
            assert [r.seq for r in rows] == list(range(delivered + 1, ob.last_seq + 1))
            ob.ack("central", [r.seq for r in rows])
            delivered = ob.last_seq
            assert ob.sync()
            assert r_central.fetch(central, 0, None, 10) == []
        # city-ops still has everything, oldest first
        backlog = r_city.fetch(city, 0, None, 10_000)
        assert [r.seq for r in backlog] == list(range(1, 5001))
        # ack before delete: a reading goes only when every uplink has it
        ob.ack("city-ops", list(range(1, 2501)))
        assert ob.sync()
        assert stored_seqs(ob.path) == set(range(2501, 5001))
        ob.ack("city-ops", [s for s in range(2501, 5001) if s % 2])  # acks in any order, not contiguous
        assert ob.sync()
        assert stored_seqs(ob.path) == set(range(2502, 5001, 2))
    finally:
        r_central.close()
        r_city.close()
        ob.close()


def test_a_removed_uplink_releases_its_readings(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    ob = Outbox(db, ["central", "old"])
    ob.start()
    fill(ob, 100)
    ob.ack("central", list(range(1, 51)))
    ob.close()
    ob = Outbox(db, ["central"])
    try:
        assert stored_seqs(db) == set(range(51, 101))
    finally:
        ob.close()


# -- 3. bounded loudly -------------------------------------------------------------------

def test_the_cap_evicts_the_oldest_and_records_exactly_what_each_uplink_lost(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    max_bytes = 256 * 1024
    ob = Outbox(db, ["central", "city-ops"], max_bytes=max_bytes)
    ob.start()
    acked: set[int] = set()
    sizes = []
    try:
        for round_ in range(20):
            fill(ob, 500, start=round_ * 500)
            sizes.append(ob.used_bytes())
            # central delivers every third reading of this round, city-ops nothing
            batch = [s for s in range(round_ * 500 + 1, ob.last_seq + 1) if s % 3 == 0]
            ob.ack("central", batch)
            acked.update(batch)
            assert ob.sync()
    finally:
        ob.close()
    assert ob.counters.evicted > 5000
    assert max(sizes) <= max_bytes, sizes
    assert integrity(db) == "ok"
    everything = set(range(1, 10_001))
    lost_central = expand(evicted_ranges(db, "central"))
    lost_city = expand(evicted_ranges(db, "city-ops"))
    bits = {"central": 0, "city-ops": 1}
    # What a platform learns is exact: the seqs of an announced range it did not receive are the
    # ones lost (a range may span seqs it did receive when many small runs were joined)
    assert lost_central - acked == everything - acked - stored_seqs(db, bits["central"])
    assert lost_city == everything - stored_seqs(db, bits["city-ops"])
    assert sum(n for _, _, n in evicted_ranges(db, "central")) == len(lost_central - acked)
    assert not lost_central & stored_seqs(db, bits["central"])
    # the oldest went first
    assert max(lost_city) < min(stored_seqs(db, bits["city-ops"]))


def test_a_corrupt_file_is_moved_aside_loudly_and_seq_continues_above(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "outbox.db"
    ob = Outbox(db, ["central"])
    ob.start()
    fill(ob, 3000)
    ob.close()
    with open(db, "r+b") as f:  # a dying SD card: pages of garbage in the middle of the file
        f.seek(4096 * 3)
        f.write(b"\xde\xad\xbe\xef" * 4096)
    with caplog.at_level(logging.ERROR, logger="buffer"):
        ob = Outbox(db, ["central"])
    ob.start()
    try:
        assert any("BUFFER CORRUPT" in r.getMessage() and "moved aside" in r.getMessage() for r in caplog.records)
        aside = [p for p in tmp_path.glob("outbox.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
        assert len(aside) == 1 and aside[0].stat().st_size > 0
        fill(ob, 10)
        new = sorted(stored_seqs(db))
        assert new[0] > 3000 and new == list(range(new[0], new[0] + 10))  # never reused
        # and the platform is told which seqs it will never get
        (ev,) = ob.reader().evictions(ob.uplink_bits["central"])
        assert ev.first_seq <= 3000 and ev.last_seq == new[0] - 1 and "corrupt" in ev.reason
    finally:
        ob.close()
    assert integrity(db) == "ok"


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "outbox.db"
    db.write_bytes(b"this is not an SQLite file at all" * 100)
    with caplog.at_level(logging.ERROR, logger="buffer"):
        ob = Outbox(db, ["central"])
    try:
        assert "BUFFER CORRUPT" in caplog.text
        assert ob.last_seq == 0
    finally:
        ob.close()
    assert integrity(db) == "ok"


def test_a_file_that_turns_corrupt_while_running_is_replaced_and_delivery_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "outbox.db"
    ob = Outbox(db, ["central"])
    ob.start()
    reader = ob.reader()
    try:
        fill(ob, 20_000)
        ob._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rng = random.Random(3)
        with open(db, "r+b") as f:  # pages go bad under the running daemon
            for offset in range(8192, db.stat().st_size, 3 * 4096):
                f.seek(offset)
                f.write(rng.randbytes(4096))
        with caplog.at_level(logging.ERROR, logger="buffer"), pytest.raises(sqlite3.DatabaseError):
            reader.fetch(ob.uplink_bits["central"], 0, None, 100_000)  # the uplink hits a bad page
        fill(ob, 10, start=20_000)
        assert "BUFFER CORRUPT" in caplog.text and "found by a reader" in caplog.text
        rows = reader.fetch(ob.uplink_bits["central"], 0, None, 100_000)  # the reader follows the new file
        assert [r.seq for r in rows] == list(range(20_001, 20_011))  # seq goes on, never reused
        (ev,) = reader.evictions(ob.uplink_bits["central"])
        assert (ev.first_seq, ev.last_seq) == (1, 20_000) and "count unknown" in ev.reason
        assert ob.counters.resets == 1
    finally:
        reader.close()
        ob.close()
    assert integrity(db) == "ok"


def test_a_commit_the_disk_refuses_keeps_the_readings_and_says_so_until_it_succeeds(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Not a full disk: an error the writer cannot free room for (here the seq file cannot be
    written). The readings wait in memory, the log names the trouble once, and the next retry
    after it is gone commits them all."""
    db = tmp_path / "outbox.db"
    seq_file = db.with_name(db.name + ".seq")
    seq_file.mkdir()  # in the way of the seq reservation: every commit of readings fails
    ob = Outbox(db, ["central"])
    ob.start()
    try:
        with caplog.at_level(logging.INFO, logger="buffer"):
            for i in range(10):
                ob.submit(reading(i))
            assert not ob.sync(1.0), "nothing can be committed while the seq file is unwritable"
            assert "cannot commit (IsADirectoryError" in caplog.text and "10 readings wait in memory" in caplog.text
            assert "buffer writer failed" not in caplog.text
            assert ob.counters.io_errors >= 1 and ob.counters.committed == 0
            seq_file.rmdir()
            assert ob.sync(10), "the writer retries and commits once the trouble is gone"
            assert "commits succeed again" in caplog.text
    finally:
        ob.close()
    assert stored_seqs(db) == set(range(1, 11))
