"""The data-type table and its decoder/encoder: every type, every byte and word order.

Expected words are written by hand from IEEE 754 and two's complement (or derived by the
swaps below, written independently of ``drivers.modbus.datatypes``), so these tests check the
decoder rather than restate it.
"""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.errors import DecodeError, DriverError, ShortFrame
from drivers.modbus.datatypes import BIT_TABLES, REGISTER_TABLES, TYPES, PointDecoder, decode, encode, register_count
from drivers.modbus.points import ModbusPoint as Point

ORDERS = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]
ORDER_IDS = ["ABCD", "CDAB", "BADC", "DCBA"]
NUMERIC = [name for name, t in TYPES.items() if t.struct_code is not None]


def arrange(words_abcd: list[int], byte_order: str, word_order: str) -> list[int]:
    """Registers a device with these orders sends for a value whose big-endian words are given."""
    words = list(words_abcd)
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


# value, its registers high word first with big-endian bytes (ABCD), written by hand
VECTORS: dict[str, list[tuple[int | float, list[int]]]] = {
    "uint16": [(0, [0x0000]), (0x1234, [0x1234]), (65535, [0xFFFF])],
    "int16": [(-1, [0xFFFF]), (-53, [0xFFCB]), (32767, [0x7FFF]), (-32768, [0x8000])],
    "uint32": [(0x12345678, [0x1234, 0x5678]), (123456, [0x0001, 0xE240]), (2**32 - 1, [0xFFFF, 0xFFFF])],
    "int32": [(-2, [0xFFFF, 0xFFFE]), (-123456, [0xFFFE, 0x1DC0]), (2**31 - 1, [0x7FFF, 0xFFFF])],
    "uint64": [(0x0123456789ABCDEF, [0x0123, 0x4567, 0x89AB, 0xCDEF]), (2**64 - 1, [0xFFFF] * 4)],
    "int64": [(-1, [0xFFFF] * 4), (-(2**63), [0x8000, 0, 0, 0]), (1, [0, 0, 0, 1])],
    "float32": [(230.0, [0x4366, 0x0000]), (-950.0, [0xC46D, 0x8000]), (0.96875, [0x3F78, 0x0000]),
                (45678.5, [0x4732, 0x6E80]), (0.0, [0x0000, 0x0000])],
    "float64": [(1.5, [0x3FF8, 0, 0, 0]), (-2.0, [0xC000, 0, 0, 0]), (230.1, [0x406C, 0xC333, 0x3333, 0x3333])],
}


def test_every_numeric_type_has_vectors() -> None:
    assert set(VECTORS) == set(NUMERIC)


def test_table_is_consistent() -> None:
    for name, t in TYPES.items():
        assert t.name == name
        if t.struct_code is not None:
            assert t.registers is not None and struct.calcsize(">" + t.struct_code) == 2 * t.registers
            assert t.numeric and t.tables == REGISTER_TABLES
        assert t.tables in (BIT_TABLES, REGISTER_TABLES)
    assert TYPES["bool"].tables == BIT_TABLES
    assert TYPES["string"].needs_length and TYPES["bit"].needs_bit
    assert register_count("float64") == 4 and register_count("string", 5) == 5
    with pytest.raises(ValueError):
        register_count("string")


@pytest.mark.parametrize(("byte_order", "word_order"), ORDERS, ids=ORDER_IDS)
@pytest.mark.parametrize("type_name", NUMERIC)
def test_decode_known_words(type_name: str, byte_order: str, word_order: str) -> None:
    for value, abcd in VECTORS[type_name]:
        words = arrange(abcd, byte_order, word_order)
        got = decode(words, type_name, byte_order=byte_order, word_order=word_order)  # type: ignore[arg-type]
        assert got == value, f"{type_name} {ORDER_IDS[ORDERS.index((byte_order, word_order))]} {words}"
        assert type(got) is (float if type_name.startswith("float") else int)


@pytest.mark.parametrize(("byte_order", "word_order"), ORDERS, ids=ORDER_IDS)
@pytest.mark.parametrize("type_name", NUMERIC)
def test_encode_known_words(type_name: str, byte_order: str, word_order: str) -> None:
    for value, abcd in VECTORS[type_name]:
        got = encode(value, type_name, byte_order=byte_order, word_order=word_order)  # type: ignore[arg-type]
        assert got == arrange(abcd, byte_order, word_order)


def test_four_orders_of_one_float_by_hand() -> None:
    """230.0 as four kinds of meter send it."""
    assert decode([0x4366, 0x0000], "float32") == 230.0
    assert decode([0x0000, 0x4366], "float32", word_order="little") == 230.0
    assert decode([0x6643, 0x0000], "float32", byte_order="little") == 230.0
    assert decode([0x0000, 0x6643], "float32", byte_order="little", word_order="little") == 230.0


def test_byte_order_applies_to_16_bit_types() -> None:
    assert decode([0x3412], "uint16", byte_order="little") == 0x1234
    assert decode([0xCBFF], "int16", byte_order="little") == -53
    # word order means nothing for one register
    assert decode([0xFFCB], "int16", word_order="little") == -53


# --- scale and offset -------------------------------------------------------------------


def test_scale_gives_what_the_device_meant() -> None:
    assert decode([253], "uint16", scale=0.1) == 25.3  # not 25.300000000000001
    assert decode([0xFFCB], "int16", scale=0.1) == -5.3
    assert decode([0x0001, 0xE240], "uint32", scale=0.01) == 1234.56
    assert decode([0x479C, 0x4000], "float32", scale=0.0001) == 8.0


def test_offset_is_added_after_scale() -> None:
    # a 4-20 mA style mapping: raw 100 × 0.5 - 40 = 10
    assert decode([100], "uint16", scale=0.5, offset=-40) == 10.0
    assert decode([0], "int16", offset=273.15) == 273.15


def test_unscaled_integers_stay_integers() -> None:
    value = decode([80], "uint16")
    assert value == 80 and isinstance(value, int)


def test_encode_inverts_scale_and_offset() -> None:
    assert encode(25.3, "uint16", scale=0.1) == [253]
    assert encode(-5.3, "int16", scale=0.1) == [0xFFCB]
    assert encode(10.0, "uint16", scale=0.5, offset=-40) == [100]
    assert encode(8.0, "float32", scale=0.0001) == [0x479C, 0x4000]


def test_encode_clamps_integers_to_their_range() -> None:
    assert encode(70000, "uint16") == [0xFFFF]
    assert encode(-5, "uint16") == [0x0000]
    assert encode(-40000, "int16") == [0x8000]


# --- bits, bools, strings ---------------------------------------------------------------


def test_bit_fields() -> None:
    word = 0b1000_0000_0000_1010
    assert [decode([word], "bit", bit=b) for b in (0, 1, 2, 3, 15)] == [False, True, False, True, True]
    assert encode(True, "bit", bit=3) == [0b1000]
    assert encode(False, "bit", bit=3) == [0]


def test_bools_from_bit_tables() -> None:
    assert decode([True], "bool") is True
    assert decode([False], "bool") is False
    assert decode([1], "bool") is True
    assert encode(True, "bool") == [1] and encode(False, "bool") == [0]


def test_strings() -> None:
    assert decode([0x5344, 0x4D36, 0x3330], "string", length=3) == "SDM630"
    assert decode([0x4142, 0x4300, 0x5858], "string", length=3) == "ABC"  # stops at NUL
    assert decode([0x2041, 0x4220], "string", length=2) == "AB"  # padding spaces stripped
    assert decode([0x4241, 0x4443], "string", length=2, byte_order="little") == "ABCD"
    assert decode([0x4344, 0x4142], "string", length=2, word_order="little") == "ABCD"
    assert encode("AB", "string", length=2) == [0x4142, 0x0000]
    assert encode("ABCDEF", "string", length=2) == [0x4142, 0x4344]  # cut to length


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(("words", "type_name", "status"), [
    ([0x7FC0, 0x0000], "float32", "nan"),  # quiet NaN
    ([0xFFC0, 0x0000], "float32", "nan"),  # negative NaN
    ([0x7F80, 0x0000], "float32", "inf"),  # +inf
    ([0xFF80, 0x0000], "float32", "inf"),  # -inf
    ([0x7FF8, 0, 0, 0], "float64", "nan"),
    ([0xFFFF, 0xFFFF], "float32", "nan"),  # what an unconfigured register often reads
])
def test_non_finite_floats_raise_decode_error(words: list[int], type_name: str, status: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(words, type_name)
    assert info.value.status == status
    assert isinstance(info.value, DriverError)


@pytest.mark.parametrize("type_name", list(TYPES))
def test_short_input_raises_short_frame(type_name: str) -> None:
    t = TYPES[type_name]
    kw: dict[str, Any] = {"length": 3} if t.needs_length else {}
    if t.needs_bit:
        kw["bit"] = 0
    n = register_count(type_name, kw.get("length"))
    with pytest.raises(ShortFrame) as info:
        decode([0] * (n - 1), type_name, **kw)
    assert info.value.status == "short_frame"


def test_extra_words_are_ignored() -> None:
    assert decode([0x4366, 0x0000, 0xDEAD], "float32") == 230.0


# --- round trips --------------------------------------------------------------------------


def _random_value(rng: random.Random, type_name: str) -> int | float:
    code = TYPES[type_name].struct_code
    assert code is not None
    if code in "fd":
        value = rng.uniform(-1e6, 1e6)
        return struct.unpack(">f", struct.pack(">f", value))[0] if code == "f" else value
    bits = 8 * struct.calcsize(code)
    return rng.randrange(0, 2**bits) if code.isupper() else rng.randrange(-(2 ** (bits - 1)), 2 ** (bits - 1))


@pytest.mark.parametrize(("byte_order", "word_order"), ORDERS, ids=ORDER_IDS)
@pytest.mark.parametrize("type_name", NUMERIC)
def test_round_trip(type_name: str, byte_order: str, word_order: str) -> None:
    rng = random.Random(f"{type_name}{byte_order}{word_order}")
    kw: dict[str, Any] = {"byte_order": byte_order, "word_order": word_order}
    for _ in range(200):
        value = _random_value(rng, type_name)
        words = encode(value, type_name, **kw)
        assert len(words) == register_count(type_name) and all(0 <= w <= 0xFFFF for w in words)
        got = decode(words, type_name, **kw)
        if type_name == "float32":  # published as the shortest decimal that is the same float32
            assert struct.pack(">f", got) == struct.pack(">f", value) and len(repr(got)) <= len(repr(value))
        else:
            assert got == value


@pytest.mark.parametrize("type_name", ["uint16", "int16", "uint32", "int32", "float32"])
def test_round_trip_with_scale(type_name: str) -> None:
    rng = random.Random(type_name)
    for _ in range(200):
        raw = rng.randrange(0, 30000)
        value = round(raw * 0.1 - (100 if TYPES[type_name].struct_code in "hif" else 0), 1)
        words = encode(value, type_name, scale=0.1, offset=0)
        assert math.isclose(decode(words, type_name, scale=0.1), value, abs_tol=1e-9)


def test_round_trip_strings_and_bits() -> None:
    for text in ("", "A", "SDM630", "DTSU666-H"):
        for bo, wo in ORDERS:
            words = encode(text, "string", length=5, byte_order=bo, word_order=wo)  # type: ignore[arg-type]
            assert decode(words, "string", length=5, byte_order=bo, word_order=wo) == text  # type: ignore[arg-type]
    for b in range(16):
        assert decode(encode(True, "bit", bit=b), "bit", bit=b) is True


# --- validation derives from the table ------------------------------------------------------


@pytest.mark.parametrize(("fields", "message"), [
    ({"table": "holding", "address": 0, "type": "float23"}, "unknown type 'float23'; did you mean 'float32'"),
    ({"table": "coil", "address": 0, "type": "float32"}, "cannot be read from table coil"),
    ({"table": "holding", "address": 0, "type": "bool"}, "cannot be read from table holding"),
    ({"table": "holding", "address": 0, "type": "string"}, "needs 'length'"),
    ({"table": "holding", "address": 0, "type": "bit"}, "needs 'bit'"),
    ({"table": "coil", "address": 0, "type": "bool", "scale": 0.1}, "takes no scale"),
    ({"table": "holding", "address": 0xFFFF, "type": "float32"}, "runs past register 65535"),
])
def test_point_validation_follows_the_table(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Point(**fields)


def test_point_defaults_follow_the_table() -> None:
    assert Point(table="coil", address=3).type_name == "bool"
    assert Point(table="input", address=3).type_name == "uint16"
    assert Point(table="holding", address=3, type="float64").registers == 4


@pytest.mark.parametrize(("words", "type_name", "kw", "published"), [
    (list(struct.unpack(">HH", struct.pack(">f", 229.484))), "float32", {}, "229.484"),  # not 229.4840087890625
    (list(struct.unpack(">HH", struct.pack(">f", 0.1))), "float32", {}, "0.1"),
    (list(struct.unpack(">HH", struct.pack(">f", 1e-7))), "float32", {}, "1e-07"),
    (list(struct.unpack(">HH", struct.pack(">f", 229.484))), "float32", {"decimals": 1}, "229.5"),
    ([253], "int16", {"scale": 0.1}, "25.3"),  # one decimal: 0.1 gives no more
    ([12345], "uint16", {"scale": 0.01}, "123.45"),
    ([1], "uint16", {"scale": 0.001}, "0.001"),
    ([7], "uint16", {"scale": 0.25}, "1.75"),
    ([3], "uint16", {"scale": 10}, "30"),
    ([12345], "uint16", {"scale": 0.01, "decimals": 0}, "123"),
])
def test_values_carry_no_more_precision_than_the_register(words: list[int], type_name: str, kw: dict[str, Any],
                                                          published: str) -> None:
    assert json.dumps(PointDecoder(type_name, **kw)(words)) == published


def test_an_invalid_raw_value_is_an_error_not_a_value() -> None:
    sentinel = PointDecoder("int16", scale=0.1, invalid=frozenset({0x7FFF, 0x8000}))
    assert sentinel([0x0100]) == 25.6
    for raw in (0x7FFF, 0x8000):
        with pytest.raises(DriverError) as info:
            sentinel([raw])
        assert info.value.status == "invalid"
