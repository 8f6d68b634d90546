"""The system clock's state as the kernel knows it: synchronised by NTP or not (adjtimex).

A placeholder section of ``edge-agent status``: the clock handling of a Pi without a
real-time clock fills in more (whether readings are held until the clock is good).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
import time
from typing import Any

TIME_ERROR = 5  # adjtimex: the clock is not synchronised
STA_UNSYNC = 0x0040
_TIMEX_SIZE = 512  # struct timex is 208 bytes on 64-bit Linux; room to spare
# struct timex starts: int modes; long offset, freq, maxerror, esterror; int status
_LONG = struct.calcsize("l")
_MAXERROR_AT = _LONG * 3  # modes (padded to a long), offset, freq
_STATUS_AT = _LONG * 5


def clock_state() -> dict[str, Any]:
    """``{"now", "synchronized": bool | None, "max_error_us", "source"}``; None where unknown."""
    out: dict[str, Any] = {"now": int(time.time() * 1000), "synchronized": None, "max_error_us": None,
                           "source": "adjtimex"}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(_TIMEX_SIZE)  # modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        out["source"] = "unavailable"
        return out
    if state < 0:
        out["source"] = "unavailable"
        return out
    (status,) = struct.unpack_from("i", buf.raw, _STATUS_AT)
    (max_error,) = struct.unpack_from("l", buf.raw, _MAXERROR_AT)
    out["synchronized"] = state != TIME_ERROR and not status & STA_UNSYNC
    out["max_error_us"] = max_error
    return out
