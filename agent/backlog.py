"""``edge-agent buffer rename-uplink|drop-uplink`` (sub-commands of ``buffer``): what to do
with the backlog of an uplink that leaves the config. Both rewrite the buffer, so both
refuse while an agent holds the data directory."""

from __future__ import annotations

import argparse
import sqlite3
import sys

from buffer.lock import DataDirBusy, DataDirLock

EPILOG_RENAME = """examples:
  edge-agent buffer rename-uplink -c /etc/edge-agent/config.yaml central city-ops
Run it when an uplink was renamed in the config: the readings not yet delivered under the
old name are delivered under the new one, and nothing is sent twice. Stop the daemon first."""

EPILOG_DROP = """examples:
  edge-agent buffer drop-uplink -c /etc/edge-agent/config.yaml old-platform
Run it when an uplink was removed from the config for good: its undelivered readings are
recorded as evicted (listed by 'buffer stats'; announced with the usual 'evicted' status
event if an uplink of that name is configured again). An HJ 212 uplink's stored packets
are given up too (its file set aside as hj212-NAME.db.dropped). Stop the daemon first."""


def _open(args: argparse.Namespace) -> tuple[sqlite3.Connection, DataDirLock] | None:
    """The buffer's write connection with the data directory locked; None (reported) on error."""
    from buffer.database import connect
    from drivers.yamlsource import SourceError

    from .config import load_config

    try:
        loaded = load_config(args.config)
    except SourceError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return None
    db = loaded.data_dir / "outbox.db"
    if not db.exists():
        print(f"edge-agent buffer: no buffer at {db} (has the daemon run yet?)", file=sys.stderr)
        return None
    try:
        lock = DataDirLock(loaded.data_dir).acquire()
    except DataDirBusy as exc:
        print(f"edge-agent buffer: {exc}; stop it first (systemctl stop edge-agent)", file=sys.stderr)
        return None
    except OSError as exc:
        print(f"edge-agent buffer: cannot lock {loaded.data_dir}: {exc.strerror or exc}", file=sys.stderr)
        return None
    return connect(db), lock


def cmd_rename(args: argparse.Namespace) -> int:
    from buffer.uplinkbits import UplinkStateError, rename_uplink

    opened = _open(args)
    if opened is None:
        return 1
    conn, lock = opened
    from .uplinks.hj212.store import rename_store

    try:
        waiting = rename_uplink(conn, args.old, args.new)
        hj212 = rename_store(lock.data_dir, args.old, args.new)
    except UplinkStateError as exc:
        print(f"edge-agent buffer rename-uplink: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
        lock.release()
    print(f"uplink '{args.old}' is now '{args.new}'; {waiting} readings wait for it" + (f"; {hj212}" if hj212 else ""))
    return 0


def cmd_drop(args: argparse.Namespace) -> int:
    from buffer.uplinkbits import UplinkStateError, drop_uplink

    opened = _open(args)
    if opened is None:
        return 1
    conn, lock = opened
    from .uplinks.hj212.store import drop_store

    try:
        count, ranges = drop_uplink(conn, args.name)
        hj212 = drop_store(lock.data_dir, args.name)
    except UplinkStateError as exc:
        print(f"edge-agent buffer drop-uplink: {exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as exc:
        print(f"edge-agent buffer drop-uplink: the HJ 212 store of '{args.name}': {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
        lock.release()
    spans = ", ".join(f"{a}..{b}" for a, b, _ in ranges[:10]) + (" ..." if len(ranges) > 10 else "")
    print(f"uplink '{args.name}' dropped; {count} undelivered readings recorded as evicted"
          + (f" (seq {spans})" if ranges else "") + (f"; {hj212}" if hj212 else ""))
    return 0


def register(actions: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    r = actions.add_parser("rename-uplink", help="keep an uplink's backlog under its new name (daemon stopped)",
                           epilog=EPILOG_RENAME, formatter_class=fmt)
    r.add_argument("-c", "--config", required=True, metavar="FILE", help="config YAML (finds gateway.data_dir)")
    r.add_argument("old", metavar="OLD", help="the uplink's name in the buffer")
    r.add_argument("new", metavar="NEW", help="its name in the config now")
    r.set_defaults(func=cmd_rename)
    d = actions.add_parser("drop-uplink", help="give up an uplink's backlog, recorded as evicted (daemon stopped)",
                           epilog=EPILOG_DROP, formatter_class=fmt)
    d.add_argument("-c", "--config", required=True, metavar="FILE", help="config YAML (finds gateway.data_dir)")
    d.add_argument("name", metavar="NAME", help="the uplink to drop")
    d.set_defaults(func=cmd_drop)
