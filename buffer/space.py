"""Keeping the outbox inside ``max_bytes`` and inside the disk.

Three layers, so that SQLite reports "full" while there is still room to recover:

1. A static page cap: ``max_page_count`` = ``max_bytes`` minus the WAL allowance and the
   reserve file. ``journal_size_limit`` keeps the WAL near its allowance.
2. A dynamic page cap from ``statvfs``: the database may only grow into the free space
   that leaves the WAL room to grow. A ``max_bytes`` larger than the card is thus harmless:
   inserts hit the cap, the oldest readings are evicted, the WAL file keeps its room.
3. A small reserve file. When something else fills the disk, even a DELETE fails (the WAL
   and checkpoints need room); the reserve is released so eviction can run, and taken
   again once space is back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB


def _clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, value))


def file_size(path: Path) -> int:
    """Bytes of a file, 0 when it is not there."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def wal_path(path: Path) -> Path:
    return Path(str(path) + "-wal")


def reserve_path(path: Path) -> Path:
    return Path(str(path) + ".reserve")


def bytes_on_disk(path: Path) -> int:
    """The store's files as the disk sees them: database, WAL and reserve (any thread, no connection)."""
    return file_size(path) + file_size(wal_path(path)) + file_size(reserve_path(path))


class SpaceGuard:
    RESERVE_RETRY_SECONDS = 30.0

    def __init__(self, path: Path, max_bytes: int, page_size: int) -> None:
        self.path = path
        self.wal_path = wal_path(path)
        self.reserve_path = reserve_path(path)
        self.max_bytes = max_bytes
        self.page_size = page_size
        budget = min(max_bytes, self.disk_total())
        self.wal_allowance = _clamp(budget // 8, 64 * KiB, 4 * MiB)
        # the reserve covers what a checkpoint may still have to add to the file (pages that
        # so far live only in the WAL, at most about one autocheckpoint's worth)
        self.reserve_bytes = _clamp(self.wal_allowance // 2, 32 * KiB, 2 * MiB)
        self.static_pages = max(16, (max_bytes - self.wal_allowance - self.reserve_bytes) // page_size)
        self._cap = 0
        self._reserve_tried = 0.0

    # -- the disk ---------------------------------------------------------------------
    def disk_total(self) -> int:
        st = os.statvfs(self.path.parent)
        return st.f_blocks * st.f_frsize

    def disk_free(self) -> int:
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize

    def wal_bytes(self) -> int:
        return file_size(self.wal_path)

    @property
    def reserve_held(self) -> bool:
        return file_size(self.reserve_path) >= self.reserve_bytes

    # -- set-up -------------------------------------------------------------------------
    def configure(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA journal_size_limit={self.wal_allowance}")
        conn.execute(f"PRAGMA wal_autocheckpoint={max(4, self.wal_allowance // self.page_size // 2)}")
        self.take_reserve()
        self.update_cap(conn)

    def update_cap(self, conn: sqlite3.Connection) -> int:
        """Set ``max_page_count`` to what both ``max_bytes`` and the disk allow; return it."""
        # pages beyond the end of the file live only in the WAL so far: the checkpoint that
        # writes them needs disk, so the cap is counted from the file, not from page_count
        file_bytes = file_size(self.path)
        free = self.disk_free()
        wal_room = max(0, self.wal_allowance - self.wal_bytes())
        owed = 0 if self.reserve_held else self.reserve_bytes  # keep room to take it back
        disk_pages = (file_bytes + free - wal_room - owed) // self.page_size
        cap = max(16, min(self.static_pages, disk_pages))
        if cap != self._cap:
            self._cap = conn.execute(f"PRAGMA max_page_count={cap}").fetchone()[0]
        return int(self._cap)

    def at_static_cap(self) -> bool:
        """True when ``max_bytes`` (not the disk) is what stops the database growing."""
        return self._cap >= self.static_pages

    # -- the reserve file -----------------------------------------------------------------
    def take_reserve(self) -> bool:
        """Create the reserve file if the disk has room for it and for the WAL."""
        if self.reserve_held:
            return True
        now = time.monotonic()
        if now - self._reserve_tried < self.RESERVE_RETRY_SECONDS and self._reserve_tried:
            return False
        self._reserve_tried = now
        if self.disk_free() < self.reserve_bytes + self.wal_allowance:
            return False
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(self.reserve_path)
            log.debug("buffer: cannot take the reserve file: %s", exc)
            return False
        log.info("buffer: reserve file of %d KiB in place (%s)", self.reserve_bytes // KiB, self.reserve_path)
        return True

    def release_reserve(self) -> bool:
        """Give the reserve back to the disk so eviction can run. False if there was none."""
        if not self.reserve_path.exists():
            return False
        with contextlib.suppress(OSError):
            os.unlink(self.reserve_path)
        self._reserve_tried = time.monotonic()
        log.error("buffer: DISK FULL: released the %d KiB reserve file so the oldest readings can be"
                  " evicted", self.reserve_bytes // KiB)
        return True

    # -- accounting -------------------------------------------------------------------
    def used_bytes(self, conn: sqlite3.Connection) -> int:
        """Bytes the store occupies on disk: database file, WAL and reserve."""
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return int(pages * self.page_size + self.wal_bytes() + file_size(self.reserve_path))
