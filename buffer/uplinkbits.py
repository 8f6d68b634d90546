"""Each uplink owns one bit of a reading's ``pending`` mask, recorded in the ``uplinks`` table."""

from __future__ import annotations

import logging
import sqlite3

log = logging.getLogger("buffer.outbox")


def register_uplinks(c: sqlite3.Connection, names: list[str], keep: dict[str, int] | None = None
                     ) -> dict[str, int]:
    """Give each configured uplink its delivery bit (kept across restarts; ``keep`` asks for
    particular bits). An uplink no longer configured releases its readings to the others."""
    known = {name: bit for bit, name in c.execute("SELECT bit, name FROM uplinks")}
    gone = [n for n in known if n not in names]
    c.execute("BEGIN IMMEDIATE")
    for name in gone:
        bit = known.pop(name)
        log.warning("buffer: uplink '%s' is no longer configured; its undelivered readings"
                    " are released for the others", name)
        c.execute("UPDATE readings SET pending = pending & ? WHERE pending & ?", (~(1 << bit), 1 << bit))
        c.execute("UPDATE evictions SET pending = pending & ? WHERE pending & ?", (~(1 << bit), 1 << bit))
        c.execute("DELETE FROM uplinks WHERE bit = ?", (bit,))
    for name in names:
        if name not in known:
            used = set(known.values())
            bit = (keep or {}).get(name)
            if bit is None or bit in used:
                bit = next(b for b in range(62) if b not in used)
            c.execute("INSERT INTO uplinks(bit, name) VALUES (?, ?)", (bit, name))
            known[name] = bit
    if gone:
        c.execute("DELETE FROM readings WHERE pending = 0")
    c.execute("COMMIT")
    return {n: known[n] for n in names}
