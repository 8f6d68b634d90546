"""What the threads hand the buffer's writer: readings, and these small typed requests.

A reading goes on the queue as the :class:`~drivers.reading.Reading` itself (the hot
path: one object per poll, nothing wrapped). Everything else is one of the requests
below; the writer takes them in order, so a state committed with :class:`MetaState`
never runs ahead of the readings queued before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.reading import Reading


@dataclass(frozen=True, slots=True)
class Acked:
    """An uplink (by bit) has a success acknowledgement for these seqs."""

    bit: int
    seqs: list[int]


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
class Stop:
    """Commit what is held and end the writer thread."""


Item = Reading | Acked | EvictionsAnnounced | SetAside | MetaState | SyncPoint | CorruptFound | Stop
# acknowledgements are committed sooner than readings: one lost in a crash is a duplicate later
ACK_ITEMS = (Acked, EvictionsAnnounced)
