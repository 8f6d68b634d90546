"""HJ 212-2017 framing: ``##`` + data segment length (4 decimal digits, bytes of UTF-8) +
data segment + CRC (4 hex digits) + ``\\r\\n``.

The CRC is the standard's Appendix A algorithm over the data segment: start at 0xFFFF;
for each byte, ``crc = (crc >> 8) ^ byte``, then eight times shift right and XOR 0xA001
when the bit shifted out was 1. It is not CRC-16/MODBUS (which XORs the byte into the low
half): the standard's own example ``QN=20160801085857223;...;CP=&&RtdInterval=30&&``
gives 1C80.

Frames are emitted strictly (uppercase CRC, exact length). Received frames are parsed
leniently where real platforms deviate (lowercase CRC hex); anything else that is wrong
is a typed :class:`FrameError`, never a guessed packet, and the stream decoder resumes at
the next ``##``.
"""

from __future__ import annotations

HEADER = b"##"
TRAILER = b"\r\n"
MAX_SEGMENT = 9999  # four decimal digits


class FrameError(Exception):
    """A received frame that cannot be trusted; ``status`` names why."""

    status = "bad_frame"

    def __init__(self, message: str, raw: bytes = b"") -> None:
        super().__init__(message)
        self.raw = raw


class Garbage(FrameError):
    status = "garbage"


class BadLength(FrameError):
    status = "bad_length"


class BadCrc(FrameError):
    status = "bad_crc"


class Truncated(FrameError):
    status = "truncated"


def _eight_steps(value: int) -> int:
    for _ in range(8):
        lsb = value & 1
        value >>= 1
        if lsb:
            value ^= 0xA001
    return value


# ``(crc >> 8) ^ byte`` is below 256, so the eight steps after it are a table look-up
_TABLE = [_eight_steps(i) for i in range(256)]


def crc16(data: bytes) -> int:
    """HJ 212-2017 Appendix A: for each byte, ``crc = (crc >> 8) ^ byte``, then eight steps."""
    crc = 0xFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc >> 8) ^ byte]
    return crc


def encode(segment: str) -> bytes:
    """One frame around a data segment."""
    data = segment.encode("utf-8")
    if len(data) > MAX_SEGMENT:
        raise ValueError(f"data segment of {len(data)} bytes: at most {MAX_SEGMENT} fit in a frame")
    return HEADER + b"%04d" % len(data) + data + b"%04X" % crc16(data) + TRAILER


def decode(frame: bytes) -> str:
    """The data segment of exactly one frame; a FrameError when it is not a good one."""
    segment, used = _parse(frame, 0)
    if used != len(frame):
        raise Garbage(f"{len(frame) - used} bytes after the frame", frame[used:])
    return segment


def _parse(buf: bytes, start: int) -> tuple[str, int]:
    """Parse the frame starting at ``buf[start]`` (at ``##``); (segment, end offset)."""
    head = buf[start + 2 : start + 6]
    if len(head) < 4:
        raise Truncated("frame ends inside its length", buf[start:])
    if not head.isdigit():
        raise Garbage(f"length {head!r} is not four digits", buf[start : start + 6])
    n = int(head)
    end = start + 6 + n + 6
    if len(buf) < end:
        raise Truncated(f"frame of {n} data bytes ends after {len(buf) - start - 6}", buf[start:])
    data, crc_text, trailer = buf[start + 6 : start + 6 + n], buf[end - 6 : end - 2], buf[end - 2 : end]
    if trailer != TRAILER or not _is_hex(crc_text):
        raise BadLength(f"no CRC and CRLF where a {n}-byte data segment ends", buf[start:end])
    want = crc16(data)
    if int(crc_text, 16) != want:
        raise BadCrc(f"CRC {crc_text.decode()} where the data segment gives {want:04X}", buf[start:end])
    try:
        return data.decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise Garbage(f"data segment is not UTF-8: {exc}", buf[start:end]) from exc


def _is_hex(text: bytes) -> bool:
    return len(text) == 4 and all(c in b"0123456789abcdefABCDEF" for c in text)


class FrameReader:
    """Splits a TCP byte stream into data segments. :meth:`feed` returns, in order, each
    good segment (``str``) and each bad stretch (a :class:`FrameError`); after a bad one it
    resumes at the next ``##``."""

    def __init__(self) -> None:
        self._buf = b""
        self._junk = b""  # bytes outside any frame, reported once when the next frame starts

    def feed(self, data: bytes) -> list[str | FrameError]:
        self._buf += data
        out: list[str | FrameError] = []
        while self._buf:
            at = self._buf.find(HEADER)
            if at < 0:
                keep = 1 if self._buf.endswith(b"#") else 0  # maybe the first half of a header
                self._junk += self._buf[: len(self._buf) - keep]
                self._buf = self._buf[len(self._buf) - keep :]
                break
            self._junk += self._buf[:at]
            self._buf = self._buf[at:]
            if self._junk:
                out.append(Garbage(f"{len(self._junk)} bytes outside any frame", self._junk))
                self._junk = b""
            nxt = self._buf.find(HEADER, 2)
            head = self._buf[2:6]
            if nxt > 0 and head.isdigit() and nxt < 6 + int(head) + 6:  # ("##" never occurs in a segment)
                out.append(Truncated("frame cut short by the next one", self._buf[:nxt]))
                self._buf = self._buf[nxt:]
                continue
            try:
                segment, end = _parse(self._buf, 0)
            except Truncated:
                break  # wait for the rest
            except FrameError as exc:
                out.append(exc)
                nxt = self._buf.find(HEADER, 2)
                self._buf = self._buf[nxt:] if nxt > 0 else b""
                continue
            out.append(segment)
            self._buf = self._buf[end:]
        return out

    def close(self) -> list[FrameError]:
        """The stream ended: a partial frame left is truncated; stray bytes are garbage."""
        out: list[FrameError] = []
        if self._junk:
            out.append(Garbage(f"{len(self._junk)} bytes outside any frame", self._junk))
        if self._buf.startswith(HEADER):
            out.append(Truncated(f"stream ended {len(self._buf)} bytes into a frame", self._buf))
        elif self._buf:
            out.append(Garbage("a stray byte at the end", self._buf))
        self._buf = self._junk = b""
        return out
