"""Reconnecting with back-off, shared by every uplink type: the settings and the delay.

After a lost connection (or a failed attempt) an uplink waits ``backoff_delay`` before the
next one: exponential from ``reconnect_min`` to ``reconnect_max``, with jitter.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from ..units import Duration

SHORTEST, LONGEST = 0.1, 86400.0  # a reconnect delay: faster hammers the server, slower is a dead uplink


class Reconnect(BaseModel):
    """The reconnect settings of an uplink (mixed into each uplink type's model)."""

    reconnect_min: Duration = Field(1.0, description="first reconnect delay (exponential, with jitter)")
    reconnect_max: Duration = Field(60.0, description="longest reconnect delay")

    @field_validator("reconnect_min", "reconnect_max")
    @classmethod
    def _in_range(cls, value: float, info: ValidationInfo) -> float:
        if not SHORTEST <= value <= LONGEST:
            raise ValueError(f"{info.field_name} must be between 100ms and 1 day (24h)")
        return value

    def _check_reconnect(self) -> None:
        """For the model's own validator: the delays in order."""
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min must not be above reconnect_max")


def backoff_delay(attempt: int, lo: float, hi: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential back-off with jitter: in [cap/2, cap], cap = min(hi, lo * 2**attempt).

    The jitter keeps a fleet of gateways from reconnecting in step after a broker restart.
    """
    cap = min(hi, lo * 2 ** min(attempt, 30))
    return cap / 2 + rand() * cap / 2
