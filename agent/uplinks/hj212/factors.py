"""Vocabulary point → HJ 212-2017 factor code (污染物因子编码), and the unit it goes out in.

The codes are those of the standard's Appendix B for construction-site dust and weather
(an ``-Rtd``/``-Avg`` field is ``<code>-Rtd``). Values go out in the vocabulary's unit
unless an uplink's ``units:`` asks for another one the table below converts to (platforms
differ between µg/m³ and mg/m³ for dust).
"""

from __future__ import annotations

from typing import NamedTuple


class Factor(NamedTuple):
    code: str
    unit: str  # the vocabulary's unit: what the agent reads
    name: str


FACTORS: dict[str, Factor] = {
    "tsp": Factor("a34001", "µg/m³", "TSP (total suspended particulates)"),
    "pm10": Factor("a34002", "µg/m³", "PM10"),
    "pm2_5": Factor("a34004", "µg/m³", "PM2.5"),
    "pm1_0": Factor("a34005", "µg/m³", "PM1.0"),
    "temperature": Factor("a01001", "°C", "air temperature"),
    "humidity": Factor("a01002", "%RH", "relative humidity"),
    "pressure": Factor("a01006", "kPa", "atmospheric pressure"),
    "wind_speed": Factor("a01007", "m/s", "wind speed"),
    "wind_direction": Factor("a01008", "°", "wind direction"),
    "noise_la": Factor("LA", "dB(A)", "noise, A-weighted sound level"),
}

# (from, to) → multiplier; a unit converts to itself with 1
CONVERSIONS: dict[tuple[str, str], float] = {
    ("µg/m³", "mg/m³"): 0.001,
    ("kPa", "hPa"): 10.0,
    ("kPa", "Pa"): 1000.0,
}


def unit_targets(point: str) -> list[str]:
    """Units ``point`` can be sent in."""
    factor = FACTORS.get(point)
    if factor is None:
        return []
    return [factor.unit] + [to for (frm, to) in CONVERSIONS if frm == factor.unit]


def multiplier(point: str, unit: str | None) -> float:
    """What a reading of ``point`` is multiplied by to go out in ``unit`` (None: as read)."""
    factor = FACTORS[point]
    if unit is None or unit == factor.unit:
        return 1.0
    try:
        return CONVERSIONS[(factor.unit, unit)]
    except KeyError:
        raise ValueError(f"{point} is read in {factor.unit}; it can be sent in "
                         f"{', '.join(unit_targets(point))}, not {unit}") from None


def table_markdown() -> str:
    """The table as the config reference shows it."""
    rows = ["| point | factor code | unit sent (default) | other units (`units:`) | meaning |",
            "|---|---|---|---|---|"]
    for point, f in FACTORS.items():
        others = ", ".join(unit_targets(point)[1:]) or "—"
        rows.append(f"| `{point}` | `{f.code}` | {f.unit} | {others} | {f.name} |")
    return "\n".join(rows)
