"""Plausible values for simulated points, driven by each point's ``sim:`` block."""

from __future__ import annotations

import math
import random
import time

from ..profile import PointBase as Point
from ..profile import SimSpec


def _default_spec(name: str, point: Point) -> SimSpec:
    if point.type_name in ("bool", "bit"):
        return SimSpec(pattern="constant", value=True)
    if point.type_name == "string":
        return SimSpec(pattern="constant", value="SIM")
    return SimSpec(pattern="walk", min=0, max=100, step=1, base=50)


class PointSimulator:
    """The value of one point at a time ``t`` (epoch seconds); stateful for walks and counters."""

    def __init__(self, name: str, point: Point, rng: random.Random, start: float | None = None) -> None:
        self.name = name
        self.point = point
        self.spec = point.sim or _default_spec(name, point)
        self.rng = rng
        self.start = time.time() if start is None else start
        s = self.spec
        self._walk = s.base if s.min is None else max(s.min, min(s.max if s.max is not None else s.base, s.base))
        self._counter = s.base
        self._last_t: float | None = None

    def _storm_intensity(self, t: float) -> float:
        """Rain intensity 0..1: a shower in the first third of every period."""
        phase = ((t - self.start) % self.spec.period) / self.spec.period
        return math.sin(phase * 3 * math.pi) ** 2 if phase < 1 / 3 else 0.0

    def value(self, t: float) -> float | bool | str:
        s = self.spec
        dt = 0.0 if self._last_t is None else max(0.0, t - self._last_t)
        self._last_t = t
        v: float
        if s.pattern == "constant":
            return s.value
        if s.pattern == "daily":
            hours = (t % 86400) / 3600
            v = s.base + s.amplitude * math.cos((hours - s.peak_hour) / 24 * 2 * math.pi)
            v += self.rng.uniform(-s.noise, s.noise) if s.noise else 0.0
        elif s.pattern == "walk":
            self._walk += self.rng.uniform(-s.step, s.step) * max(1.0, min(dt, 60.0)) ** 0.5
            v = self._walk
        elif s.pattern == "counter":
            self._counter += s.rate * dt / 3600 * self.rng.uniform(0.8, 1.2)
            v = self._counter
        else:  # storm
            if s.role == "rainfall":
                self._counter += s.rate * dt / 3600 * self._storm_intensity(t)
                v = self._counter
            else:
                # the level follows the rain with a lag: integrate inflow, drain toward base
                inflow = s.amplitude * self._storm_intensity(t)
                drain = (self._walk - s.base) * 0.02
                self._walk += (inflow - drain) * min(dt, 60.0) / 10
                v = self._walk + (self.rng.uniform(-s.noise, s.noise) if s.noise else 0.0)
        if s.min is not None:
            v = max(s.min, v)
        if s.max is not None:
            v = min(s.max, v)
        if s.pattern == "walk":
            self._walk = v
        return v
