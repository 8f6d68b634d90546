"""Device profiles: what every protocol's profile has, validated with line-located errors.

A profile describes one device model: its protocol, serial defaults and points. Each
protocol's folder holds its own point and profile models (``drivers/modbus/points.py``,
``drivers/dlt645/points.py``), so a key that means nothing to a protocol is an error. The
simulator reads the optional ``sim:`` block of each point to serve plausible values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .vocabulary import VOCABULARY, unit_of
from .yamlsource import did_you_mean


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimSpec(Strict):
    """How the simulator makes a point's value move.

    - ``daily``: ``base`` plus ``amplitude`` through a 24 h cycle (peak at ``peak_hour``),
      with ``noise``;
    - ``walk``: a bounded random walk between ``min`` and ``max`` by ``step``;
    - ``counter``: grows by ``rate`` per hour, never falls (energy, rain totals);
    - ``storm``: rain cycles of ``period`` seconds; ``role: rainfall`` accumulates rain,
      ``role: level`` rises after rain and drains back to ``base``;
    - ``constant``: always ``value``.
    """

    pattern: Literal["daily", "walk", "counter", "storm", "constant"]
    base: float = 0.0
    amplitude: float = 0.0
    peak_hour: float = 14.0
    noise: float = 0.0
    min: float | None = None
    max: float | None = None
    step: float = 1.0
    rate: float = 1.0
    period: float = 3600.0
    role: Literal["rainfall", "level"] = "level"
    value: float | bool | str = 0.0  # a float, as validated: an int default warns when dumped
    # a load behind a relay and a dimmer: ~0 while the bool point ``switched_by`` is off,
    # scaled by the 0-100 % point ``dimmed_by`` otherwise (the simulator follows writes to them)
    switched_by: str | None = None
    dimmed_by: str | None = None


class PointBase(Strict):
    """What every protocol's point has: its unit, scaling, quality rules and simulation.

    A protocol's own point model (``drivers/<protocol>/points.py``) adds where the value
    lives on the device. ``foreign_keys`` names keys that belong to another protocol, so a
    profile that mixes them gets a message saying so instead of a bare "unknown key".
    """

    foreign_keys: ClassVar[dict[str, str]] = {}

    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    description: str | None = None
    sim: SimSpec | None = None
    # quality: physically possible values (outside: kept, flagged over_range), published precision
    range: tuple[float, float] | None = None
    decimals: Annotated[int, Field(ge=0, le=9)] | None = None

    @property
    def type_name(self) -> str:
        """The decoded value's kind for generic code (simulation, listings): a protocol refines it."""
        return "number"


class SerialDefaults(Strict):
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class ProfileBase(Strict):
    """One device model of the catalog (or a technician's own file): the keys every protocol's
    profile has. ``drivers/protocols.py`` picks the protocol's own model by ``protocol:``."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    vendor: str
    model: str
    description: str | None = None
    category: Literal["dust", "weather", "water", "energy", "lighting", "other"] = "other"
    protocol: str = "modbus"
    serial: SerialDefaults | None = None
    points: Mapping[str, PointBase]

    @model_validator(mode="after")
    def _points(self) -> ProfileBase:
        if not self.points:
            raise ValueError("a profile needs at least one point")
        for name, p in self.points.items():
            if unit_of(name) is None and p.unit is None:
                raise ValueError(
                    f"point '{name}' is not in the measurement vocabulary{did_you_mean(name, VOCABULARY)}"
                    " and declares no 'unit'"
                )
            for other in (p.sim.switched_by, p.sim.dimmed_by) if p.sim else ():
                if other is not None and other not in self.points:
                    raise ValueError(f"point '{name}': sim names point '{other}', which the profile lacks")
        return self

    def unit_of(self, point: str) -> str:
        p = self.points[point]
        return p.unit if p.unit is not None else (unit_of(point) or "")

    def units(self) -> dict[str, str]:
        return {name: self.unit_of(name) for name in self.points}


Profile = ProfileBase
