"""``edge-agent buffer stats|export``: look into the store-and-forward buffer, by hand.

Both open the buffer read-only, so they are safe while the daemon runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from buffer.inspection import BufferStats, Exporter, ExportFilter, read_stats
from buffer.ranges import to_ranges

from ..uplinks.payload import quality

EPILOG_STATS = """examples:
  edge-agent buffer stats -c /etc/edge-agent/config.yaml
  edge-agent buffer stats -c /etc/edge-agent/config.yaml --json
Shows, for each uplink, how many readings wait for it and the oldest one with its age;
the bytes used against buffer.max_bytes; every eviction (the seq ranges a platform will
never get, and why); the schema version. Read-only: safe while the daemon runs."""

EPILOG_EXPORT = """examples:
  edge-agent buffer export -c /etc/edge-agent/config.yaml --since 2024-05-01T08:00 --until 2024-05-01T12:00 -o site.csv
  edge-agent buffer export -c config.yaml --since 1714550400000 --format jsonl --uplink city-ops > backlog.jsonl
  edge-agent buffer export --db /var/lib/edge-agent/outbox.db.corrupt-20240501T101500 -o rescued.csv
Times are ISO 8601 (a time without a zone is the gateway's local time) or epoch
milliseconds; --since is inclusive, --until exclusive. Only readings still in the buffer
(not yet delivered to every platform) can be exported. --db reads any buffer file, such
as one moved aside as corrupt. A progress bar is drawn on stderr when it is a terminal.
Read-only: safe while the daemon runs."""


# -- locating the buffer -------------------------------------------------------------------

def _locate(args: argparse.Namespace) -> tuple[Path, int | None, list[str]] | None:
    """(database path, max_bytes, configured uplinks) from --db or the config; None on error."""
    if args.db:
        return Path(args.db), None, []
    from drivers.yamlsource import SourceError

    from ..config import load_config

    try:
        loaded = load_config(args.config)
    except SourceError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        print(f"edge-agent buffer: {args.config} has problems; --db FILE reads a buffer without it",
              file=sys.stderr)
        return None
    cfg = loaded.config
    return loaded.data_dir / "outbox.db", int(cfg.buffer.max_bytes), list(cfg.uplinks)


# -- formatting --------------------------------------------------------------------------

def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def human_age(seconds: float) -> str:
    if seconds < 0:
        return "in the future (clock?)"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_stats(st: BufferStats, max_bytes: int | None, configured: list[str], now_ms: int,
                 hj212_unanswered: dict[str, int] | None = None) -> str:
    out = [f"buffer {st.path}", f"  schema version {st.schema_version}"
           + ("" if st.schema_version == st.schema_latest else f" (this edge-agent migrates to {st.schema_latest})")]
    used = f"  size: {human_bytes(st.used_bytes)} used"
    if max_bytes:
        used += f" of max_bytes {human_bytes(max_bytes)} ({100 * st.used_bytes / max_bytes:.1f} %)"
    used += (f"; database {human_bytes(st.file_bytes)} ({human_bytes(st.free_pages_bytes)} free inside),"
             f" WAL {human_bytes(st.wal_bytes)}, reserve {human_bytes(st.reserve_bytes)}")
    out.append(used)
    span = f" (seq {st.first_seq}..{st.last_seq})" if st.first_seq is not None else ""
    out.append(f"  last committed seq: {st.last_seq}; readings buffered: {st.readings}{span}")
    out.append("")
    names = [u.name for u in st.uplinks]
    width = max([len("uplink"), *(len(n) for n in names)])
    out.append(f"  {'uplink':<{width}}  {'waiting':>9}  oldest undelivered")
    for u in st.uplinks:
        if u.oldest_seq is None or u.oldest_ts is None:
            oldest = "-  (up to date)"
        elif u.oldest_ts < 0:
            oldest = f"seq {u.oldest_seq}, held until the clock is known good"
        else:
            oldest = f"seq {u.oldest_seq} at {iso_ms(u.oldest_ts)} ({human_age((now_ms - u.oldest_ts) / 1000)} ago)"
        note = "" if not configured or u.name in configured else "  [not in the config]"
        out.append(f"  {u.name:<{width}}  {u.pending:>9}  {oldest}{note}")
        packets = (hj212_unanswered or {}).get(u.name)
        if packets:  # HJ 212: readings leave the buffer once folded; the packets wait in the uplink's store
            out.append(f"  {'':<{width}}  {packets:>9}  HJ 212 packets stored, not yet answered by the platform")
    for name in configured:
        if name not in names:
            out.append(f"  {name:<{width}}  {'-':>9}  (not yet registered: the daemon adds it at start)")
    if st.orphans:
        out.append(f"  ({st.orphans} readings wait only for uplinks no longer in the buffer)")
    if st.held:
        out.append(f"  ({st.held} readings were taken before the clock was known good: they keep their boot-clock"
                   " time and go out when the daemon sees a good clock)")
    out.append("")
    c = st.counters
    out.append(f"  evictions: {len(st.evictions)} ranges kept; readings evicted {c.get('evicted', 0)},"
               f" dropped before commit (disk refused) {c.get('dropped', 0)}")
    for e in st.evictions[-50:]:
        who = e.uplink or "every uplink"
        out.append(f"    {iso_ms(e.at)}  {who}: seq {e.first_seq}..{e.last_seq} ({e.count} readings)  {e.reason}")
    if len(st.evictions) > 50:
        out.append(f"    ... and {len(st.evictions) - 50} older ranges (--json lists all)")
    if st.reset:
        r = st.reset
        out.append("")
        out.append(f"  this buffer was started fresh at {iso_ms(int(r['at']))}: the previous file was corrupt"
                   f" ({r.get('error')}); moved aside to {r.get('aside')}")
    return "\n".join(out)


# -- times ------------------------------------------------------------------------------

def parse_time(text: str) -> int:
    """ISO 8601 (naive: local time) or epoch milliseconds, as epoch milliseconds."""
    t = text.strip()
    if t.lstrip("-").isdigit():
        value = int(t)
        if 0 <= value < 100_000_000_000:
            raise ValueError(f"'{text}' looks like epoch seconds; give epoch milliseconds ({value * 1000})")
        return value
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"'{text}' is neither ISO 8601 (2024-05-01T08:00:00+08:00) nor epoch milliseconds"
                         ) from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # the gateway's local time
    return int(dt.timestamp() * 1000)


# -- progress ---------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on a terminal; nothing at all elsewhere."""

    def __init__(self, stream: IO[str], first: int, last: int, delay: float = 0.3) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.first, self.last = first, last
        self.rows = 0
        self.started = time.monotonic()
        self.delay = delay
        self.drawn = 0.0

    def update(self, seq: int, rows: int) -> None:
        self.rows = rows
        now = time.monotonic()
        if not self.enabled or now - self.started < self.delay or now - self.drawn < 0.1:
            return
        self.drawn = now
        span = max(1, self.last - self.first)
        frac = min(1.0, max(0.0, (seq - self.first) / span))
        bar = "#" * int(frac * 30)
        rate = rows / max(1e-6, now - self.started)
        self.stream.write(f"\rexport {frac * 100:5.1f}% [{bar:<30}] {rows:,} readings, {rate:,.0f}/s ")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


# -- writers ----------------------------------------------------------------------------

def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _csv_writer(out: IO[str], keys: list[str]) -> Callable[[Any], None]:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["seq", "time", "ts", "device", "status", *keys, "errors", "flags"])

    def write(r: Any) -> None:
        values = json.loads(r.vals)
        w.writerow([r.seq, iso_ms(r.ts), r.ts, r.device, r.status, *(_cell(values.get(k)) for k in keys),
                    r.errors or "", r.flags or ""])
    return write


def _jsonl_writer(out: IO[str]) -> Callable[[Any], None]:
    def write(r: Any) -> None:
        out.write(f'{{"seq":{r.seq},"ts":{r.ts},"time":"{iso_ms(r.ts)}","device":{json.dumps(r.device)},'
                  f'"status":{json.dumps(r.status)},"values":{r.vals}{quality(r)}}}\n')
    return write


# -- the commands -----------------------------------------------------------------------

def cmd_stats(args: argparse.Namespace) -> int:
    found = _locate(args)
    if found is None:
        return 1
    path, max_bytes, configured = found
    try:
        st = read_stats(path)
    except (FileNotFoundError, OSError) as exc:
        print(f"edge-agent buffer: {exc} (has the daemon run yet?)", file=sys.stderr)
        return 1
    except Exception as exc:  # sqlite3.DatabaseError and friends: say what, not a traceback
        print(f"edge-agent buffer: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    from ..uplinks.hj212.store import count_stored_unanswered

    packets = {u.name: n for u in st.uplinks if (n := count_stored_unanswered(path.parent, u.name)) is not None}
    if args.json:
        d = st.as_dict()
        d["max_bytes"] = max_bytes
        d["hj212_unanswered"] = packets
        print(json.dumps(d, indent=2))
    else:
        print(render_stats(st, max_bytes, configured, int(time.time() * 1000), packets))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        print(f"edge-agent buffer export: {exc}", file=sys.stderr)
        return 2
    if since is not None and until is not None and until <= since:
        print("edge-agent buffer export: --until must be after --since", file=sys.stderr)
        return 2
    found = _locate(args)
    if found is None:
        return 1
    path = found[0]
    try:
        exporter = Exporter(path, ExportFilter(since, until, tuple(args.device or ()), args.uplink))
    except (LookupError, OSError) as exc:
        print(f"edge-agent buffer export: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"edge-agent buffer export: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    out: IO[str] = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout  # noqa: SIM115
    progress = Progress(sys.stderr, exporter.first_seq, exporter.last_seq)
    rows = 0
    first = last = None
    try:
        write = _csv_writer(out, exporter.value_keys()) if args.format == "csv" else _jsonl_writer(out)
        for chunk in exporter.chunks():
            for r in chunk:
                write(r)
            rows += len(chunk)
            first = chunk[0].seq if first is None else first
            last = chunk[-1].seq
            progress.update(last, rows)
        out.flush()
    except BrokenPipeError:  # `| head`: fine
        return 0
    except sqlite3.DatabaseError as exc:  # a damaged file: keep what could be read, say where it stopped
        out.flush()
        print(f"\nedge-agent buffer export: stopped after {rows} readings (last seq {last}): {exc}", file=sys.stderr)
        return 1
    finally:
        progress.done()
        exporter.close()
        if args.output:
            out.close()
    where = args.output or "stdout"
    span = f" (seq {first}..{last})" if rows else ""
    print(f"exported {rows} readings{span} to {where}", file=sys.stderr)
    if exporter.damaged:
        bad = to_ranges(s for a, b in exporter.damaged for s in range(a, b + 1))
        print(f"edge-agent buffer export: the file is damaged; could not read seq "
              f"{', '.join(f'{a}..{b}' for a, b in bad[:20])}{' ...' if len(bad) > 20 else ''}", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("buffer", help="inspect the buffer, export readings (safe while running); rename or drop"
                       " an uplink's backlog",
                       description="Look into the store-and-forward buffer (stats, export: read-only) and decide"
                       " what happens to the backlog of an uplink removed from the config"
                       " (rename-uplink, drop-uplink: with the daemon stopped).")
    actions = p.add_subparsers(dest="buffer_command", required=True, metavar="ACTION")

    def source(q: argparse.ArgumentParser) -> None:
        g = q.add_mutually_exclusive_group(required=True)
        g.add_argument("-c", "--config", metavar="FILE", help="config YAML (finds gateway.data_dir)")
        g.add_argument("--db", metavar="FILE", help="a buffer file, e.g. one moved aside as corrupt")

    s = actions.add_parser("stats", help="depth per uplink, oldest reading, bytes, evictions, schema",
                           epilog=EPILOG_STATS, formatter_class=fmt)
    source(s)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_stats)

    e = actions.add_parser("export", help="write buffered readings to CSV or JSON lines",
                           epilog=EPILOG_EXPORT, formatter_class=fmt)
    source(e)
    e.add_argument("--since", metavar="TIME", help="from this time on (ISO 8601 or epoch ms)")
    e.add_argument("--until", metavar="TIME", help="before this time (ISO 8601 or epoch ms)")
    e.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="default: csv")
    e.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    e.add_argument("--device", action="append", metavar="ID", help="only this device (repeatable)")
    e.add_argument("--uplink", metavar="NAME", help="only readings this uplink has not received")
    e.set_defaults(func=cmd_export)

    from ..backlog import register as register_uplink_state

    register_uplink_state(actions)
