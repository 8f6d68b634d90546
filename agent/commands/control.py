"""``edge-agent control log|schedule|set``: what was written to devices, what the schedules
will do, and a technician's write.

``log`` and ``schedule`` read the config and the control database only (read-only), so they
work with no daemon running and beside a running one. ``set`` asks the running daemon
(control socket, operation ``control.set``) and writes directly on the bus when none runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
import textwrap
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from drivers.yamlsource import SourceError

if TYPE_CHECKING:
    from ..config import LoadedConfig

EPILOG_LOG = """examples:
  edge-agent control log -c /etc/edge-agent/config.yaml
  edge-agent control log -c /etc/edge-agent/config.yaml --device lamp-1 --limit 20
Every command, schedule step and technician write, oldest first: local time (gateway.timezone),
device, who (uplink, schedule or technician) and the command id, the result (ok, refused,
expired, failed), the values asked and read back, and the reason. Read-only."""

EPILOG_SCHEDULE = """examples:
  edge-agent control schedule -c /etc/edge-agent/config.yaml --days 3
  edge-agent control schedule -c config.yaml --from 2026-06-21T12:00 --days 1
The coming steps of every schedule with their local times (sun times from the schedule's
location), the values in force now, and the steps that do not happen on a day (polar
day or night). --from takes an ISO time (no zone: the schedule's local time)."""

EPILOG_SET = """examples:
  edge-agent control set -c /etc/edge-agent/config.yaml lamp-1 dim_level=60 --dry-run
  edge-agent control set -c config.yaml lamp-1 lamp_on=false dim_level=0 --dry-run
Checks the values as a platform command is checked (the device's control.allow, the
point's min/max or values, exact encoding, min_toggle), writes them and prints the values
read back. With an agent running the write goes through it (between its polls, one owner
per port); without one, directly on the bus. Either way it is in `control log`.
--dry-run prints the Modbus register writes the values imply, without touching the bus.
Values are JSON: true/false, numbers."""


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("control", help="the control audit log and the coming schedule steps")
    actions = p.add_subparsers(dest="control_command", required=True, metavar="log|schedule|set")
    q = actions.add_parser("log", help="what was written to devices, by whom, with what result",
                           epilog=EPILOG_LOG, formatter_class=fmt)
    q.add_argument("-c", "--config", required=True, metavar="FILE", help="config YAML")
    q.add_argument("--device", metavar="ID", help="only this device")
    q.add_argument("--limit", type=int, default=50, metavar="N", help="the newest N entries (default 50)")
    q.set_defaults(func=cmd_log)
    q = actions.add_parser("schedule", help="the coming steps of the lighting schedules, in local time",
                           epilog=EPILOG_SCHEDULE, formatter_class=fmt)
    q.add_argument("-c", "--config", required=True, metavar="FILE", help="config YAML")
    q.add_argument("--days", type=int, default=3, metavar="N", help="how many local days (default 3)")
    q.add_argument("--from", dest="start", metavar="TIME", help="start here instead of now")
    q.set_defaults(func=cmd_schedule)
    q = actions.add_parser("set", help="a technician write: checked, written, read back, audited",
                           epilog=EPILOG_SET, formatter_class=fmt)
    q.add_argument("-c", "--config", required=True, metavar="FILE", help="config YAML")
    q.add_argument("device", metavar="DEVICE", help="device id from the config")
    q.add_argument("assignments", nargs="+", metavar="POINT=VALUE", help="e.g. dim_level=60 lamp_on=true")
    q.add_argument("--dry-run", action="store_true", help="show the register writes, write nothing")
    q.set_defaults(func=cmd_set)


def _load(path: str):  # type: ignore[no-untyped-def]
    from ..config import load_config

    try:
        return load_config(path)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _values(values: dict[str, object] | None) -> str:
    if not values:
        return "-"
    return " ".join(f"{k}={json.dumps(v)}" for k, v in values.items())


def cmd_log(args: argparse.Namespace) -> int:
    from agent.control.audit import db_path, read_entries

    loaded = _load(args.config)
    if loaded is None:
        return 1
    path = db_path(loaded.config.gateway.data_dir, loaded.file)
    if not path.exists():
        print(f"no control log yet ({path}): nothing has been written to a device")
        return 0
    try:
        entries = read_entries(path, args.device, max(1, args.limit))
    except sqlite3.Error as exc:
        print(f"edge-agent control log: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    tz = ZoneInfo(loaded.config.gateway.timezone)
    print(f"{'time':<19} {'device':<12} {'by':<37} result")
    for e in entries:
        when = datetime.fromtimestamp(e.ts / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")
        who = f"{e.kind} {e.source}" + (f" {e.ref}" if e.ref else "")
        print(f"{when:<19} {e.device:<12} {who[:37]:<37} {e.result}")
        print(textwrap.fill(f"asked {_values(e.asked)}; read back {_values(e.read_back)}", 80,
                            initial_indent="    ", subsequent_indent="      "))
        if e.reason:
            print(textwrap.fill(e.reason, 80, initial_indent="    ", subsequent_indent="      "))
    if not entries:
        print("(no entries" + (f" for {args.device})" if args.device else ")"))
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from agent.control.schedule import engines

    logging.getLogger("agent.control.schedule").setLevel(logging.ERROR)  # skipped steps are printed below
    loaded = _load(args.config)
    if loaded is None:
        return 1
    cfg = loaded.config
    if not cfg.schedules:
        print(f"{loaded.file}: no schedules")
        return 0
    for name, engine in engines(cfg.schedules, cfg.gateway.timezone).items():
        try:
            now = engine.now() if args.start is None else _start(args.start, engine.tz)
        except ValueError:
            print(f"edge-agent control schedule: --from '{args.start}' is not an ISO time", file=sys.stderr)
            return 2
        sched = engine.schedule
        where = f" at {sched.location.lat:g},{sched.location.lon:g}" if sched.location else ""
        print(f"schedule {name}: {', '.join(sched.devices)}{where} ({engine.tz.key})")
        in_force = {p: v for p, (v, _) in engine.in_force(now).items()}
        print(f"  in force at {now:%Y-%m-%d %H:%M}: {_values(dict(in_force))}")
        steps, skipped = engine.upcoming(max(1, args.days), now)
        for occ in steps:
            print(f"  {occ.at:%a %Y-%m-%d %H:%M:%S}  {occ.step.at:<14} {_values(dict(occ.values))}")
        for s in skipped:
            print(textwrap.fill(f"skipped on {s.day}: {s.step.at} ({s.reason})", 80,
                                initial_indent="  ", subsequent_indent="    "))
    return 0


def _start(text: str, tz: ZoneInfo) -> datetime:
    t = datetime.fromisoformat(text)
    return t.replace(tzinfo=tz) if t.tzinfo is None else t.astimezone(tz)


def _parse_assignments(texts: list[str]) -> dict[str, object] | None:
    values: dict[str, object] = {}
    for text in texts:
        point, sep, raw = text.partition("=")
        if not sep or not point:
            print(f"edge-agent control set: {text}: expected POINT=VALUE", file=sys.stderr)
            return None
        try:
            values[point] = json.loads(raw)
        except ValueError:
            values[point] = raw
    return values


def cmd_set(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return 1
    device = loaded.config.devices.get(args.device)
    if device is None:
        print(f"edge-agent control set: unknown device '{args.device}'", file=sys.stderr)
        return 1
    values = _parse_assignments(args.assignments)
    if values is None:
        return 2
    if args.dry_run:
        return _dry_run(loaded, args.device, values)
    from ..ipc import DaemonNotRunning, RequestFailed, ask

    try:
        answer = ask(loaded.data_dir, "control.set", timeout=30.0, device=args.device, values=values,
                     user=_login())
        how = "through the running agent"
    except DaemonNotRunning:
        answer = asyncio.run(_direct_set(loaded, args.device, values))
        how = f"no agent running: directly on bus {device.bus}"
    except RequestFailed as exc:
        print(f"edge-agent control set: the agent refused the request: {exc}", file=sys.stderr)
        return 1
    status, reason, back = answer.get("status"), answer.get("reason") or "", answer.get("values") or {}
    if status == "ok":
        print(f"{args.device}: ok, {how}; read back {_values(back)}")
        return 0
    print(f"{args.device}: {status}: {reason} ({how}; nothing written)" if status == "refused"
          else f"{args.device}: {status}: {reason} ({how})", file=sys.stderr)
    return 1


def _login() -> str:
    """Who runs ``control set``, for the audit log."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "technician"


async def _direct_set(loaded: LoadedConfig, device: str, values: dict[str, object]) -> dict[str, object]:
    """No daemon: the same checks and audit, on a bus opened for this one write."""
    from ..control.audit import DB_NAME, AuditLog
    from ..control.service import ControlService
    from ..wiring import build_devices

    buses, devices = build_devices(loaded, only=device)
    audit = AuditLog(loaded.data_dir / DB_NAME)
    try:
        service = ControlService(loaded, devices, audit)
        return (await service.technician(device, values, _login())).answer()  # type: ignore[arg-type]
    finally:
        audit.close()
        for bus in buses.values():
            await bus.close()


def _dry_run(loaded: LoadedConfig, device_id: str, values: dict[str, object]) -> int:
    from drivers.errors import WriteRefused
    from drivers.protocols import plan_write

    device = loaded.config.devices[device_id]
    allow = device.control.allow if device.control else []
    problems = 0
    for point, value in values.items():
        text = f"{point}={json.dumps(value)}"
        if point not in allow:
            print(f"  {text}: refused: '{point}' is not allowed on {device_id}"
                  f" (control.allow: {', '.join(allow) or 'nothing'})", file=sys.stderr)
        else:
            try:
                write = plan_write(loaded.profiles[device_id], point, value)
            except WriteRefused as exc:
                print(f"  {text}: refused: {exc}", file=sys.stderr)
            else:
                print(f"  {point}={json.dumps(write.value)}: {write.describe(unit=device.unit)}")
                continue
        problems += 1
    print(f"dry run on {device_id} (bus {device.bus}): nothing written", file=sys.stderr)
    return 1 if problems else 0
