"""The buffer writer's inbox: who wakes the writer and who waits for its deadline.

A steady poll load must not wake the writer once per reading, and a burst of PUBACKs must
not wake it once per acknowledgement; everything else wakes it at once, and nothing put
is ever lost between a take and the next wait.
"""

from __future__ import annotations

import threading
import time

from buffer.writequeue import Acked, Stop, SyncPoint, WriteQueue
from drivers.reading import Reading


def reading(seq: int) -> Reading:
    return Reading(device="dev-1", ts=1_700_000_000_000 + seq, status="ok", values={"v": seq})


def test_readings_wake_an_idle_writer_but_not_an_armed_one() -> None:
    q = WriteQueue()
    q.put_reading(reading(1))
    assert q.wait(0) is True
    assert q.take() == [reading(1)]
    assert q.wait(0) is False  # take clears the wake-up
    q.deadline, q.armed = time.monotonic() + 0.25, True
    q.put_reading(reading(2))
    q.put_reading(reading(3))
    assert q.wait(0) is False  # held for the group commit: no wake-up per reading
    assert q.take() == [reading(2), reading(3)]  # ... and nothing is lost


def test_an_acknowledgement_wakes_the_writer_only_when_it_needs_an_earlier_commit() -> None:
    q = WriteQueue()
    q.deadline, q.armed = time.monotonic() + 0.25, True  # readings due in 250 ms
    q.put_ack(Acked(0, [1]), within=0.03)
    assert q.wait(0) is True  # must be committed within 30 ms: the writer shortens its deadline
    q.take()
    q.deadline = time.monotonic() + 0.02  # now due within 30 ms anyway
    q.put_ack(Acked(0, [2]), within=0.03)
    assert q.wait(0) is False
    assert q.take() == [Acked(0, [2])]
    q.armed = False
    q.put_ack(Acked(0, [3]), within=0.03)
    assert q.wait(0) is True  # an idle writer always wakes


def test_other_requests_always_wake_the_writer() -> None:
    q = WriteQueue()
    q.deadline, q.armed = time.monotonic() + 0.25, True
    for item in (SyncPoint(1), Stop()):
        q.put(item)
        assert q.wait(0) is True
        assert q.take() == [item]


def test_an_item_put_between_take_and_wait_is_not_slept_through() -> None:
    q = WriteQueue()
    got: list[object] = []
    ready = threading.Event()

    def writer() -> None:
        while True:
            got.extend(q.take())
            ready.set()
            if len(got) >= 200:
                return
            q.wait(5.0)

    t = threading.Thread(target=writer)
    t.start()
    ready.wait(5)
    t0 = time.monotonic()
    for i in range(200):
        q.put_reading(reading(i))
    t.join(timeout=10)
    assert not t.is_alive()
    assert got == [reading(i) for i in range(200)]
    assert time.monotonic() - t0 < 4.0  # never waited out a 5 s timeout with items queued
