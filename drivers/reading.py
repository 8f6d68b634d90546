"""What a poll produces: one reading per device per poll, failed polls included."""

from __future__ import annotations

from dataclasses import dataclass, field

Value = int | float | bool | str


@dataclass(frozen=True, slots=True)
class Reading:
    """One poll of one device.

    ``ts`` is epoch milliseconds UTC of the poll's start. ``status`` is ``ok`` or names the
    failure (``timeout``, ``crc_error``, ``exception_02``...), in which case ``values`` is
    empty: a failed poll is still a reading, so a platform can compute completeness.
    """

    device: str
    ts: int
    values: dict[str, Value] = field(default_factory=dict)
    status: str = "ok"
