"""``edge-agent alarms -c FILE``: the alarm rules, their current state and the last events.

Reads the config and the buffer (read-only), so it works with no daemon running; when the
daemon answers on its control socket, the state shown is its live one (``pending`` included).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from drivers.yamlsource import SourceError

from ..units import format_duration

EPILOG = """examples:
  edge-agent alarms -c /etc/edge-agent/config.yaml
  edge-agent alarms -c /etc/edge-agent/config.yaml --json
Each rule from the config's 'alarms:' with its state (ok, pending, raised) and since when,
then the last alarm events (raised, cleared) with their seq, local time, value and threshold.
Works without the daemon: the raised set and the events are read from the buffer. Exit 0."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alarms", help="alarm rules, their state and the last events",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="config YAML")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="the newest N events (default 50)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_alarms)


def _live_states(data_dir: Any) -> dict[str, dict[str, Any]] | None:
    from ..ipc import DaemonNotRunning, RequestFailed, ask

    try:
        answer = ask(data_dir, "alarms", timeout=5)
    except (DaemonNotRunning, RequestFailed, OSError):
        return None
    return {a["alarm"]: a for a in answer.get("alarms", [])}


def cmd_alarms(args: argparse.Namespace) -> int:
    from ..alarms.store import read_store
    from ..config import load_config

    try:
        loaded = load_config(args.config)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    cfg = loaded.config
    saved, events = read_store(loaded.data_dir / "outbox.db", max(1, args.limit))
    live = _live_states(loaded.data_dir)
    rules = []
    for name, rule in cfg.alarms.items():
        state: dict[str, Any] = {"state": "ok", "since": None, "value": None}
        if live is not None and name in live:
            state = {k: live[name].get(k) for k in ("state", "since", "value")}
        elif name in saved:
            state = {"state": "raised", "since": saved[name].get("since"), "value": saved[name].get("value")}
        rules.append({"alarm": name, "device": rule.device, "point": rule.point, "condition": rule.describe(),
                      "severity": rule.severity, "fast_poll": rule.fast_poll, **state})
    if args.json:
        print(json.dumps({"source": "daemon" if live is not None else "buffer", "alarms": rules,
                          "events": events}, indent=2))
        return 0
    tz = ZoneInfo(cfg.gateway.timezone)
    _print_rules(rules, tz, live is not None)
    _print_events(events, tz, args.limit)
    return 0


def _local(ms: int | None, tz: ZoneInfo) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")


def _print_rules(rules: list[dict[str, Any]], tz: ZoneInfo, live: bool) -> None:
    source = "live, from the running daemon" if live else "from the buffer: no daemon answers"
    active = sum(1 for r in rules if r["state"] == "raised")
    print(f"Alarms: {len(rules)} rule(s), {active} raised ({source})")
    if not rules:
        print("  (no 'alarms:' in the config)")
    for r in rules:
        fast = f", fast_poll {format_duration(r['fast_poll'])}" if r["fast_poll"] else ""
        state = r["state"].upper()
        if r["state"] != "ok":
            state += f" since {_local(r['since'], tz)}" + (f" (value {r['value']})" if r["value"] is not None else "")
        print(f"  {r['alarm']:<20} {r['severity']:<8} {state}")
        print(f"  {'':<20} {r['condition']}{fast}")


def _print_events(events: list[dict[str, Any]], tz: ZoneInfo, limit: int) -> None:
    """Oldest first, in the gateway's local time."""
    print(f"\nLast {len(events)} alarm event(s), at most {limit}:" if events else "\nNo alarm events in the buffer.")
    for e in events:
        print(f"  {_local(e['ts'], tz)}  seq {e['seq']:<8} {e.get('alarm', '?'):<20} {e.get('state', '?'):<8}"
              f" {e.get('severity', '?'):<8} {e['device']}.{e.get('point', '?')} = {e.get('value')}"
              f" (threshold {e.get('threshold')})")
