"""The gateway-wide ``seq`` high-water mark, kept beside the database.

``seq`` must never be reused, even when a corrupt database is moved aside and a fresh one
started. Blocks of seqs are reserved in a small file (written atomically, fsynced) before
they are handed out, so a restart continues above anything that may have been used.
"""

from __future__ import annotations

import os
from pathlib import Path

BLOCK = 100_000


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
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(f"{new_limit}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.limit = new_limit
