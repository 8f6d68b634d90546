"""Command-line value types shared by the commands: a TCP port, and HOST[:PORT].

argparse turns their ValueError into a one-line usage error (exit 2), so a port out of
range never reaches the socket layer (whose OverflowError would be a traceback).
"""

from __future__ import annotations

import argparse


def tcp_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def host_port(text: str) -> str:
    """``HOST`` or ``HOST:PORT`` (an IPv6 address in brackets: ``[::1]:502``), checked, as given."""
    host, sep, port = text.rpartition(":") if text.rfind(":") > text.rfind("]") else ("", "", "")
    if sep:
        tcp_port(port)
        if not host:
            raise argparse.ArgumentTypeError(f"'{text}' names no host")
    return text


def host_and_port(text: str) -> str:
    """``HOST:PORT``, the port required."""
    if text.rfind(":") <= text.rfind("]"):
        raise argparse.ArgumentTypeError(f"'{text}' is not HOST:PORT")
    return host_port(text)
