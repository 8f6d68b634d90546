"""``edge-agent status`` and ``report`` as text that fits 80 columns.

Sections other parts add to the status (``alarms``, ...) are printed by a renderer they
register in :data:`SECTION_RENDERERS`, or else as one compact JSON line per entry.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

WIDTH = 80
KNOWN = {"gateway", "pid", "now", "started", "timezone", "devices", "uplinks", "buffer", "clock", "completeness"}
# section name → renderer(section data, the gateway's time zone) → lines
SECTION_RENDERERS: dict[str, Callable[[Any, ZoneInfo], list[str]]] = {}


def _alarms(active: list[dict[str, Any]], tz: ZoneInfo) -> list[str]:
    """The raised alarms (the ``alarms`` section, present when rules are configured)."""
    lines = [f"ALARMS  {len(active)} raised" if active else "ALARMS  none raised"]
    for a in active:
        since = _local(a["since"], tz) if a.get("since") else "?"
        lines.append(fit(f"  {a['alarm']}: {a['device']}.{a['point']} = {a['value']} ({a['severity']},"
                         f" threshold {a['threshold']}) since {since}"))
    return lines


SECTION_RENDERERS["alarms"] = _alarms


def fit(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def wrapped(text: str, indent: int = 4, max_lines: int = 3) -> list[str]:
    """A long reason on lines of its own, indented, at most ``max_lines``."""
    lines = textwrap.wrap(text, WIDTH, initial_indent=" " * indent, subsequent_indent=" " * indent)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], fit(" ".join(lines[max_lines - 1:]))]
    return lines


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m ago"
    return f"{s // 86400}d ago"


def span(seconds: float) -> str:
    return ago(seconds).removesuffix(" ago")


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def pct(r: float | None) -> str:
    return "-" if r is None else f"{math.floor(r * 10_000) / 100:.2f}%"


def _local(ms: int, tz: ZoneInfo, fmt: str = "%H:%M:%S") -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime(fmt)


def _devices(st: dict[str, Any]) -> list[str]:
    lines = [f"{'DEVICE':<16} {'STATE':<9} {'LAST GOOD':<11} {'POLLS/1h':>8} {'ERR/1h':>6}  LAST ERROR"]
    for dev, d in st["devices"].items():
        err = d.get("last_error")
        why = f"{err['status']}: {err['reason']}" if err else "-"
        row = f"{dev:<16} {d['state']:<9} {ago(d['last_ok_age']):<11} {d['polls_1h']:>8} {d['errors_1h']:>6}  "
        if len(row) + len(why) <= WIDTH:
            lines.append(row + why)
        else:  # a long reason gets a line of its own
            lines += [row.rstrip(), *wrapped(why)]
        if d["state"] == "offline":
            lines.append(fit(f"    offline for {span(d['offline_for'])}; next try in {d['retry_in']:.0f}s"
                             f" (back-off {d['backoff']:.0f}s)"))
    return lines


def _uplinks(st: dict[str, Any], tz: ZoneInfo) -> list[str]:
    now = st["now"]
    lines = [f"{'UPLINK':<16} {'STATE':<17} {'WAITING':>8} {'OLDEST':>10} {'LAST ACK':>10} {'REFUSED':>8}"]
    for name, u in st["uplinks"].items():
        since = f" since {_local(u['since'], tz, '%H:%M')}" if u.get("since") else ""
        state = ("up" if u["connected"] else "DOWN") + since
        oldest = ago((now - u["oldest_waiting"]) / 1000) if u.get("oldest_waiting") else "-"
        ack = ago((now - u["last_ack"]) / 1000) if u.get("last_ack") else "never"
        lines.append(fit(f"{name:<16} {state:<17} {u.get('waiting', 0):>8} {oldest:>10} {ack:>10} "
                         f"{u['refused']:>8}"))
        if u.get("packets_waiting"):  # HJ 212: its readings left the buffer, folded into these packets
            lines.append(fit(f"    {u['packets_waiting']} HJ 212 packets stored, not yet answered by the platform"))
        if not u["connected"] and u.get("last_error"):
            lines += wrapped(u["last_error"])
    return lines


def _buffer_clock(st: dict[str, Any]) -> list[str]:
    b, c = st["buffer"], st["clock"]
    line = (f"BUFFER  {size(b['used_bytes'])} of {size(b['max_bytes'])} ({b['use'] * 100:.1f}%),"
            f" {b.get('readings', 0)} readings, last seq {b['last_seq']}")
    if b["evicted"] or b["dropped"]:
        line += f", {b['evicted']} evicted, {b['dropped']} dropped"
    sync = {True: "synchronised (NTP)", False: "not synchronised by NTP", None: "NTP state unknown"}[c["synchronized"]]
    clock = f"CLOCK   system clock {sync}"
    if c.get("max_error_us") is not None and c["synchronized"]:
        clock += f", max error {c['max_error_us'] / 1000:.1f} ms"
    if c.get("good") is True and not c["synchronized"]:
        clock += f"; known good: {c.get('reason', '')}"  # e.g. later than the last time seen
    out = [fit(line), fit(clock)]
    if c.get("good") is False:
        out += wrapped(f"readings are stamped from the boot clock and held until the clock is known good"
                       f" ({c.get('reason', 'unknown')})")
    return out


def completeness_lines(report: dict[str, Any] | None, title: str) -> list[str]:
    if not report:
        return [f"{title}: no completeness counts in this buffer yet"]
    lines = [fit(f"{title} {report['day']} ({report['timezone']}){'' if report['final'] else ', so far'}"),
             f"{'DEVICE':<16} {'EXPECTED':>8} {'RECEIVED':>8} {'VALID':>7} {'RATE':>7} {'EFFECT.':>7}  DELIVERED"]
    for dev, d in report["devices"].items():
        expected = "-" if d["expected"] is None else str(d["expected"])
        delivered = " ".join(f"{up}={n}" for up, n in d["delivered"].items()) or "-"
        lines.append(fit(f"{dev:<16} {expected:>8} {d['received']:>8} {d['valid']:>7} "
                         f"{pct(d['transmission_rate']):>7} {pct(d['effective_rate']):>7}  {delivered}"))
    return lines


def status_text(st: dict[str, Any]) -> str:
    tz = ZoneInfo(st["timezone"])
    head = (f"{st['gateway']}  pid {st['pid']}  up {span((st['now'] - st['started']) / 1000)}  "
            f"{_local(st['now'], tz, '%Y-%m-%d %H:%M:%S %Z')}")
    lines = [fit(head), "", *_devices(st), "", *_uplinks(st, tz), "", *_buffer_clock(st), ""]
    lines += completeness_lines(st.get("completeness"), "TODAY")
    for name, data in st.items():
        if name in KNOWN:
            continue
        render = SECTION_RENDERERS.get(name)
        lines += ["", *(render(data, tz) if render else _generic(name, data))]
    return "\n".join(lines)


def _generic(name: str, data: Any) -> list[str]:
    if isinstance(data, dict):
        return [name.upper()] + [fit(f"  {k}: {json.dumps(v, default=str)}") for k, v in data.items()]
    return [fit(f"{name.upper()}: {json.dumps(data, default=str)}")]
