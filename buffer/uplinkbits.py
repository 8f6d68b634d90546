"""Each uplink owns one bit of a reading's ``pending`` mask, recorded in the ``uplinks`` table.

An uplink leaves the buffer in one of two ways, never silently with readings waiting:
renamed (:func:`rename_uplink`, its delivery state kept under the new name) or dropped
(:func:`drop_uplink`, its undelivered readings recorded as evicted). Eviction notices of an
uplink that is no longer configured are parked (bit 62, which no uplink owns) and handed
back to it when an uplink of that name is configured again, so its platform still hears
of the gap.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from .eviction import pending_ranges

log = logging.getLogger("buffer.outbox")

PARKED = 1 << 62  # eviction notices waiting for an uplink that is not configured now
DROP_REASON = "uplink dropped from the config (edge-agent buffer drop-uplink)"


class UplinkStateError(Exception):
    """A rename or drop that the buffer's contents do not allow (the message says why)."""


def known_uplinks(c: sqlite3.Connection) -> dict[str, int]:
    return {name: bit for bit, name in c.execute("SELECT bit, name FROM uplinks")}


def waiting_for(c: sqlite3.Connection, bit: int) -> int:
    """Readings not yet delivered to the uplink with ``bit``."""
    return int(c.execute("SELECT count(*) FROM readings WHERE pending & ?", (1 << bit,)).fetchone()[0])


def stranded(c: sqlite3.Connection, names: list[str]) -> dict[str, int]:
    """Uplinks in the buffer but not in ``names`` that still have undelivered readings."""
    out = {}
    for name, bit in known_uplinks(c).items():
        if name not in names:
            n = waiting_for(c, bit)
            if n:
                out[name] = n
    return out


def register_uplinks(c: sqlite3.Connection, names: list[str], keep: dict[str, int] | None = None
                     ) -> dict[str, int]:
    """Give each configured uplink its delivery bit (kept across restarts; ``keep`` asks for
    particular bits). An uplink no longer configured must have nothing waiting (callers
    refuse to start otherwise: see :func:`stranded`); it is released and logged."""
    known = known_uplinks(c)
    gone = [n for n in known if n not in names]
    c.execute("BEGIN IMMEDIATE")
    for name in gone:
        bit = known.pop(name)
        log.warning("buffer: uplink '%s' is no longer configured; released (%d readings were waiting for it)",
                    name, waiting_for(c, bit))
        _release(c, name, bit)
    for name in names:
        if name not in known:
            used = set(known.values())
            wanted = (keep or {}).get(name)
            bit = wanted if wanted is not None and wanted not in used else next(b for b in range(62) if b not in used)
            c.execute("INSERT INTO uplinks(bit, name) VALUES (?, ?)", (bit, name))
            c.execute("UPDATE evictions SET pending = ? WHERE uplink = ? AND pending = ?", (1 << bit, name, PARKED))
            known[name] = bit
    if gone:
        c.execute("DELETE FROM readings WHERE pending = 0")
    c.execute("COMMIT")
    return {n: known[n] for n in names}


@dataclass(slots=True)
class UplinkChange:
    """A running outbox's uplinks becoming ``names`` (:meth:`buffer.outbox.Outbox.change_uplinks`)."""

    names: list[str]
    stranded: dict[str, int] = field(default_factory=dict)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def apply(self, c: sqlite3.Connection, current: dict[str, int]) -> dict[str, int] | None:
        """In the writer: refuse if an uplink left out has readings waiting (``stranded`` says
        which), else register ``names``; the new bits, or None when refused or failed."""
        try:
            self.stranded = stranded(c, self.names)
            return None if self.stranded else register_uplinks(c, self.names, keep=current)
        except (sqlite3.Error, OSError) as exc:
            if c.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("ROLLBACK")
            self.error = exc
            return None
        finally:
            self.done.set()


def _release(c: sqlite3.Connection, name: str, bit: int) -> None:
    """Inside a transaction: the uplink's bit leaves every reading; its notices are parked."""
    c.execute("UPDATE readings SET pending = pending & ? WHERE pending & ?", (~(1 << bit), 1 << bit))
    c.execute("UPDATE evictions SET pending = ? WHERE uplink = ? AND pending & ?", (PARKED, name, 1 << bit))
    c.execute("UPDATE evictions SET pending = pending & ? WHERE pending & ?", (~(1 << bit), 1 << bit))
    c.execute("DELETE FROM uplinks WHERE bit = ?", (bit,))


def rename_uplink(c: sqlite3.Connection, old: str, new: str) -> int:
    """Give uplink ``old`` the name ``new``, keeping its delivery state. Returns the readings
    waiting for it."""
    known = known_uplinks(c)
    if old not in known:
        raise UplinkStateError(f"the buffer has no uplink '{old}' (it has: {', '.join(sorted(known)) or 'none'})")
    if new in known:
        raise UplinkStateError(f"the buffer already has an uplink '{new}' ({waiting_for(c, known[new])} readings"
                               f" waiting for it); drop it first if it is not needed")
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE uplinks SET name = ? WHERE name = ?", (new, old))
    c.execute("UPDATE evictions SET uplink = ? WHERE uplink = ?", (new, old))
    if c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='daily'").fetchone():
        # the platform's delivered counts go with it (a day already counted under `new` keeps both)
        c.execute("UPDATE OR IGNORE daily SET uplink = ? WHERE uplink = ?", (new, old))
    c.execute("COMMIT")
    return waiting_for(c, known[old])


def drop_uplink(c: sqlite3.Connection, name: str) -> tuple[int, list[tuple[int, int, int]]]:
    """Remove uplink ``name``: its undelivered readings are recorded as an eviction of its
    ranges (announced if an uplink of that name comes back). Returns (readings, ranges)."""
    known = known_uplinks(c)
    if name not in known:
        raise UplinkStateError(f"the buffer has no uplink '{name}' (it has: {', '.join(sorted(known)) or 'none'})")
    bit = known[name]
    c.execute("BEGIN IMMEDIATE")
    try:
        rows = c.execute("SELECT seq, pending FROM readings WHERE pending & ? ORDER BY seq", (1 << bit,)).fetchall()
        ranges = pending_ranges(rows, bit)
        at = int(time.time() * 1000)
        c.executemany("INSERT INTO evictions(at, first_seq, last_seq, count, reason, pending, uplink)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?)",
                      [(at, a, b, n, DROP_REASON, 1 << bit, name) for a, b, n in ranges])
        if rows:
            c.execute("INSERT INTO counters(name, value) VALUES ('evicted', ?)"
                      " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (len(rows),))
        _release(c, name, bit)
        c.execute("DELETE FROM readings WHERE pending = 0")
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise
    return len(rows), ranges
