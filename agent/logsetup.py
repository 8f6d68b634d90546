"""Log lines for a terminal or for journald.

Under systemd (``$JOURNAL_STREAM`` names the device and inode of our stderr) journald adds
the time itself, so a line carries no timestamp; it starts with ``<N>``, the syslog
priority, which journald takes off and records (``journalctl -p warning`` then works).
Every line of a multi-line message gets the prefix. Elsewhere lines carry the time.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

TERMINAL_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def syslog_priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return SYSLOG_PRIORITY[level]
    return SYSLOG_PRIORITY[logging.DEBUG]


class JournalFormatter(logging.Formatter):
    """``<N>logger: message`` per line, no timestamp."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def journal_attached(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM``)."""
    env = os.environ if env is None else env
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """The root logger's one handler: journald's format under systemd, the terminal's elsewhere."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if journal_attached(stream) else logging.Formatter(TERMINAL_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "edge_agent", False)]:
        root.removeHandler(old)  # ours from an earlier call; others' (e.g. a test harness's) stay
    handler.edge_agent = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    set_level(level)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(getattr(logging, level.upper()))
