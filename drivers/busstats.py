"""Counters of one bus, shared by every protocol's bus (Modbus, DL/T 645)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class BusStats:
    """Transactions (frames put on the wire), failed ones, time the bus was held."""

    transactions: int = 0  # attempts put on the wire
    errors: int = 0  # failed attempts
    busy_seconds: float = 0.0  # time the bus was held, inter-frame delays included
    by_status: Counter[str] = field(default_factory=Counter)  # failed attempts by status
    by_unit: Counter[tuple[int, str]] = field(default_factory=Counter)  # failed attempts by (unit, status)
