"""Fast tests of three small parts the end-to-end tests lean on: the bus lock's order, the
RTU line's verdicts on raw bytes, and the refusal gate's probes."""

from __future__ import annotations

import asyncio

import pytest

from agent.uplinks.refusals import RefusalGate
from drivers.errors import CrcError, DriverError, GarbageFrame, ShortFrame
from drivers.modbus.buslock import BusLock
from drivers.modbus.planner import ReadRequest
from drivers.modbus.rtu_line import RtuLine
from drivers.modbus.wire import Expected, with_crc

# -- BusLock ------------------------------------------------------------------------------


async def _order(lock: BusLock, plan: list[tuple[str, bool, float]]) -> list[str]:
    """Each (name, low, start delay) acquires, records itself, holds briefly, releases."""
    served: list[str] = []

    async def user(name: str, low: bool, delay: float) -> None:
        await asyncio.sleep(delay)
        await lock.acquire(low=low)
        served.append(name)
        await asyncio.sleep(0.005)
        lock.release()

    await asyncio.gather(*(user(*p) for p in plan))
    return served


def test_bus_lock_serves_in_arrival_order_and_low_waiters_last() -> None:
    lock = BusLock(grace=0.01, promote_after=5.0)
    order = asyncio.run(_order(lock, [("a", False, 0), ("dead-slave", True, 0), ("b", False, 0.001),
                                      ("c", False, 0.002)]))
    assert order == ["a", "b", "c", "dead-slave"]
    assert not lock.locked()


def test_bus_lock_promotes_a_low_waiter_that_waited_long_enough() -> None:
    async def run() -> list[str]:
        lock = BusLock(grace=0.0, promote_after=0.02)
        await lock.acquire()
        served: list[str] = []

        async def user(name: str, low: bool) -> None:
            await lock.acquire(low=low)
            served.append(name)
            lock.release()

        tasks = [asyncio.create_task(user("low", True))]
        await asyncio.sleep(0.03)  # the low waiter has waited past promote_after
        tasks.append(asyncio.create_task(user("normal", False)))
        await asyncio.sleep(0)
        lock.release()
        await asyncio.gather(*tasks)
        return served

    assert asyncio.run(run()) == ["low", "normal"]


def test_bus_lock_passes_the_lock_on_when_a_waiter_is_cancelled() -> None:
    async def run() -> bool:
        lock = BusLock(grace=0.0)
        await lock.acquire()
        waiter = asyncio.create_task(lock.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        lock.release()
        await asyncio.wait_for(lock.acquire(), 1)  # not stuck behind the cancelled waiter
        return lock.locked()

    assert asyncio.run(run())


# -- RtuLine --------------------------------------------------------------------------------

REQ = ReadRequest("holding", 0, 2, ("a", "b"))  # unit 1: fc3 @0+2, answer: 01 03 04 .... CRC


def _exchange(chunks: list[bytes]) -> tuple[bytes, DriverError | None]:
    """Send REQ to unit 1 through an RtuLine, feed it ``chunks`` as received; what it hands
    pymodbus (the accepted frame, or b"") and its verdict."""

    async def run() -> tuple[bytes, DriverError | None]:
        line = RtuLine(quiet_gap=0.01, late_window=1.0)
        verdict: asyncio.Future[DriverError] = asyncio.get_running_loop().create_future()
        line.begin(Expected.of(1, REQ), verdict)
        line.trace(True, with_crc(bytes([1, 3, 0, 0, 0, 2])))
        handed = b""
        received = b""
        for chunk in chunks:
            received += chunk
            handed = line.trace(False, received) or handed
        await asyncio.sleep(0.05)  # the line falls quiet
        out = verdict.result() if verdict.done() else None
        if out is None and not handed:
            out = line.failure()
        line.end()
        return handed, out

    return asyncio.run(run())


GOOD = with_crc(bytes([1, 3, 4, 0, 10, 0, 20]))


def test_rtu_line_accepts_our_answer_even_in_pieces() -> None:
    assert _exchange([GOOD]) == (GOOD, None)
    assert _exchange([GOOD[:3], GOOD[3:]]) == (GOOD, None)


def test_rtu_line_gives_a_typed_verdict_never_a_frame_for_bad_bytes() -> None:
    bad_crc = GOOD[:-1] + bytes([GOOD[-1] ^ 0xFF])
    handed, verdict = _exchange([bad_crc])
    assert handed == b"" and isinstance(verdict, CrcError)
    handed, verdict = _exchange([GOOD[:5]])  # cut short, then silence
    assert handed == b"" and isinstance(verdict, ShortFrame)
    handed, verdict = _exchange([bytes([0x55, 0xAA, 0x13, 0x37, 0x42])])
    assert handed == b"" and isinstance(verdict, GarbageFrame)


def test_rtu_line_skips_a_frame_for_another_unit_and_takes_ours_after_it() -> None:
    other = with_crc(bytes([2, 3, 4, 0, 1, 0, 2]))
    assert _exchange([other + GOOD]) == (GOOD, None)


# -- RefusalGate -----------------------------------------------------------------------------

def test_refusal_gate_lets_one_probe_through_per_period_and_owes_a_rescan() -> None:
    gate = RefusalGate(retry=10.0)
    assert not gate and gate.allows("t", 0.0) and gate.next_due() is None
    gate.refused("t", 100.0)
    assert gate and not gate.allows("t", 105.0) and gate.allows("other", 105.0)
    assert gate.next_due() == pytest.approx(110.0)
    assert not gate.rescan_due(109.0) and gate.rescan_due(110.0)
    gate.rescan_started(110.0)
    assert gate.allows("t", 110.0)  # the probe
    assert not gate.allows("t", 110.0)  # only one
    gate.refused("t", 111.0)  # refused again: blocked for another period
    assert not gate.allows("t", 115.0) and gate.next_due() == pytest.approx(121.0)
    assert gate.allows("t", 121.0)  # a due probe goes without a rescan too
    assert gate.accepted("t")  # the probe got through: unblocked, and what it skipped is owed
    assert gate and gate.rescan_due(121.0) and gate.next_due() == 0.0
    gate.rescan_started(121.0)
    assert not gate and gate.allows("t", 121.0)


def test_refusal_gate_probes_every_blocked_topic_in_a_new_session() -> None:
    gate = RefusalGate(retry=600.0)
    gate.refused("a", 0.0)
    gate.refused("b", 0.0)
    gate.new_session()
    assert gate.rescan_due(1.0)
    gate.rescan_started(1.0)
    assert gate.allows("a", 1.0) and gate.allows("b", 1.0)
