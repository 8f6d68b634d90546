"""DL/T 645-2007 framing and BCD decoding, byte for byte.

Expected frames are written out by hand from the standard (checksums summed in the
comments), and some are frames captured from real meters and published with their
decoded values, so the codec is checked against the protocol and not against itself.
"""

from __future__ import annotations

import pytest

from drivers.catalog import resolve_profile
from drivers.dlt645 import bcd, codec
from drivers.errors import (
    CrcError,
    DecodeError,
    DriverError,
    ExceptionResponse,
    GarbageFrame,
    ShortFrame,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def frame(body_hex: str) -> bytes:
    """A frame from its body (68 .. last data byte, data already +0x33): checksum and 16."""
    body = h(body_hex)
    return body + bytes([sum(body) % 256, 0x16])


# --- requests ------------------------------------------------------------------------


def test_read_request_by_hand() -> None:
    # Address 123456789012 goes low byte first: 12 90 78 56 34 12. DI 00-01-00-00 goes
    # DI0 first (00 00 01 00), each +0x33: 33 33 34 33. Checksum from the first 68:
    # 68+12+90+78+56+34+12+68+11+04+33+33+34+33 = 0x368 → 0x68.
    expected = h("FE FE FE FE 68 12 90 78 56 34 12 68 11 04 33 33 34 33 68 16")
    assert codec.read_request("123456789012", "00-01-00-00") == expected
    assert codec.read_request("123456789012", 0x00010000, preamble=False) == expected[4:]


def test_read_request_matches_a_real_capture() -> None:
    # A master reading forward active energy (00-01-00-00) from meter 000000000161.
    captured = h("FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16")
    assert codec.read_request("000000000161", "00-01-00-00") == captured
    # ... and phase A voltage (02-01-01-00) from the same meter
    captured = h("FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 34 34 35 17 16")
    assert codec.read_request("161", "02010100") == captured


def test_read_address_request_by_hand() -> None:
    # 68 + 6*AA + 68 + 13 + 00 = 0x4DF → DF
    assert codec.read_address_request() == h("FE FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16")


def test_follow_on_request() -> None:
    # 0x12, L=5: DI (33 33 34 33) then SEQ 1 (+0x33 = 34)
    expected = frame("68 12 90 78 56 34 12 68 12 05 33 33 34 33 34")
    assert codec.read_follow_request("123456789012", "00-01-00-00", 1, preamble=False) == expected
    with pytest.raises(ValueError):
        codec.read_follow_request("123456789012", "00-01-00-00", 0)


# --- replies from real meters --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "address", "di", "fmt", "value"),
    [
        # forward active energy 26 00 00 00 → 000000.26 kWh
        ("68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16",
         "000000000161", "00-01-00-00", "XXXXXX.XX", 0.26),
        # reverse active energy 26 01 00 00 → 000001.26 kWh
        ("68 61 01 00 00 00 00 68 91 08 33 33 35 33 59 34 33 33 8C 16",
         "000000000161", "00-02-00-00", "XXXXXX.XX", 1.26),
        # phase A voltage 01 10 → 100.1 V
        ("68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16",
         "000000000161", "02-01-01-00", "XXX.X", 100.1),
        # a meter that sends two FE first: 86 01 00 00 → 000001.86 kWh
        ("FE FE 68 72 00 32 09 17 20 68 91 08 33 33 34 33 B9 34 33 33 6D 16",
         "201709320072", "00-01-00-00", "XXXXXX.XX", 1.86),
    ],
)
def test_real_replies(raw: str, address: str, di: str, fmt: str, value: float) -> None:
    reply = codec.parse_read_reply(h(raw), address, di)
    assert reply.address == address
    assert reply.di == codec.parse_di(di)
    assert not reply.more
    assert bcd.decode_value(reply.data, fmt) == value


# --- replies built by hand -----------------------------------------------------------

ADDR = "123456789012"
ADDR_WIRE = "12 90 78 56 34 12"


def test_negative_current() -> None:
    # -1.234 A in XXX.XXX: digits 001234, low byte first 34 12 00, sign bit → 34 12 80;
    # +0x33: 67 45 B3. DI 02-02-01-00 → 00 01 02 02 → 33 34 35 35.
    raw = frame(f"68 {ADDR_WIRE} 68 91 07 33 34 35 35 67 45 B3")
    reply = codec.parse_read_reply(raw, ADDR, "02-02-01-00")
    assert reply.data == h("34 12 80")
    assert bcd.decode_value(reply.data, "XXX.XXX", signed=True) == -1.234
    # read as unsigned, 0x80 is the digits 8 and 0: why a profile must say ``signed``
    assert bcd.decode_value(reply.data, "XXX.XXX", signed=False) == 801.234


def test_negative_power_and_power_factor() -> None:
    # -2.5 kW in XX.XXXX: 025000 → 00 50 02 → sign → 00 50 82 → +33: 33 83 B5
    raw = frame(f"68 {ADDR_WIRE} 68 91 07 33 33 36 35 33 83 B5")
    reply = codec.parse_read_reply(raw, ADDR, "02-03-00-00")
    fmt, signed = bcd.item_layout("02-03-00-00")
    assert bcd.decode_value(reply.data, fmt, signed) == -2.5
    # -0.5 in X.XXX: 0500 → 00 05 → 00 85 → +33: 33 B8; DI 02-06-00-00 → 33 33 39 35
    raw = frame(f"68 {ADDR_WIRE} 68 91 06 33 33 39 35 33 B8")
    reply = codec.parse_read_reply(raw, ADDR, "02-06-00-00")
    assert bcd.decode_value(reply.data, "X.XXX", signed=True) == -0.5


def test_error_reply_is_an_exception_response() -> None:
    # 0xD1, L=1, error byte 0x02 (no requested data) +0x33 = 35
    raw = frame(f"68 {ADDR_WIRE} 68 D1 01 35")
    with pytest.raises(ExceptionResponse) as info:
        codec.parse_read_reply(raw, ADDR, "02-01-01-00")
    assert info.value.code == 0x02
    assert info.value.status == "exception_02"
    assert "no requested data" in str(info.value)
    assert codec.encode_error_reply(ADDR, 0x02, preamble=False) == raw


def test_error_reply_without_error_byte() -> None:
    with pytest.raises(ShortFrame):
        codec.parse_read_reply(frame(f"68 {ADDR_WIRE} 68 D1 00"), ADDR, "02-01-01-00")


def test_follow_on_flag_and_sequence() -> None:
    # 0xB1: first part, more to follow
    raw = frame(f"68 {ADDR_WIRE} 68 B1 06 33 33 34 33 59 33")
    reply = codec.parse_read_reply(raw, ADDR, "00-01-00-00")
    assert reply.more and reply.data == h("26 00")
    # 0x92: follow-on frame 1, the last: DI, data, SEQ
    raw = frame(f"68 {ADDR_WIRE} 68 92 07 33 33 34 33 34 33 34")
    reply = codec.parse_read_reply(raw, ADDR, "00-01-00-00", seq=1)
    assert not reply.more and reply.seq == 1 and reply.data == h("01 00")
    assert codec.encode_read_reply(ADDR, "00-01-00-00", h("01 00"), seq=1, preamble=False) == raw
    # 0xB2: follow-on frame with still more to come
    raw = frame(f"68 {ADDR_WIRE} 68 B2 07 33 33 34 33 34 33 35")
    assert codec.parse_read_reply(raw, ADDR, "00-01-00-00", seq=2).more
    # a follow-on frame with another sequence number answers another request
    with pytest.raises(codec.WrongReply):
        codec.parse_read_reply(raw, ADDR, "00-01-00-00", seq=1)


def test_address_reply() -> None:
    raw = frame(f"68 {ADDR_WIRE} 68 93 06 45 C3 AB 89 67 45")
    assert codec.parse_address_reply(raw) == ADDR
    assert codec.encode_address_reply(ADDR, preamble=False) == raw
    # the data must name the address in the header
    bad = frame(f"68 {ADDR_WIRE} 68 93 06 46 C3 AB 89 67 45")
    with pytest.raises(GarbageFrame):
        codec.parse_address_reply(bad)


def test_encoder_round_trip() -> None:
    raw = codec.encode_read_reply(ADDR, "02-02-01-00", bcd.encode_value(-1.234, "XXX.XXX", True),
                                  preamble=False)
    assert raw == frame(f"68 {ADDR_WIRE} 68 91 07 33 34 35 35 67 45 B3")
    more = codec.encode_read_reply(ADDR, "00-01-00-00", h("26 00"), more=True)
    assert codec.decode_frame(more).control == 0xB1


# --- preamble and framing tolerance --------------------------------------------------


@pytest.mark.parametrize("fe", [0, 1, 2, 3, 4])
def test_zero_to_four_fe_accepted(fe: int) -> None:
    raw = b"\xfe" * fe + frame(f"68 {ADDR_WIRE} 68 91 06 33 34 34 35 34 43")
    assert bcd.decode_value(codec.parse_read_reply(raw, ADDR, "02-01-01-00").data, "XXX.X") == 100.1


def test_five_fe_is_garbage() -> None:
    raw = b"\xfe" * 5 + frame(f"68 {ADDR_WIRE} 68 91 06 33 34 34 35 34 43")
    with pytest.raises(GarbageFrame):
        codec.decode_frame(raw)


def test_locate_frame_skips_noise_and_stray_68() -> None:
    good = h("FE FE") + frame(f"68 {ADDR_WIRE} 68 91 06 33 34 34 35 34 43")
    noisy = h("00 FF 68 01 02") + good
    where = codec.locate_frame(noisy)
    assert where is not None and where.end is not None
    assert noisy[where.start : where.end] == good and where.noise == 5
    assert codec.locate_frame(h("00 11 22")) is None
    partial = codec.locate_frame(good[:8])
    assert partial is not None and partial.end is None


# --- malformed input: always a typed error, never a value ----------------------------

GOOD = frame(f"68 {ADDR_WIRE} 68 91 06 33 34 34 35 34 43")  # 100.1 V, no preamble


def test_bad_checksum() -> None:
    raw = GOOD[:-2] + bytes([GOOD[-2] ^ 1]) + GOOD[-1:]
    with pytest.raises(CrcError):
        codec.parse_read_reply(raw, ADDR, "02-01-01-00")


def test_missing_end_byte() -> None:
    with pytest.raises(GarbageFrame):
        codec.parse_read_reply(GOOD[:-1] + b"\x00", ADDR, "02-01-01-00")
    with pytest.raises(ShortFrame):  # cut off before it
        codec.parse_read_reply(GOOD[:-1], ADDR, "02-01-01-00")


@pytest.mark.parametrize("n", range(len(GOOD)))
def test_truncated(n: int) -> None:
    with pytest.raises(ShortFrame):
        codec.parse_read_reply(GOOD[:n], ADDR, "02-01-01-00")


def test_wrong_length_byte() -> None:
    longer = bytearray(GOOD)
    longer[9] += 1  # claims one more data byte than there is
    with pytest.raises(ShortFrame):
        codec.decode_frame(bytes(longer))
    shorter = bytearray(GOOD)
    shorter[9] -= 1  # claims one fewer: the checksum sits where the 16 should
    with pytest.raises(GarbageFrame):
        codec.decode_frame(bytes(shorter))


def test_bytes_after_the_frame() -> None:
    with pytest.raises(GarbageFrame):
        codec.decode_frame(GOOD + b"\x00")


def test_not_a_frame() -> None:
    for raw in (h("00 68 12"), h("68 12 90 78 56 34 12 00 91 00 00 16")):
        with pytest.raises(GarbageFrame):
            codec.decode_frame(raw)


def test_non_bcd_value() -> None:
    raw = frame(f"68 {ADDR_WIRE} 68 91 06 33 34 34 35 3F 43")  # 0x0C is not BCD
    data = codec.parse_read_reply(raw, ADDR, "02-01-01-00").data
    with pytest.raises(DecodeError):
        bcd.decode_value(data, "XXX.X")
    with pytest.raises(DecodeError):  # meters answer FF.. for "no value" on some items
        bcd.decode_value(h("FF FF"), "XXX.X")


def test_value_length_must_match_format() -> None:
    with pytest.raises(ShortFrame):
        bcd.decode_value(h("01"), "XXX.X")
    with pytest.raises(DecodeError):
        bcd.decode_value(h("01 10 00"), "XXX.X")


def test_wrong_address_in_reply() -> None:
    with pytest.raises(codec.WrongReply) as info:
        codec.parse_read_reply(GOOD, "123456789013", "02-01-01-00")
    assert info.value.status == "garbage"  # a GarbageFrame to the reading


def test_wildcard_address_accepts_any_meter() -> None:
    assert codec.parse_read_reply(GOOD, "AAAAAAAAAAAA", "02-01-01-00").address == ADDR
    assert codec.parse_read_reply(GOOD, "AAAAAAAA9012", "02-01-01-00").address == ADDR
    with pytest.raises(codec.WrongReply):
        codec.parse_read_reply(GOOD, "AAAAAAAA9013", "02-01-01-00")


def test_di_mismatch() -> None:
    with pytest.raises(GarbageFrame):
        codec.parse_read_reply(GOOD, ADDR, "02-01-02-00")


def test_request_where_reply_due() -> None:
    with pytest.raises(GarbageFrame):
        codec.parse_read_reply(codec.read_request(ADDR, "02-01-01-00"), ADDR, "02-01-01-00")


def test_reply_to_another_function() -> None:
    with pytest.raises(GarbageFrame):
        codec.parse_read_reply(frame(f"68 {ADDR_WIRE} 68 94 00"), ADDR, "02-01-01-00")


def test_every_single_byte_corruption_raises() -> None:
    """Flip any bit of any byte of a valid reply: the result is an error, never a value."""
    raw = h("FE FE FE FE") + GOOD
    for i in range(len(raw)):
        for bit in range(8):
            bad = bytearray(raw)
            bad[i] ^= 1 << bit
            try:
                reply = codec.parse_read_reply(bytes(bad), ADDR, "02-01-01-00")
                value = bcd.decode_value(reply.data, "XXX.X")
            except DriverError:
                continue
            pytest.fail(f"byte {i} bit {bit} corrupted gave {value}")


# --- BCD values and identifiers ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fmt", "signed", "wire"),
    [
        (12345.67, "XXXXXX.XX", False, "67 45 23 01"),
        (230.1, "XXX.X", False, "01 23"),
        (12.345, "XXX.XXX", True, "45 23 01"),
        (-12.345, "XXX.XXX", True, "45 23 81"),
        (-0.987, "X.XXX", True, "87 89"),
        (50.02, "XX.XX", False, "02 50"),
        (-79.9999, "XX.XXXX", True, "99 99 F9"),
        (0, "XX.XX", True, "00 00"),
    ],
)
def test_bcd_round_trip(value: float, fmt: str, signed: bool, wire: str) -> None:
    assert bcd.encode_value(value, fmt, signed) == h(wire)
    assert bcd.decode_value(h(wire), fmt, signed) == value


def test_bcd_limits() -> None:
    assert bcd.value_limit("XXX.XXX", signed=True) == 799.999
    assert bcd.value_limit("XXX.XXX") == 999.999
    with pytest.raises(ValueError):
        bcd.encode_value(800, "XXX.XXX", True)
    with pytest.raises(ValueError):
        bcd.encode_value(-1, "XXX.X", False)
    with pytest.raises(ValueError):
        bcd.parse_format("XX.X")  # three digits: not whole bytes
    with pytest.raises(ValueError):
        bcd.parse_format("NN.NN")
    assert bcd.decode_value(h("12 34"), "XXXX") == 3412  # no decimals: an int


def test_addresses() -> None:
    assert codec.address_bytes("123456789012") == h("12 90 78 56 34 12")
    assert codec.address_bytes("161") == h("61 01 00 00 00 00")
    assert codec.address_bytes("AAAAAAAA9012") == h("12 90 AA AA AA AA")
    assert codec.address_text(h("12 90 78 56 34 12")) == "123456789012"
    for bad in ("", "1234567890123", "12345678901A", "12-34"):
        with pytest.raises(ValueError):
            codec.address_bytes(bad)


def test_data_identifiers() -> None:
    assert codec.parse_di("02-01-01-00") == codec.parse_di("02010100") == 0x02010100
    assert codec.di_bytes(0x02010100) == h("00 01 01 02")
    assert codec.di_text(0x02800002) == "02-80-00-02"
    for bad in ("02-01-01", "zz010100", "0201010000"):
        with pytest.raises(ValueError):
            codec.parse_di(bad)


def test_table_of_common_identifiers() -> None:
    assert bcd.item_layout("00-00-00-00") == ("XXXXXX.XX", True)
    assert bcd.item_layout("00-01-00-00") == ("XXXXXX.XX", False)
    assert bcd.item_layout("02-01-02-00") == ("XXX.X", False)
    assert bcd.item_layout("02-02-03-00") == ("XXX.XXX", True)
    assert bcd.item_layout("02-03-00-00") == ("XX.XXXX", True)
    assert bcd.item_layout("02-06-00-00") == ("X.XXX", True)
    assert bcd.item_layout("02-80-00-02") == ("XX.XX", False)
    assert bcd.item_layout("04-00-04-01", "XXXXXXXXXXXX") == ("XXXXXXXXXXXX", False)
    with pytest.raises(ValueError):
        bcd.item_layout("04-00-04-01")


def test_generic_profile_agrees_with_the_table() -> None:
    profile = resolve_profile("generic-dlt645-2007")
    assert profile.protocol == "dlt645" and profile.category == "energy"
    assert profile.serial is not None
    assert (profile.serial.baudrate, profile.serial.parity, profile.serial.stopbits) == (2400, "E", 1)
    assert set(profile.points) == {
        "energy_import", "energy_export", "voltage_l1", "voltage_l2", "voltage_l3",
        "current_l1", "current_l2", "current_l3", "active_power", "power_factor", "frequency"}
    for name, p in profile.points.items():
        assert p.di is not None and p.sim is not None, name
        item = bcd.KNOWN_ITEMS[codec.parse_di(p.di)]
        assert (p.format, p.signed) == (item.format, item.signed), name
        assert profile.unit_of(name) == item.unit, name
