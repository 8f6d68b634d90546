"""ENOSPC survived: a real, small tmpfs under the buffer. The outbox keeps running, evicts the
oldest readings (recorded), retries, and never leaves a corrupt file."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from buffer.outbox import Outbox
from tests.buffer_helpers import committed_high_water, evicted_ranges, expand, integrity, reading, stored_seqs

TMPFS_BYTES = 2 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill_disk(path: Path) -> int:
    """Another process eats every free byte, as a runaway log would."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    written += os.write(fd, b"x" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return written


def nothing_lost_silently(db: Path) -> None:
    """Every committed seq is still buffered or inside a range recorded as evicted."""
    high = committed_high_water(db)
    assert high > 0
    assert set(range(1, high + 1)) <= stored_seqs(db) | expand(evicted_ranges(db, "central"))


@pytest.mark.slow
def test_max_bytes_larger_than_the_disk_evicts_instead_of_failing(small_disk: Path) -> None:
    db = small_disk / "outbox.db"
    ob = Outbox(db, ["central"], max_bytes=64 * 1024 * 1024)  # the technician's guess; the card is 2 MiB
    ob.start()
    try:
        for round_ in range(20):
            for i in range(round_ * 2000, (round_ + 1) * 2000):
                ob.submit(reading(i))
            assert ob.sync(10), f"round {round_}: the writer stopped committing"
        assert ob.last_seq == 40_000
    finally:
        ob.close()
    assert ob.counters.evicted > 0 and ob.counters.io_errors == 0 and ob.counters.dropped == 0
    reasons = {r for r, in _query(db, "SELECT DISTINCT reason FROM evictions")}
    assert reasons == {"disk full"}
    assert integrity(db) == "ok"
    nothing_lost_silently(db)
    assert max(stored_seqs(db)) == 40_000  # the newest are kept


def test_a_disk_filled_by_someone_else_is_survived(small_disk: Path) -> None:
    db = small_disk / "outbox.db"
    ob = Outbox(db, ["central"], max_bytes=64 * 1024 * 1024)
    ob.start()
    try:
        for i in range(3000):
            ob.submit(reading(i))
        assert ob.sync(10)
        filler = small_disk / "runaway.log"
        assert fill_disk(filler) > 0
        assert os.statvfs(small_disk).f_bavail == 0
        # polling goes on while the disk is full
        for round_ in range(10):
            for i in range(3000 + round_ * 500, 3000 + (round_ + 1) * 500):
                ob.submit(reading(i))
            ob.sync(2)
        assert ob._thread is not None and ob._thread.is_alive()
        committed_while_full = ob.last_seq
        filler.unlink()
        assert ob.sync(10), "commits did not resume after space came back"
        assert ob.last_seq == 8000
    finally:
        ob.close()
    print(f"disk full: committed {committed_while_full} before the filler went, evicted {ob.counters.evicted},"
          f" full events {ob.counters.disk_full}, dropped {ob.counters.dropped}")
    # the oldest readings made room: everything polled while the disk was full was committed
    assert committed_while_full == 8000
    assert ob.counters.dropped == 0
    assert integrity(db) == "ok"
    nothing_lost_silently(db)


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()
