"""DL/T 645 over a real serial line: DLT645Device on one end of a pty pair, the simulated
meters on the other. Values must be what the simulator served; faults must come back as
typed errors, and never as a wrong value."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from drivers.catalog import resolve_profile
from drivers.dlt645 import bcd
from drivers.dlt645.bus import DLT645Bus, DLT645Device
from drivers.dlt645.points import DLT645Profile as Profile
from drivers.dlt645.simulator import DLT645Simulator, SimMeter
from drivers.errors import (
    BusUnavailable,
    CrcError,
    DriverError,
    ExceptionResponse,
    GarbageFrame,
    NoResponse,
    ShortFrame,
)
from drivers.simulator.pty import PtyPair
from tests.helpers import read_all

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat makes the pty pair")

ADDR = "123456789012"
ADDR2 = "000000000161"


@pytest.fixture
def pty() -> Iterator[PtyPair]:
    with PtyPair() as pair:
        yield pair


@pytest.fixture
def generic() -> Profile:
    return resolve_profile("generic-dlt645-2007")


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro
    return asyncio.run(main())


FAST = 115200  # a pty does not pace bytes: timing tests keep the wire-time allowance small


def make_bus(pty: PtyPair, **kw: Any) -> DLT645Bus:
    kw.setdefault("inter_frame_delay", 0)
    kw.setdefault("timeout", 0.2)
    return DLT645Bus("line-1", pty.agent_end, **kw)


def on_line(pty: PtyPair, meters: list[SimMeter], body: Callable[[DLT645Bus], Awaitable[Any]],
            sim_options: dict[str, Any] | None = None, **bus_options: Any) -> Any:
    """Run ``body(bus)`` with ``meters`` served on the device end of the pty."""
    async def main() -> Any:
        async with DLT645Simulator(pty.device_end, meters, **(sim_options or {})):
            bus = make_bus(pty, **bus_options)
            try:
                return await body(bus)
            finally:
                await bus.close()
    return asyncio.run(main())


def profile(points: dict[str, Any]) -> Profile:
    return Profile.model_validate({"name": "test-meter", "vendor": "Test", "model": "T",
                                   "protocol": "dlt645", "points": points})


# --- values end to end ---------------------------------------------------------------


def test_device_reads_what_the_meter_served(pty: PtyPair, generic: Profile) -> None:
    meter = SimMeter(ADDR, generic)

    async def body(bus: DLT645Bus) -> None:
        device = DLT645Device(bus, ADDR, generic)
        for _ in range(5):
            values = await read_all(device)
            assert values == meter.served
            assert set(values) == set(generic.points)
        assert bus.stats.transactions == 5 * len(generic.points)
        assert bus.stats.errors == 0
        assert await bus.read_address() == ADDR

    on_line(pty, [meter], body)


def test_negative_values_end_to_end(pty: PtyPair) -> None:
    p = profile({
        "current_l1": {"di": "02-02-01-00", "format": "XXX.XXX", "signed": True,
                       "sim": {"pattern": "constant", "value": -12.345}},
        "active_power": {"di": "02-03-00-00", "format": "XX.XXXX", "signed": True,
                         "sim": {"pattern": "constant", "value": -7.5}},
        "power_factor": {"di": "02-06-00-00", "sim": {"pattern": "constant", "value": -0.87}},
        "energy_net": {"di": "00-00-00-00", "unit": "kWh",
                       "sim": {"pattern": "constant", "value": -1234.56}},
    })
    meter = SimMeter(ADDR, p)

    async def body(bus: DLT645Bus) -> dict[str, Any]:
        return await read_all(DLT645Device(bus, ADDR, p))

    # power_factor and energy_net take format and sign from the table of identifiers
    assert on_line(pty, [meter], body) == {"current_l1": -12.345, "active_power": -7.5,
                                           "power_factor": -0.87, "energy_net": -1234.56}


def test_scale_applies_after_bcd(pty: PtyPair) -> None:
    # a meter behind 100/5 current transformers reports secondary amps: scale 20
    p = profile({"current_l1": {"di": "02-02-01-00", "scale": 20,
                                "sim": {"pattern": "constant", "value": 61.5}}})
    meter = SimMeter(ADDR, p)

    async def body(bus: DLT645Bus) -> dict[str, Any]:
        return await read_all(DLT645Device(bus, ADDR, p))

    assert on_line(pty, [meter], body) == {"current_l1": 61.5}
    assert meter.served == {"current_l1": 61.5}


def test_two_meters_on_one_line(pty: PtyPair, generic: Profile) -> None:
    a, b = SimMeter(ADDR, generic, seed=1), SimMeter(ADDR2, generic, seed=2)

    async def body(bus: DLT645Bus) -> None:
        da, db = DLT645Device(bus, ADDR, generic), DLT645Device(bus, ADDR2, generic)
        for _ in range(3):
            va, vb = await asyncio.gather(read_all(da), read_all(db))  # the lock serialises them
            assert va == a.served and vb == b.served
        assert a.requests == b.requests == 3 * len(generic.points)

    on_line(pty, [a, b], body)


def test_follow_on_frames(pty: PtyPair, generic: Profile) -> None:
    meter = SimMeter(ADDR, generic, chunk=1)  # every value byte in its own frame

    async def body(bus: DLT645Bus) -> None:
        values = await read_all(DLT645Device(bus, ADDR, generic))
        assert values == meter.served
        sizes = sum(bcd.parse_format(p.format or "").size for p in generic.points.values())
        assert bus.stats.transactions == sizes  # one 0x11 and then 0x12 per further byte

    on_line(pty, [meter], body)


def test_adapter_echo_is_skipped(pty: PtyPair, generic: Profile) -> None:
    meter = SimMeter(ADDR, generic)

    async def body(bus: DLT645Bus) -> None:
        assert await read_all(DLT645Device(bus, ADDR, generic)) == meter.served

    on_line(pty, [meter], body, sim_options={"echo": True})


def test_wire_time_at_2400_baud(pty: PtyPair, generic: Profile) -> None:
    """With replies paced like a real 2400-baud line, a short timeout still holds: it runs
    from the end of the request on the wire and stretches by the reply's wire time."""
    meter = SimMeter(ADDR, generic)

    async def body(bus: DLT645Bus) -> float:
        started = time.monotonic()
        assert await bus.read(ADDR, "00-01-00-00")
        return time.monotonic() - started

    # request 20 bytes on the wire + reply 24 bytes at 11 bits / 2400 baud ≈ 0.2 s
    elapsed = on_line(pty, [meter], body, sim_options={"emulate_wire_time": True},
                      timeout=0.05, retries=0)
    assert elapsed > 0.1


# --- faults --------------------------------------------------------------------------


def fails_with(pty: PtyPair, meter: SimMeter, exc: type[DriverError], **bus: Any) -> DriverError:
    async def body(b: DLT645Bus) -> DriverError:
        with pytest.raises(exc) as info:
            await b.read(ADDR, "02-01-01-00")
        return info.value

    return on_line(pty, [meter], body, **bus)


def test_error_reply(pty: PtyPair, generic: Profile) -> None:
    meter = SimMeter(ADDR, generic, fault="error", error_code=0x04)
    err = fails_with(pty, meter, ExceptionResponse)
    assert err.status == "exception_04"
    assert meter.requests == 1  # an error reply is an answer: no retry


def test_unknown_identifier_is_error_02(pty: PtyPair, generic: Profile) -> None:
    async def body(bus: DLT645Bus) -> None:
        with pytest.raises(ExceptionResponse) as info:
            await bus.read(ADDR, "04-00-04-01")
        assert info.value.code == 0x02

    on_line(pty, [SimMeter(ADDR, generic)], body)


def test_dead_meter_times_out_after_retries(pty: PtyPair, generic: Profile) -> None:
    meter = SimMeter(ADDR, generic, fault="dead")
    started = time.monotonic()
    err = fails_with(pty, meter, NoResponse, timeout=0.05, retries=2, baudrate=FAST)
    assert err.status == "timeout"
    assert meter.requests == 3
    assert time.monotonic() - started < 2


def test_no_meter_at_that_address(pty: PtyPair, generic: Profile) -> None:
    async def body(bus: DLT645Bus) -> None:
        with pytest.raises(NoResponse):
            await bus.read("999999999998", "02-01-01-00")

    on_line(pty, [SimMeter(ADDR, generic)], body, timeout=0.05)


@pytest.mark.parametrize(("fault", "exc"), [("bad_checksum", CrcError),
                                            ("garbage", GarbageFrame),
                                            ("short", ShortFrame)])
def test_corrupt_replies(pty: PtyPair, generic: Profile, fault: str,
                         exc: type[DriverError]) -> None:
    meter = SimMeter(ADDR, generic, fault=fault)  # type: ignore[arg-type]
    fails_with(pty, meter, exc, timeout=0.05, baudrate=FAST)
    assert meter.requests == 2  # retried once


def test_late_reply_is_not_taken_for_the_next_answer(pty: PtyPair, generic: Profile) -> None:
    meter = SimMeter(ADDR, generic, fault="slow", slow_seconds=0.2)

    async def body(bus: DLT645Bus) -> None:
        with pytest.raises(NoResponse):
            await bus.read(ADDR, "02-01-01-00")
        meter.fault = "none"
        # the voltage_l1 reply lands while we wait for voltage_l2: skipped, not decoded
        data = await bus.read(ADDR, "02-01-02-00")
        assert bcd.decode_value(data, "XXX.X") == meter.served["voltage_l2"]

    on_line(pty, [meter], body, timeout=0.15, retries=0, baudrate=FAST)


def test_missing_port_is_bus_unavailable() -> None:
    async def body() -> None:
        bus = DLT645Bus("nowhere", "/dev/does-not-exist-dlt645")
        for _ in range(2):  # the second try is throttled, still typed
            with pytest.raises(BusUnavailable):
                await bus.read(ADDR, "02-01-01-00")
        assert not bus.connected

    run(body())


def test_lost_port_is_bus_unavailable(generic: Profile) -> None:
    pair = PtyPair()

    async def body() -> None:
        bus = DLT645Bus("line-1", pair.agent_end, timeout=0.1, inter_frame_delay=0)
        async with DLT645Simulator(pair.device_end, [SimMeter(ADDR, generic)]):
            assert await bus.read(ADDR, "02-01-01-00")
            pair.close()  # the USB adapter is pulled
            await asyncio.sleep(0.1)
            with pytest.raises((BusUnavailable, NoResponse)):
                await bus.read(ADDR, "02-01-01-00")
            with pytest.raises(BusUnavailable):
                await bus.read(ADDR, "02-01-01-00")
        await bus.close()

    try:
        run(body())
    finally:
        pair.close()


def test_device_checks_its_profile(generic: Profile) -> None:
    bus = DLT645Bus("line-1", "/dev/null")
    with pytest.raises(ValueError):
        DLT645Device(bus, "12345678901X", generic)
    modbus = resolve_profile("eastron-sdm630")
    with pytest.raises(ValueError):
        DLT645Device(bus, ADDR, modbus)
    unknown = profile({"temperature": {"di": "04-00-04-01"}})  # no format, not in the table
    with pytest.raises(ValueError):
        DLT645Device(bus, ADDR, unknown)


# --- many polls through many faults: zero wrong values --------------------------------

# Ranges that do not overlap, so a value landing on the wrong point could not pass.
SOAK = {
    "energy_net": {"di": "00-00-00-00", "unit": "kWh",
                   "sim": {"pattern": "walk", "base": -500, "min": -900, "max": -100, "step": 5}},
    "voltage_l1": {"di": "02-01-01-00", "sim": {"pattern": "walk", "base": 230, "min": 221,
                                                 "max": 239, "step": 0.5}},
    "current_l1": {"di": "02-02-01-00", "sim": {"pattern": "walk", "base": -20, "min": -30,
                                                 "max": -10, "step": 0.2}},
    "active_power": {"di": "02-03-00-00", "sim": {"pattern": "walk", "base": 5, "min": 1,
                                                   "max": 9, "step": 0.1}},
}
RANGES = {"energy_net": (-900, -100), "voltage_l1": (221, 239), "current_l1": (-30, -10),
          "active_power": (1, 9)}


@pytest.mark.slow
def test_thousands_of_polls_through_faults_give_no_wrong_value(pty: PtyPair) -> None:
    p = profile(SOAK)
    meter = SimMeter(ADDR, p, seed=7, slow_seconds=0.03,
                     faults={"bad_checksum": 0.03, "garbage": 0.02, "short": 0.01,
                             "dead": 0.01, "error": 0.005, "slow": 0.005})
    polls = 1500
    point_errors: Counter[str] = Counter()

    async def body(bus: DLT645Bus) -> Counter[str]:
        device = DLT645Device(bus, ADDR, p)
        outcomes: Counter[str] = Counter()
        for _ in range(polls):
            try:
                polled = await device.read()
            except DriverError as exc:
                outcomes[exc.status] += 1
                continue
            outcomes[polled.status] += 1  # ok, or partial: the bad points named, the rest kept
            point_errors.update(polled.errors.values())
            assert set(polled.values) | set(polled.errors) == set(SOAK)
            for name, value in polled.values.items():
                lo, hi = RANGES[name]
                assert isinstance(value, int | float) and lo <= value <= hi, (name, value)
                assert value in meter.history[name], (name, value)
        return outcomes

    started = time.monotonic()
    outcomes = on_line(pty, [meter], body, timeout=0.02, retries=1, baudrate=FAST)
    assert sum(outcomes.values()) == polls
    assert outcomes["ok"] > polls * 0.8, outcomes
    # error replies reach the reading
    assert outcomes["exception_02"] + point_errors["exception_02"] > 0, (outcomes, point_errors)
    assert time.monotonic() - started < 20
