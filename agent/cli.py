"""The ``edge-agent`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time

from drivers.errors import DriverError
from drivers.yamlsource import SourceError

from . import __version__
from .argtypes import host_and_port
from .startsignals import StartSignals, StopBeforeStart

EPILOG_RUN = """examples:
  edge-agent run -c /etc/edge-agent/config.yaml
The agent refuses to start on an invalid config and prints every problem as
FILE:LINE: dotted.path: message (the same as 'edge-agent check'). One agent per
gateway.data_dir: a second 'run' on a data_dir that a running agent holds exits 1,
naming the holder's pid."""

EPILOG_CHECK = """examples:
  edge-agent check -c /etc/edge-agent/config.yaml
Exit status 0 when valid (a one-line summary is printed), 1 on any problem.
Missing certificate or password files, and a gateway.data_dir that is not a writable
directory, are problems; a password file readable by others and a serial port that is
not there (yet) are warnings. With the buffer at hand, an uplink removed from the config
that still has undelivered readings is a problem (see 'edge-agent buffer rename-uplink'
and 'drop-uplink')."""

EPILOG_ONCE = """examples:
  edge-agent once -c /etc/edge-agent/config.yaml
  edge-agent once -c /etc/edge-agent/config.yaml --device dust-1
Polls each device once and prints the decoded values with units. Publishes nothing and
does not touch the buffer, so it is safe while the daemon is stopped for debugging.
(Stop the daemon first if it owns the same serial port.)"""

EPILOG_SIMULATE = """examples:
  edge-agent simulate pty:1=renke-dust-all-in-one pty:2=generic-radar-level-80ghz
  edge-agent simulate --tcp 127.0.0.1:5020 tcp:1=eastron-sdm630
  edge-agent simulate --pty-dir /tmp/site pty:1=renke-dust-all-in-one --fault pty:1=bad_crc:0.1
  edge-agent simulate pty:000000000001=generic-dlt645-2007 pty:000000000002=generic-dlt645-2007
  edge-agent simulate --pty-dir /tmp/site pty:1=renke-dust-all-in-one pty:000000000001=generic-dlt645-2007
Slaves are LINE:UNIT=PROFILE. 'pty' slaves share one virtual RS-485 line (socat); the
path the agent must open is printed. A DL/T 645 profile takes the meter's address
instead of a unit (pty:ADDRESS=PROFILE, up to 12 digits). One line carries one
protocol: DL/T 645 meters given beside Modbus pty slaves are served on a second line
(DIR/dlt645-agent beside DIR/rs485-agent) at --dlt645-baudrate/--dlt645-parity (default
2400 8E1); the --ready-file JSON names it under "dlt645" ("serial" is the first line).
Faults: dead, exception, slow, bad_crc, garbage, short, optionally with a rate
(fraction of requests); --fault pty:ADDRESS=KIND applies to a meter. Modbus slaves'
faults can be changed while the simulator serves by writing lines such as 'pty:2=dead'
(or 'pty:2=none') to the faults file whose path it prints."""

EPILOG_DEMO = """The demo starts a private mosquitto on a free loopback port, a simulated construction
site (dust monitor and water-level gauge on one virtual RS-485 line, an energy meter on
Modbus TCP) and the agent, then prints the readings as they arrive at the broker.
Stop it with Ctrl-C."""


def _setup_logging(level: str = "info") -> None:
    from .logsetup import setup_logging

    setup_logging(level)


def _load(path: str):  # type: ignore[no-untyped-def]
    from .config import load_config

    return load_config(path)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        loaded = _load(args.config)
    except SourceError as exc:
        for w in exc.warnings:
            print(f"{w.file}:{w.line}: {w.path}: warning: {w.message}")
        for p in exc.problems:
            print(p)
        print(f"{args.config}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 1
    from .preflight import data_dir_problem, stranded_problems

    problems = [p for p in (data_dir_problem(loaded, create=False),) if p] + stranded_problems(loaded)
    for w in loaded.warnings:
        print(f"{w.file}:{w.line}: {w.path}: warning: {w.message}")
    if problems:
        for p in problems:
            print(p)
        print(f"{args.config}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    cfg = loaded.config
    print(f"{args.config}: OK: {len(cfg.buses)} buses, {len(cfg.devices)} devices, "
          f"{loaded.points()} points, {len(cfg.uplinks)} uplinks")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    signals: StartSignals | None = args.start_signals
    try:
        loaded = _load(args.config)
    except SourceError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        print(f"edge-agent: not starting: {len(exc.problems)} problem(s) in {args.config}", file=sys.stderr)
        return 1
    _setup_logging(args.log_level or loaded.config.logging.level)
    for w in loaded.warnings:
        logging.getLogger("agent").warning("%s:%d: %s: %s", w.file, w.line, w.path, w.message)
    from buffer.lock import DataDirBusy, DataDirLock

    from .preflight import data_dir_problem, stranded_problems
    from .runtime import run_agent

    problem = data_dir_problem(loaded, create=True)
    if problem:
        print(f"{problem}\nedge-agent: not starting: 1 problem(s) in {args.config}", file=sys.stderr)
        return 1
    try:
        lock = DataDirLock(loaded.data_dir).acquire()
    except DataDirBusy as exc:
        print(f"edge-agent: not starting: {exc}", file=sys.stderr)
        return 1
    try:
        problems = stranded_problems(loaded)
        if problems:
            for p in problems:
                print(p, file=sys.stderr)
            print(f"edge-agent: not starting: {len(problems)} problem(s) in {args.config}", file=sys.stderr)
            return 1
        asyncio.run(run_agent(loaded, log_level=args.log_level, signals=signals))
    finally:
        lock.release()
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    try:
        loaded = _load(args.config)
    except SourceError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return 1
    _setup_logging("error")
    from .wiring import build_devices

    if args.device and args.device not in loaded.config.devices:
        from drivers.yamlsource import did_you_mean

        print(f"unknown device '{args.device}'{did_you_mean(args.device, loaded.config.devices)}",
              file=sys.stderr)
        return 1

    async def poll_all() -> int:
        buses, devices = build_devices(loaded, only=args.device)  # inside the loop: pymodbus needs it
        failed = 0
        for dev_id, dev in devices.items():
            cfg = loaded.config.devices[dev_id]
            profile = loaded.profiles[dev_id]
            where = f"unit {cfg.unit} on {cfg.bus}" if cfg.unit is not None else f"meter {cfg.address} on {cfg.bus}"
            t0 = time.perf_counter()
            try:
                polled = await dev.read()
            except DriverError as exc:
                failed += 1
                print(f"{dev_id}  ({profile.name}, {where})  FAILED: {exc.status}: {exc}")
                continue
            ms = (time.perf_counter() - t0) * 1000
            print(f"{dev_id}  ({profile.name}, {where})  {polled.status} in {ms:.0f} ms, "
                  f"{len(dev.plan)} request(s)")
            names = [k for k in profile.points if k in polled.values or k in polled.errors]
            width = max(len(k) for k in names) if names else 0
            for k in names:
                if k in polled.errors:
                    print(f"  {k:<{width}}  -  ({polled.errors[k]})")
                    continue
                unit = profile.unit_of(k)
                flag = f"  ({polled.flags[k]})" if k in polled.flags else ""
                print(f"  {k:<{width}}  {polled.values[k]}{(' ' + unit) if unit and unit != 'bool' else ''}{flag}")
        for bus in buses.values():
            await bus.close()
        return 1 if failed else 0

    return asyncio.run(poll_all())


def cmd_simulate(args: argparse.Namespace) -> int:
    _setup_logging("warning")
    from .simulate import parse_slaves, serve

    try:
        plan = parse_slaves(args.slaves, args.fault or [])
    except (ValueError, LookupError, SourceError) as exc:
        print(f"edge-agent simulate: {exc}", file=sys.stderr)
        return 2
    if any(s.startswith("tcp:") for s in args.slaves):
        trouble = _tcp_address_trouble(args.tcp)
        if trouble:
            print(f"edge-agent simulate: cannot serve Modbus TCP on {args.tcp}: {trouble}", file=sys.stderr)
            return 1
    try:
        speeds = {"modbus": (args.baudrate, "N"), "dlt645": (args.dlt645_baudrate, args.dlt645_parity)}
        asyncio.run(serve(plan, pty_dir=args.pty_dir, tcp=args.tcp, emulate_timing=args.emulate_timing,
                          ready_file=args.ready_file, speeds=speeds))
    except RuntimeError as exc:  # pymodbus: "Could not start listen" (the port was taken meanwhile)
        print(f"edge-agent simulate: {exc}", file=sys.stderr)
        return 1
    return 0


def _tcp_address_trouble(address: str) -> str | None:
    """Why ``HOST:PORT`` cannot be listened on (e.g. "Address already in use"), or None."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host.strip("[]"), int(port)))
    except (OSError, ValueError) as exc:
        return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(duration=args.duration, data_dir=args.data_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Polls field devices (Modbus RTU/TCP), keeps every reading in SQLite until a "
                    "platform has acknowledged it, and publishes over MQTT.")
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("run", help="run the daemon in the foreground (what systemd runs)",
                       epilog=EPILOG_RUN, formatter_class=fmt)
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="config YAML")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="override logging.level from the config")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate the config and every profile it references",
                       epilog=EPILOG_CHECK, formatter_class=fmt)
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="config YAML")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("once", help="poll once and print decoded values with units (publishes nothing)",
                       epilog=EPILOG_ONCE, formatter_class=fmt)
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="config YAML")
    p.add_argument("--device", metavar="ID", help="poll only this device")
    p.set_defaults(func=cmd_once)

    p = sub.add_parser("simulate", help="serve simulated devices built from catalog profiles",
                       epilog=EPILOG_SIMULATE, formatter_class=fmt)
    p.add_argument("slaves", nargs="+", metavar="LINE:UNIT=PROFILE",
                   help="e.g. pty:1=renke-dust-all-in-one, or pty:ADDRESS=PROFILE for a DL/T 645 meter")
    p.add_argument("--pty-dir", metavar="DIR", help="where the pty links go (default: a temp dir)")
    p.add_argument("--tcp", default="127.0.0.1:5020", metavar="HOST:PORT", type=host_and_port,
                   help="address for tcp slaves (default 127.0.0.1:5020)")
    p.add_argument("--baudrate", type=int, default=9600, help="serial speed of the virtual Modbus line")
    p.add_argument("--dlt645-baudrate", type=int, default=2400,
                   help="serial speed of the DL/T 645 meters' line (default 2400)")
    p.add_argument("--dlt645-parity", choices=["N", "E", "O"], default="E",
                   help="parity of the DL/T 645 meters' line (default E)")
    p.add_argument("--emulate-timing", action="store_true",
                   help="answer no faster than the wire would at --baudrate (--dlt645-baudrate for meters)")
    p.add_argument("--fault", action="append", metavar="LINE:UNIT=KIND[:RATE]",
                   help="inject a fault: dead, exception, slow, bad_crc, garbage, short")
    p.add_argument("--ready-file", metavar="FILE", help="write the served addresses here as JSON")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="the whole path on simulated devices, no hardware needed",
                       epilog=EPILOG_DEMO, formatter_class=fmt)
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--data-dir", metavar="DIR", help="where the demo's buffer goes (default: temp)")
    p.set_defaults(func=cmd_demo)

    from .commands import register_all

    register_all(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The daemon: systemd may stop or reload it at any moment of its start, parsing included.
    signals = StartSignals().install() if argv[:1] == ["run"] else None
    try:
        args = build_parser().parse_args(argv)
        args.start_signals = signals
        return _dispatch(args)
    except StopBeforeStart as stop:
        print(f"edge-agent: {stop.signal_name} before the start finished: stopped; nothing was polled yet",
              file=sys.stderr)
        return 0
    finally:
        if signals is not None:
            signals.restore()


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edge-agent once | head`: the reader has what it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a port in use, a read-only disk, a missing device: say what, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"edge-agent {args.command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
