"""Writable profile points: the register write a value implies, encoded through the same
data-type table as reads, and every value that must not reach a device refused with a reason."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from drivers.catalog import load_profile_file, resolve_profile
from drivers.modbus.datatypes import TYPES, decode
from drivers.modbus.points import ModbusProfile as Profile
from drivers.modbus.writes import RegisterWrite, WriteRefused, plan_write
from drivers.yamlsource import SourceError

LAMP = "generic-smart-pole-lamp-controller"


def lamp() -> Profile:
    return resolve_profile(LAMP)


def one_point(point: dict[str, object], **profile: object) -> Profile:
    return Profile.model_validate({"name": "t", "vendor": "v", "model": "m", **profile,
                                   "points": {"dim_level": point}})


def test_lamp_controller_dim_level_is_fc06_and_relay_fc05() -> None:
    dim = plan_write(lamp(), "dim_level", 60)
    assert dim == RegisterWrite("dim_level", 60, 6, 0x0000, registers=(60,))
    assert dim.describe(unit=5) == "FC06 write single register unit 5 address 0x0000: [0x003C]"
    relay = plan_write(lamp(), "lamp_on", False)
    assert (relay.function, relay.address, relay.coil) == (5, 0, False)
    assert relay.describe() == "FC05 write single coil address 0x0000: OFF (0x0000)"


@pytest.mark.parametrize(("point", "value", "reason"), [
    ("dim_level", 101, "dim_level=101 is above the maximum 100"),
    ("dim_level", -1, "dim_level=-1 is below the minimum 0"),
    ("dim_level", "60", "dim_level takes a number, not '60'"),
    ("dim_level", True, "dim_level takes a number, not True"),
    ("lamp_on", "on", "lamp_on takes true or false, not 'on'"),
    ("lamp_fault", True, "point 'lamp_fault' is not writable"),
    ("voltage_l1", 230, "point 'voltage_l1' is not writable"),
    ("dimm_level", 5, "has no point 'dimm_level'"),
])
def test_lamp_controller_refuses(point: str, value: object, reason: str) -> None:
    with pytest.raises(WriteRefused, match=reason.replace("(", r"\(")):
        plan_write(lamp(), point, value)


NUMERIC = [t.name for t in TYPES.values() if t.numeric]


@pytest.mark.parametrize(("type_name", "byte_order", "word_order", "scale"),
                         list(itertools.product(NUMERIC, ["big", "little"], ["big", "little"], [1.0, 0.1])))
def test_every_numeric_type_round_trips_through_the_decoder(type_name: str, byte_order: str, word_order: str,
                                                            scale: float) -> None:
    signed = not TYPES[type_name].struct_code.isupper()  # type: ignore[union-attr]
    values = [0, 12.5 if scale == 0.1 else 125, -30 if signed else 30, 100 if scale == 1 else 3276.7]
    profile = one_point({"table": "holding", "address": 10, "type": type_name, "scale": scale, "offset": 0,
                         "writable": True, "min": -1000, "max": 10000},
                        byte_order=byte_order, word_order=word_order)
    for value in values:
        w = plan_write(profile, "dim_level", value)
        assert w.function == (6 if TYPES[type_name].registers == 1 else 16)
        back = decode(list(w.registers), type_name, byte_order=byte_order,  # type: ignore[arg-type]
                      word_order=word_order, scale=scale)  # type: ignore[arg-type]
        assert back == pytest.approx(value, rel=1e-6), (type_name, value, w)


@pytest.mark.parametrize("value", [True, False, 1, 0])
def test_a_coil_round_trips_through_the_decoder(value: bool | int) -> None:
    w = plan_write(lamp(), "lamp_on", value)
    assert w.coil is not None and decode([w.coil], "bool") is bool(value)


def test_offset_and_scale_are_inverted() -> None:
    profile = one_point({"table": "holding", "address": 0, "type": "int16", "scale": 0.5, "offset": -40,
                         "writable": True, "min": -40, "max": 100})
    assert plan_write(profile, "dim_level", 20).registers == (120,)


@pytest.mark.parametrize(("point", "value", "reason"), [
    ({"type": "uint16", "scale": 0.1, "min": 0, "max": 100}, 25.35,
     "dim_level=25.35 cannot be encoded exactly as uint16 (steps of 0.1): it would read back as 25.4"),
    ({"type": "uint16", "min": 0, "max": 100}, 2.5, "cannot be encoded exactly as uint16"),
    ({"type": "int16", "min": 0, "max": 100000}, 40000,
     "does not fit a int16 register (raw 40000, range -32768..32767)"),
    ({"type": "uint16", "values": [0, 50, 100]}, 60, r"dim_level=60 is not one of the allowed values \[0, 50, 100\]"),
    ({"type": "float32", "min": 0, "max": 1e40}, 1e39, "does not fit a float32"),
])
def test_values_that_do_not_encode_are_refused(point: dict[str, object], value: float, reason: str) -> None:
    profile = one_point({"table": "holding", "address": 0, "writable": True, **point})
    with pytest.raises(WriteRefused, match=reason.replace("(", r"\(").replace(")", r"\)")
                       if "[" not in reason else reason):
        plan_write(profile, "dim_level", value)


def test_write_function_from_the_profile() -> None:
    fc16 = one_point({"table": "holding", "address": 3, "type": "uint16", "writable": True, "min": 0, "max": 100,
                      "write_function": 16})
    assert plan_write(fc16, "dim_level", 7).function == 16


def _write_profile(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text("name: t\nvendor: v\nmodel: m\n" + body, encoding="utf-8")
    return path


@pytest.mark.parametrize(("body", "line", "message"), [
    ("protocol: dlt645\npoints:\n  energy_import: {di: 00-01-00-00, format: XXXXXX.XX, writable: true}\n", 6,
     "DL/T 645 points cannot be writable"),
    ("points:\n  dim_level: {table: input, address: 0, writable: true, min: 0, max: 1}\n", 5,
     "table input is read-only"),
    ("points:\n  dim_level: {table: holding, address: 0, writable: true}\n", 5,
     "a writable number needs 'min' and 'max', or a 'values' list"),
    ("points:\n  dim_level: {table: holding, address: 0, type: uint32, writable: true, min: 0, max: 1,"
     " write_function: 6}\n", 5, "write_function 6 writes one register"),
    ("points:\n  dim_level: {table: holding, address: 0, max: 3}\n", 5, "need 'writable: true'"),
])
def test_profile_write_options_are_checked_with_file_and_line(tmp_path: Path, body: str, line: int,
                                                               message: str) -> None:
    path = _write_profile(tmp_path, body)
    with pytest.raises(SourceError) as err:
        load_profile_file(path)
    text = str(err.value)
    assert f"{path}:{line}: points." in text and message in text, text


def test_a_dlt645_profile_refuses_a_write() -> None:
    with pytest.raises(WriteRefused, match="generic-dlt645-2007 is a dlt645 device: writes are Modbus only"):
        plan_write(resolve_profile("generic-dlt645-2007"), "energy_import", 1)
