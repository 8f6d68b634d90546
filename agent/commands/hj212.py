"""``edge-agent hj212-server``: a test platform that speaks HJ 212-2017."""

from __future__ import annotations

import argparse
import sys
import time

from ..argtypes import tcp_port

EPILOG = """examples:
  edge-agent hj212-server --port 9000
  edge-agent hj212-server --port 9000 --pull 2051 20261128080000 20261128090000
Listens like an environmental platform: checks each frame's length and CRC, answers
9014 to every data packet that asks for an answer, and prints each decoded data segment
(bad frames are printed with '!'). --pull asks the first logger that connects for the
stored packets of a period (CN 2051 minute, 2061 hour, 2031 day; local times
yyyyMMddHHmmss) and prints the records and the 9012 result. --no-answer never answers
(to watch a logger resend and reconnect)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hj212-server", help="a test platform speaking HJ 212-2017 (checks, answers, prints)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=tcp_port, required=True, help="TCP port to listen on")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    p.add_argument("--pw", default="123456", help="password (PW) the platform's requests carry")
    p.add_argument("--no-answer", action="store_true", help="never answer 9014")
    p.add_argument("--pull", nargs=3, metavar=("CN", "BEGIN", "END"), help="pull history from the logger")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.set_defaults(func=cmd_hj212_server)


def cmd_hj212_server(args: argparse.Namespace) -> int:
    from agent.uplinks.hj212.platform import Hj212Platform

    def show(line: str) -> None:
        print(line, flush=True)

    platform = Hj212Platform(args.host, args.port, answer=not args.no_answer, show=show, pw=args.pw).start()
    print(f"# hj212-server listening on {args.host}:{platform.port}", flush=True)
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        if args.pull:
            while not platform.connected:
                if deadline is not None and time.monotonic() > deadline:
                    print("hj212-server: no logger connected", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            cn, begin, end = args.pull
            try:
                records = platform.pull(cn, begin, end)
            except TimeoutError as exc:
                print(f"hj212-server: {exc}", file=sys.stderr)
                return 1
            print(f"# pulled {len(records)} records", flush=True)
            return 0
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
        return 0
    finally:
        platform.stop()
