"""DL/T 645-2007 framing and value decoding: bytes in, numbers out, no I/O.

A frame on the wire::

    [FE FE FE FE] 68 A0..A5 68 C L DATA CS 16

``A0..A5`` is the meter address, 12 BCD digits, low byte first (``AA`` bytes are
wildcards). ``C`` is the control code: bit 7 set in replies, bit 6 in error replies,
bit 5 when follow-on frames come, bits 0-4 the function (0x11 read, 0x12 read follow-on,
0x13 read address). Every ``DATA`` byte goes on the wire plus 0x33. ``CS`` is the sum
mod 256 of every byte from the first 68 to the last data byte. A read request carries the
data identifier DI0..DI3 (low byte first); the reply carries the DI then the value, BCD,
low byte first, the top bit of the last byte a sign bit for signed items.

Every malformed input raises a typed error from :mod:`drivers.errors`, never a value:

- fewer bytes than the header or the length byte implies: ``ShortFrame``;
- bytes that cannot start a frame, no ``16`` where the frame ends, bytes after it, a
  request where a reply was due, a reply to another function: ``GarbageFrame``;
- a well-formed reply to another request (other address, DI or sequence number):
  ``WrongReply``, a ``GarbageFrame`` a transport may skip while it waits for its answer;
- checksum mismatch: ``CrcError``;
- an error reply (0xD1...): ``ExceptionResponse`` with the meter's error byte.

Values inside the data (BCD layouts, the table of common identifiers) are in ``bcd``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CrcError, ExceptionResponse, GarbageFrame, ShortFrame

PREAMBLE = b"\xfe\xfe\xfe\xfe"
MAX_PREAMBLE = 4
START = 0x68
END = 0x16
OFFSET = 0x33
HEADER_LEN = 10  # 68, six address bytes, 68, control, length
MAX_DATA = 255

# control code: direction, error and follow-on bits, then the function in bits 0-4
REPLY_BIT = 0x80
ERROR_BIT = 0x40
MORE_BIT = 0x20
FUNCTION_MASK = 0x1F
READ = 0x11
READ_FOLLOW = 0x12
READ_ADDRESS = 0x13

WILDCARD_ADDRESS = "AAAAAAAAAAAA"
BROADCAST_ADDRESS = "999999999999"
WILDCARD = 0xAA

ERROR_BITS: dict[int, str] = {
    0: "other error",
    1: "no requested data",
    2: "wrong password or not authorised",
    3: "baud rate cannot be changed",
    4: "too many yearly time zones",
    5: "too many daily time periods",
    6: "too many tariffs",
}


class WrongReply(GarbageFrame):
    """A well-formed reply that answers another request (address, DI or sequence)."""


def describe_error(code: int) -> str:
    """The meaning of a DL/T 645-2007 error byte (one flag per bit)."""
    names = [text for bit, text in ERROR_BITS.items() if code & (1 << bit)]
    return ", ".join(names) or "unspecified error"


# --- addresses and data identifiers -------------------------------------------------


def address_bytes(address: str) -> bytes:
    """The six wire bytes (low byte first) of a 12-digit address such as ``123456789012``.

    Shorter addresses are padded with leading zeros; a pair of digits may be ``AA`` (a
    wildcard the meter matches against any value). Raises ValueError for anything else.
    """
    text = address.strip().replace(" ", "").upper()
    if not text or len(text) > 12:
        raise ValueError(f"DL/T 645 address {address!r} must have 1 to 12 digits")
    text = text.zfill(12)
    pairs = [text[i : i + 2] for i in range(0, 12, 2)]
    for pair in pairs:
        if not (pair.isdigit() or pair == "AA"):
            raise ValueError(f"DL/T 645 address {address!r}: {pair!r} is neither BCD nor AA")
    return bytes(int(pair, 16) for pair in reversed(pairs))


def address_text(raw: bytes) -> str:
    """The 12-character address of six wire bytes (high digits first, as printed on meters)."""
    return "".join(f"{b:02X}" for b in reversed(raw))


def is_bcd(raw: bytes | bytearray) -> bool:
    """True if every nibble of ``raw`` is a decimal digit."""
    return all((b >> 4) <= 9 and (b & 0x0F) <= 9 for b in raw)


def address_matches(requested: bytes, replied: bytes) -> bool:
    """Whether a reply from ``replied`` answers a request to ``requested`` (AA matches any)."""
    return len(requested) == len(replied) == 6 and all(
        q in (WILDCARD, r) for q, r in zip(requested, replied, strict=True)
    )


def parse_di(di: str | int) -> int:
    """A data identifier as an int DI3..DI0, from ``"02-01-01-00"``, ``"02010100"`` or an int."""
    if isinstance(di, int):
        if not 0 <= di <= 0xFFFFFFFF:
            raise ValueError(f"data identifier {di:#x} does not fit in four bytes")
        return di
    text = di.strip().lower().removeprefix("0x").replace("-", "").replace(" ", "")
    if len(text) != 8 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"data identifier {di!r} must be four hex bytes, e.g. 02-01-01-00")
    return int(text, 16)


def di_text(di: int) -> str:
    """``0x02010100`` as ``02-01-01-00`` (DI3 first, as the standard's tables print it)."""
    return "-".join(f"{b:02X}" for b in di.to_bytes(4, "big"))


def di_bytes(di: int) -> bytes:
    """The DI as it goes in a frame's data: DI0 first."""
    return di.to_bytes(4, "little")


# --- frames --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: wire address bytes, control code, data with the 0x33 removed."""

    address: bytes
    control: int
    data: bytes

    @property
    def function(self) -> int:
        return self.control & FUNCTION_MASK

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY_BIT)

    @property
    def is_error(self) -> bool:
        return bool(self.control & ERROR_BIT)

    @property
    def has_more(self) -> bool:
        return bool(self.control & MORE_BIT)

    @property
    def address_str(self) -> str:
        return address_text(self.address)


def checksum(body: bytes) -> int:
    """Sum mod 256 of the bytes from the first 68 through the last data byte."""
    return sum(body) & 0xFF


def encode_frame(address: str | bytes, control: int, data: bytes = b"", *,
                 preamble: bool = True) -> bytes:
    """A complete frame (with the FE FE FE FE wake-up preamble unless told otherwise)."""
    addr = address_bytes(address) if isinstance(address, str) else bytes(address)
    if len(addr) != 6:
        raise ValueError("a DL/T 645 address has six bytes")
    if len(data) > MAX_DATA:
        raise ValueError(f"{len(data)} data bytes do not fit in one frame (max {MAX_DATA})")
    body = bytes([START, *addr, START, control & 0xFF, len(data)])
    body += bytes((b + OFFSET) & 0xFF for b in data)
    return (PREAMBLE if preamble else b"") + body + bytes([checksum(body), END])


def _skip_preamble(buf: bytes | bytearray) -> int:
    i = 0
    while i < len(buf) and buf[i] == 0xFE:
        i += 1
    if i > MAX_PREAMBLE:
        raise GarbageFrame(f"{i} FE bytes before the frame (at most {MAX_PREAMBLE})")
    return i


def expected_length(buf: bytes | bytearray) -> int | None:
    """Total length (preamble included) of the frame ``buf`` begins, once its header is in.

    None while the header is incomplete; GarbageFrame if ``buf`` cannot begin a frame.
    """
    i = _skip_preamble(buf)
    if i == len(buf):
        return None
    if buf[i] != START:
        raise GarbageFrame(f"frame starts with {buf[i]:#04x}, not 0x68")
    if len(buf) < i + HEADER_LEN:
        return None
    if buf[i + 7] != START:
        raise GarbageFrame(f"no second 0x68 after the address (got {buf[i + 7]:#04x})")
    return i + HEADER_LEN + buf[i + 9] + 2


def decode_frame(raw: bytes | bytearray) -> Frame:
    """One complete frame, 0-4 FE bytes before it and nothing after. Raises typed errors."""
    total = expected_length(raw)
    if total is None or len(raw) < total:
        need = "a header" if total is None else f"{total} bytes"
        raise ShortFrame(f"{len(raw)} bytes, the frame needs {need}")
    start = _skip_preamble(raw)
    if raw[total - 1] != END:
        raise GarbageFrame(f"frame ends with {raw[total - 1]:#04x}, not 0x16")
    body = bytes(raw[start : total - 2])
    if checksum(body) != raw[total - 2]:
        raise CrcError(f"checksum {raw[total - 2]:#04x}, computed {checksum(body):#04x}")
    if len(raw) > total:
        raise GarbageFrame(f"{len(raw) - total} bytes after the end of the frame")
    data = bytes((b - OFFSET) & 0xFF for b in body[HEADER_LEN:])
    return Frame(address=body[1:7], control=body[8], data=data)


@dataclass(frozen=True, slots=True)
class Located:
    """Where the first frame sits in received bytes: ``buf[start:end]`` once ``end`` is known.

    ``start`` is where its preamble (or its 68) begins, after ``noise`` bytes that could
    not start a frame; ``end`` is None while the header is still incomplete.
    """

    start: int
    end: int | None
    noise: int


def locate_frame(buf: bytes | bytearray) -> Located | None:
    """Find the first plausible frame in bytes from a line, skipping noise before it.

    A transport uses this to wait for exactly one frame: None means nothing that could
    start a frame yet. Whether the frame is valid is for :func:`decode_frame` to say.
    """
    pos = 0
    while pos < len(buf):
        j = buf.find(START, pos)
        if j < 0:
            return None
        begin = j
        while begin > pos and j - begin < MAX_PREAMBLE and buf[begin - 1] == 0xFE:
            begin -= 1
        if len(buf) < j + HEADER_LEN:
            return Located(begin, None, begin)
        if buf[j + 7] == START:
            return Located(begin, j + HEADER_LEN + buf[j + 9] + 2, begin)
        pos = j + 1  # a stray 68 in noise
    return None


# --- requests and replies ------------------------------------------------------------


def read_request(address: str, di: str | int, *, preamble: bool = True) -> bytes:
    """Control 0x11: read one data identifier."""
    return encode_frame(address, READ, di_bytes(parse_di(di)), preamble=preamble)


def read_follow_request(address: str, di: str | int, seq: int, *, preamble: bool = True) -> bytes:
    """Control 0x12: read follow-on frame number ``seq`` (1, 2, ...) of a reply."""
    if not 1 <= seq <= 0xFF:
        raise ValueError("follow-on sequence numbers run 1..255")
    return encode_frame(address, READ_FOLLOW, di_bytes(parse_di(di)) + bytes([seq]),
                        preamble=preamble)


def read_address_request(*, preamble: bool = True) -> bytes:
    """Control 0x13 to AA..AA: the single meter on the line answers with its address."""
    return encode_frame(WILDCARD_ADDRESS, READ_ADDRESS, b"", preamble=preamble)


@dataclass(frozen=True, slots=True)
class ReadReply:
    """A meter's answer to a read: its address, the DI, the value bytes, whether more follow."""

    address: str
    di: int
    data: bytes
    more: bool
    seq: int | None = None


def _check_reply(frame: Frame, requested: bytes, function: int) -> None:
    if not frame.is_reply:
        raise GarbageFrame(f"a request (control {frame.control:#04x}) where a reply was due")
    if frame.function != function:
        raise GarbageFrame(f"reply control {frame.control:#04x} to function {function:#04x}")
    if not is_bcd(frame.address) or not address_matches(requested, frame.address):
        raise WrongReply(f"reply from address {frame.address_str}, "
                         f"asked {address_text(requested)}")
    if frame.is_error:
        if not frame.data:
            raise ShortFrame("error reply without its error byte")
        code = frame.data[0]
        raise ExceptionResponse(code, f"meter {frame.address_str}: error {code:#04x} "
                                f"({describe_error(code)})")


def parse_read_reply(raw: bytes | bytearray, address: str, di: str | int, *,
                     seq: int | None = None) -> ReadReply:
    """Check a reply to :func:`read_request` (or to follow-on ``seq``) and return its value.

    Raises ExceptionResponse for an error reply, WrongReply for another request's answer.
    """
    frame = decode_frame(raw)
    want = parse_di(di)
    _check_reply(frame, address_bytes(address), READ if seq is None else READ_FOLLOW)
    data = frame.data
    if len(data) < (4 if seq is None else 5):
        raise ShortFrame(f"reply holds {len(data)} data bytes, too few for a DI")
    got = int.from_bytes(data[:4], "little")
    if got != want:
        raise WrongReply(f"reply for DI {di_text(got)}, asked {di_text(want)}")
    if seq is not None:
        if data[-1] != seq:
            raise WrongReply(f"follow-on frame {data[-1]}, asked {seq}")
        return ReadReply(frame.address_str, got, data[4:-1], frame.has_more, seq)
    return ReadReply(frame.address_str, got, data[4:], frame.has_more)


def parse_address_reply(raw: bytes | bytearray) -> str:
    """The address in a reply to :func:`read_address_request`."""
    frame = decode_frame(raw)
    _check_reply(frame, address_bytes(WILDCARD_ADDRESS), READ_ADDRESS)
    if len(frame.data) != 6:
        raise ShortFrame(f"address reply holds {len(frame.data)} bytes, not 6")
    if frame.data != frame.address:
        raise GarbageFrame(f"address reply names {address_text(frame.data)} "
                           f"from {frame.address_str}")
    return frame.address_str


def parse_request(raw: bytes | bytearray) -> Frame:
    """A master's request (what a simulated meter receives)."""
    frame = decode_frame(raw)
    if frame.is_reply:
        raise GarbageFrame(f"a reply (control {frame.control:#04x}) where a request was due")
    return frame


def encode_read_reply(address: str, di: str | int, value: bytes, *, more: bool = False,
                      seq: int | None = None, preamble: bool = True) -> bytes:
    """A meter's normal reply: 0x91 (0xB1 with more to follow), or 0x92/0xB2 to a follow-on."""
    control = (READ if seq is None else READ_FOLLOW) | REPLY_BIT | (MORE_BIT if more else 0)
    data = di_bytes(parse_di(di)) + value + (b"" if seq is None else bytes([seq]))
    return encode_frame(address, control, data, preamble=preamble)


def encode_error_reply(address: str, code: int, *, function: int = READ,
                       preamble: bool = True) -> bytes:
    """A meter's error reply (0xD1 to a read) carrying the error byte ``code``."""
    return encode_frame(address, function | REPLY_BIT | ERROR_BIT, bytes([code & 0xFF]),
                        preamble=preamble)


def encode_address_reply(address: str, *, preamble: bool = True) -> bytes:
    """A meter's reply 0x93 to a read-address request."""
    raw = address_bytes(address)
    if not is_bcd(raw):
        raise ValueError("a meter's own address has no wildcards")
    return encode_frame(raw, READ_ADDRESS | REPLY_BIT, raw, preamble=preamble)
