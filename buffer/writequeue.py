"""What the threads hand the buffer's writer: readings, and these small typed requests.

A reading goes on the queue as the :class:`~drivers.reading.Reading` itself (the hot
path: one object per poll, nothing wrapped). Everything else is one of the requests
below; the writer takes them in order, so a state committed with :class:`MetaState`
never runs ahead of the readings queued before it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from drivers.reading import Reading

from .clockfix import ClockFix
from .uplinkbits import UplinkChange


@dataclass(frozen=True, slots=True)
class Acked:
    """An uplink (by bit) has a success acknowledgement for these seqs. ``counted``: each
    reading counts as delivered by the uplink now; an uplink that counts its deliveries
    itself (:class:`Delivered`) acknowledges with False."""

    bit: int
    seqs: list[int]
    counted: bool = True


@dataclass(frozen=True, slots=True)
class Delivered:
    """Readings an uplink has delivered, counted by the uplink itself (e.g. HJ 212: when the
    platform answers the packet they went into): ``(device, ts ms, readings, valid)`` rows,
    each counted for the local day of its ``ts``."""

    uplink: str
    rows: list[tuple[str, int, int, int]]


@dataclass(frozen=True, slots=True)
class EvictionsAnnounced:
    """An uplink (by bit) has announced these eviction records."""

    bit: int
    ids: list[int]


@dataclass(frozen=True, slots=True)
class SetAside:
    """An uplink will never deliver this reading (e.g. too large for its broker)."""

    bit: int
    uplink: str
    seq: int
    why: str


@dataclass(frozen=True, slots=True)
class MetaState:
    """A fact kept under meta ``key``, committed with the readings queued before it."""

    key: str
    state: str


@dataclass(frozen=True, slots=True)
class SyncPoint:
    """Someone waits until everything queued before this is committed."""

    token: int


@dataclass(frozen=True, slots=True)
class CorruptFound:
    """A reader found the file of this generation corrupt."""

    generation: int
    error: str


@dataclass(frozen=True, slots=True)
class HoldFromNow:
    """The clock is no longer known good: readings stamped from the boot clock stay held
    (a :class:`~buffer.clockfix.ClockFix` releases them)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Commit what is held and end the writer thread."""


Item = (Reading | Acked | EvictionsAnnounced | Delivered | SetAside | MetaState | SyncPoint | CorruptFound | Stop
        | UplinkChange | ClockFix | HoldFromNow)
# acknowledgements are committed sooner than readings: one lost in a crash is a duplicate later
ACK_ITEMS = (Acked, EvictionsAnnounced, Delivered)


class WriteQueue:
    """The writer's inbox (many producers, the writer thread the one consumer).

    A reading wakes the writer only while it holds nothing: once readings wait for their
    group commit the writer is *armed* (it wakes by itself at their deadline) and takes
    everything queued meanwhile in one go, so a steady load costs one wake-up per commit,
    not one per poll. Every other item wakes it at once: an acknowledgement shortens the
    deadline (unless the writer is already armed to wake soon enough), a sync point ends
    it, a stop ends the thread.
    """

    __slots__ = ("_items", "_wake", "armed", "deadline")

    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        self._wake = threading.Event()
        self.armed = False  # set and cleared by the writer only
        self.deadline = 0.0  # while armed: when the writer wakes by itself (time.monotonic)

    def put(self, item: Item) -> None:
        self._items.append(item)
        self._wake.set()

    def put_reading(self, reading: Reading) -> None:
        self._items.append(reading)  # deque.append is atomic: no lock on the poll path
        if not self.armed:
            self._wake.set()

    def put_ack(self, item: Item, within: float) -> None:
        """An acknowledgement, to be committed within ``within`` seconds: a burst of PUBACKs
        wakes the writer once, not once each."""
        self._items.append(item)
        if not (self.armed and self.deadline <= time.monotonic() + within):
            self._wake.set()

    def take(self) -> list[Item]:
        """Everything queued so far, in order (the writer only). Clears the wake-up first, so
        an item put after this returns wakes the next :meth:`wait`."""
        self._wake.clear()
        items = self._items
        return [items.popleft() for _ in range(len(items))]

    def wait(self, timeout: float | None) -> bool:
        """Sleep until woken or ``timeout`` seconds (None: until woken). True when woken."""
        return self._wake.wait(timeout)
