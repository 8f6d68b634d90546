"""The gateway-wide ``seq`` high-water mark, kept beside the database.

``seq`` must never be reused, even when a corrupt database is moved aside and a fresh one
started. Blocks of seqs are reserved in a small file (written atomically, fsynced, the
directory too) before they are handed out. While the database is healthy it is the
authority (seq continues right after its highest committed one, no gap); the reservation
only matters for a fresh database, which then starts above anything ever handed out.
One fsync per ``BLOCK`` readings: nothing an SD card notices.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

BLOCK = 100_000
WIDTH = 20  # digits, fixed so the file is rewritten in place


class SeqReserve:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.limit = self._read()

    def _read(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def ensure(self, next_seq: int, count: int) -> None:
        """Make sure seqs up to ``next_seq + count`` are reserved on disk."""
        if next_seq + count <= self.limit:
            return
        new_limit = next_seq + count + BLOCK
        text = f"{new_limit:>{WIDTH}}\n".encode()
        try:
            # in place: a fixed-width overwrite inside one sector needs no new disk block,
            # so it works on a full disk
            fd = os.open(self.path, os.O_WRONLY)
        except FileNotFoundError:
            self._create(text)
        else:
            try:
                if os.fstat(fd).st_size != len(text):
                    raise OSError("unexpected seq file size")
                os.pwrite(fd, text, 0)
                os.fsync(fd)
            except OSError:
                os.close(fd)
                self._create(text)
            else:
                os.close(fd)
        self.limit = new_limit

    def _create(self, text: bytes) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
