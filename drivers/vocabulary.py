"""The measurement vocabulary: a point's name fixes its unit.

A profile point whose name is listed here takes the unit from this table; a point with
any other name must declare ``unit:`` itself. Extend the table as profiles need.
"""

from __future__ import annotations

from typing import NamedTuple


class Measurement(NamedTuple):
    unit: str
    description: str


VOCABULARY: dict[str, Measurement] = {
    "pm2_5": Measurement("µg/m³", "particulate matter ≤ 2.5 µm"),
    "pm10": Measurement("µg/m³", "particulate matter ≤ 10 µm"),
    "pm1_0": Measurement("µg/m³", "particulate matter ≤ 1.0 µm"),
    "tsp": Measurement("µg/m³", "total suspended particulates"),
    "noise_la": Measurement("dB(A)", "A-weighted sound level"),
    "temperature": Measurement("°C", "air or water temperature"),
    "humidity": Measurement("%RH", "relative humidity"),
    "pressure": Measurement("kPa", "atmospheric pressure"),
    "wind_speed": Measurement("m/s", "wind speed"),
    "wind_direction": Measurement("°", "wind direction, clockwise from north"),
    "rainfall": Measurement("mm", "accumulated rainfall"),
    "water_level": Measurement("m", "water level above the gauge datum"),
    "air_gap": Measurement("m", "distance from the sensor down to the water surface"),
    "flow": Measurement("m³/h", "volume flow"),
    "voltage_l1": Measurement("V", "phase L1 voltage"),
    "voltage_l2": Measurement("V", "phase L2 voltage"),
    "voltage_l3": Measurement("V", "phase L3 voltage"),
    "current_l1": Measurement("A", "phase L1 current"),
    "current_l2": Measurement("A", "phase L2 current"),
    "current_l3": Measurement("A", "phase L3 current"),
    "active_power": Measurement("kW", "total active power"),
    "power_factor": Measurement("", "total power factor"),
    "frequency": Measurement("Hz", "grid frequency"),
    "energy_import": Measurement("kWh", "imported (forward) active energy"),
    "energy_export": Measurement("kWh", "exported (reverse) active energy"),
    "lamp_on": Measurement("bool", "lamp relay state"),
    "dim_level": Measurement("%", "dimming level 0-100 %"),
}


def unit_of(name: str) -> str | None:
    """The unit the vocabulary fixes for ``name``, or None if the name is not in it."""
    m = VOCABULARY.get(name)
    return m.unit if m else None
