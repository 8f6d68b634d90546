"""What a poll produces: one reading per device per poll, failed polls included."""

from __future__ import annotations

from dataclasses import dataclass, field

Value = int | float | bool | str


@dataclass(frozen=True, slots=True)
class Reading:
    """One poll of one device.

    ``ts`` is epoch milliseconds UTC of the poll's start. ``status`` is ``ok`` (every point
    good), ``partial`` (some points good: ``errors`` names each bad point and why), or names
    the poll's failure (``timeout``, ``crc_error``, ``exception_02``...), in which case
    ``values`` is empty: a failed poll is still a reading, so a platform can compute
    completeness. ``flags`` marks good values worth a second look (``over_range``).
    ``clock`` is None when ``ts`` is UTC; while the system clock is not known good it names
    the boot the reading was taken in, and ``ts`` is milliseconds since that boot.
    """

    device: str
    ts: int
    values: dict[str, Value] = field(default_factory=dict)
    status: str = "ok"
    errors: dict[str, str] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)
    clock: str | None = None


@dataclass(slots=True)
class Polled:
    """What one poll of a device read: the good values, each bad point's reason, and flags
    on good values. A device raises a DriverError instead when it read no value at all."""

    values: dict[str, Value] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "partial" if self.errors else "ok"

    def keep(self, name: str, value: Value, valid: tuple[float, float] | None) -> None:
        """A good value; outside the point's physically possible ``valid`` range it is kept, flagged."""
        self.values[name] = value
        if (valid is not None and isinstance(value, int | float) and not isinstance(value, bool)
                and not valid[0] <= value <= valid[1]):
            self.flags[name] = "over_range"
