"""``edge-agent status`` (the running daemon's live health) and ``report`` (a day's completeness).

``status`` asks the daemon over its control socket (``data_dir/agent.sock``); ``report``
reads the completeness counts from the buffer file itself, read-only, so it works with the
daemon stopped and beside a running one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from typing import TYPE_CHECKING, Any

from drivers.yamlsource import SourceError

if TYPE_CHECKING:
    from agent.config import LoadedConfig

EPILOG_STATUS = """examples:
  edge-agent status -c /etc/edge-agent/config.yaml
  edge-agent status -c /etc/edge-agent/config.yaml --watch
  edge-agent status -c /etc/edge-agent/config.yaml --json | jq '.devices'
Per device: ok, degraded (failing, or some points without a valid value) or offline
(no answer; polled again after a back-off), the last good reading's age, polls and
errors in the last hour, the last error and its reason. Per uplink: connected since
when, readings waiting and the oldest one's age, the last acknowledgement, refused
publishes. The buffer, the system clock, and today's completeness (gateway.timezone).
Exit 1 when no daemon runs on the config's data_dir."""

EPILOG_REPORT = """examples:
  edge-agent report -c /etc/edge-agent/config.yaml
  edge-agent report -c /etc/edge-agent/config.yaml --day 2026-11-27 --json
A local day's completeness per device, as the platforms count it: readings expected
(one per interval from the device's first poll, or from midnight), received (polled,
failed polls included), valid (status ok), delivered per uplink; the transmission rate
(received / expected) and the effective rate (valid / expected). Read from the buffer
file: works with the daemon stopped."""


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("status", help="the running daemon's live health: devices, uplinks, buffer, clock",
                       epilog=EPILOG_STATUS, formatter_class=fmt)
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="config YAML")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.add_argument("--watch", nargs="?", const=2.0, type=float, metavar="SECONDS",
                   help="refresh in place every SECONDS (default 2) until Ctrl-C")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("report", help="a local day's completeness per device (works without the daemon)",
                       epilog=EPILOG_REPORT, formatter_class=fmt)
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="config YAML")
    p.add_argument("--day", metavar="YYYY-MM-DD", help="the local day (default: today)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_report)


def _load(path: str) -> Any:
    from agent.config import load_config

    try:
        return load_config(path)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def cmd_status(args: argparse.Namespace) -> int:
    from agent.health.render import status_text
    from agent.ipc import DaemonNotRunning, RequestFailed, ask

    loaded = _load(args.config)
    if loaded is None:
        return 1
    while True:
        try:
            answer = ask(loaded.data_dir, "status")
        except DaemonNotRunning as exc:
            print(f"edge-agent status: {exc}; start it with 'systemctl start edge-agent'"
                  f" or 'edge-agent run -c {args.config}'", file=sys.stderr)
            return 1
        except RequestFailed as exc:
            print(f"edge-agent status: the daemon could not answer: {exc}", file=sys.stderr)
            return 1
        answer.pop("ok", None)
        text = json.dumps(answer, indent=2) if args.json else status_text(answer)
        if not args.watch:
            print(text)
            return 0
        sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")  # home, clear: refresh in place
        sys.stdout.flush()
        time.sleep(max(0.5, args.watch))


def _carriage(loaded: LoadedConfig) -> dict[str, frozenset[str] | None]:
    """Each uplink's devices (None: every device), as the running agent's uplinks count them."""
    from agent.config import Hj212Uplink
    from agent.uplinks.hj212.aggregate import carried_devices

    points = {dev: list(profile.points) for dev, profile in loaded.profiles.items()}
    return {name: carried_devices(up, points) if isinstance(up, Hj212Uplink) else None
            for name, up in loaded.config.uplinks.items()}


def cmd_report(args: argparse.Namespace) -> int:
    from agent.health.completeness import day_report, has_counts_table
    from agent.health.days import LocalDays
    from agent.health.render import completeness_lines
    from buffer.database import connect_readonly

    loaded = _load(args.config)
    if loaded is None:
        return 1
    cfg = loaded.config
    days = LocalDays(cfg.gateway.timezone)
    now_ms = int(time.time() * 1000)
    try:
        day = date.fromisoformat(args.day) if args.day else days.today(now_ms)
    except ValueError:
        print(f"edge-agent report: --day {args.day}: not a date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    path = loaded.data_dir / "outbox.db"
    try:
        conn = connect_readonly(path)
    except FileNotFoundError:
        print(f"edge-agent report: no buffer at {path}: the agent has not run with this data_dir",
              file=sys.stderr)
        return 1
    try:
        if not has_counts_table(conn):
            print(f"edge-agent report: {path} has no completeness counts (written by an older"
                  " edge-agent; the next run adds them)", file=sys.stderr)
            return 1
        intervals = {dev: d.interval for dev, d in cfg.devices.items() if d.enabled}
        report = day_report(conn, days, day, intervals, _carriage(loaded), now_ms)
    finally:
        conn.close()
    if args.json:
        print(json.dumps({"gateway": cfg.gateway.id, **report}, indent=2))
    else:
        print("\n".join(completeness_lines(report, f"{cfg.gateway.id}: completeness of")))
    return 0
