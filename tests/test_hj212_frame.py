"""HJ 212-2017 framing: the standard's CRC, strict frames out, lenient and typed in."""

from __future__ import annotations

import pytest

from agent.uplinks.hj212.frame import (
    BadCrc,
    BadLength,
    FrameError,
    FrameReader,
    Garbage,
    Truncated,
    crc16,
    decode,
    encode,
)

EXAMPLE = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&"
RTD = ("QN=20261128083000000;ST=39;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;"
       "CP=&&DataTime=20261128083000;a34004-Rtd=35.0,a34004-Flag=N;a34002-Rtd=80.5,a34002-Flag=N&&")


def appendix_a(data: bytes) -> int:
    """The standard's Appendix A, written out independently of the agent's code: the byte
    goes into the low half of the register, then 8 reflected steps with polynomial 0xA001."""
    register = 0xFFFF
    for value in data:
        register = ((register >> 8) & 0xFF) ^ value
        for _ in range(8):
            carry = register % 2
            register //= 2
            register = register ^ 0xA001 if carry else register
    return register


def crc16_modbus(data: bytes) -> int:
    register = 0xFFFF
    for value in data:
        register ^= value
        for _ in range(8):
            register = (register >> 1) ^ 0xA001 if register & 1 else register >> 1
    return register


def test_the_standards_example_has_crc_1c80() -> None:
    assert crc16(EXAMPLE.encode()) == 0x1C80 == appendix_a(EXAMPLE.encode())
    assert crc16_modbus(EXAMPLE.encode()) != 0x1C80  # not CRC-16/MODBUS
    assert encode(EXAMPLE) == f"##0101{EXAMPLE}1C80\r\n".encode()


@pytest.mark.parametrize("segment", [EXAMPLE, RTD, "QN=1;CN=9014;CP=&&&&", "MN=工地-1;CP=&&&&"])
def test_frames_pass_an_independent_appendix_a_and_round_trip(segment: str) -> None:
    frame = encode(segment)
    data = segment.encode("utf-8")
    assert frame[:2] == b"##" and frame[-2:] == b"\r\n"
    assert int(frame[2:6]) == len(data)  # bytes of UTF-8, not characters
    assert int(frame[-6:-2], 16) == appendix_a(data) and frame[-6:-2] == frame[-6:-2].upper()
    assert decode(frame) == segment


def test_lowercase_crc_from_a_platform_is_accepted() -> None:
    assert decode(f"##0101{EXAMPLE}1c80\r\n".encode()) == EXAMPLE


@pytest.mark.parametrize(("frame", "error"), [
    (f"##0101{EXAMPLE}1C08\r\n".encode(), BadCrc),  # the standard's prose misprint
    (f"##0100{EXAMPLE}1C80\r\n".encode(), BadLength),
    (f"##01x1{EXAMPLE}1C80\r\n".encode(), Garbage),
    (f"##0101{EXAMPLE}1C8".encode(), Truncated),
    (f"##0101{EXAMPLE}1C80\r\nxyz".encode(), Garbage),
])
def test_bad_frames_are_typed_errors(frame: bytes, error: type[FrameError]) -> None:
    with pytest.raises(error):
        decode(frame)


def test_the_stream_reader_splits_joins_and_resynchronises() -> None:
    good, other = encode(EXAMPLE), encode(RTD)
    bad_crc = f"##0101{EXAMPLE}0000\r\n".encode()
    stream = b"noise" + good + bad_crc + other + good[:40] + other + good
    reader = FrameReader()
    got: list[str | FrameError] = []
    for i in range(len(stream)):  # one byte at a time, as a slow link delivers it
        got += reader.feed(stream[i : i + 1])
    got += reader.close()
    kinds = [g if isinstance(g, str) else type(g).__name__ for g in got]
    assert kinds == ["Garbage", EXAMPLE, "BadCrc", RTD, "Truncated", RTD, EXAMPLE], kinds
    reader = FrameReader()  # the same stream in one chunk
    assert [g if isinstance(g, str) else type(g).__name__ for g in reader.feed(stream) + reader.close()] == kinds


def test_a_stream_that_ends_inside_a_frame_is_truncated() -> None:
    reader = FrameReader()
    assert reader.feed(encode(EXAMPLE)[:-3]) == []
    (err,) = reader.close()
    assert isinstance(err, Truncated)
