"""The ``type: hj212`` uplink: one environmental platform over HJ 212-2017 (TCP client).

Intervals shorter than the standard's ranges are accepted (tests and demos need them);
``standard_warnings`` lists them for ``edge-agent check`` and the daemon's start-up log.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from ...units import Duration
from ..reconnect import Reconnect
from .factors import FACTORS, multiplier

# the standard's ranges: RtdInterval 30..3600 s; MinInterval one of these minutes
RTD_RANGE = (30.0, 3600.0)
MIN_MINUTES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)


def _text(value: object) -> object:
    """``pw: 123456`` or ``st: 39`` in YAML are numbers; they mean the same text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_text)]


class Hj212Uplink(Reconnect):
    model_config = ConfigDict(extra="forbid")

    type: Literal["hj212"]
    host: str = Field(description="the platform's address")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(description="the platform's TCP port")
    mn: Annotated[Text, Field(pattern=r"^[0-9A-Za-z]{1,24}$")] = Field(
        description="the site's MN (device code, 24 characters as the platform issued it)")
    pw: Annotated[Text, Field(min_length=1, max_length=32)] = Field(
        "123456", description="access password (PW); the platform's requests must carry the same")
    st: Annotated[Text, Field(pattern=r"^\d{2}$")] = Field(
        "39", description="system code (ST): 39 construction dust (工地扬尘), 22 ambient air, ...")
    devices: list[str] | None = Field(
        None, description="devices carried (default: every device with a point in the factor table)")
    rtd_interval: Duration = Field(60.0, description="CN 2011 real-time data period (standard: 30s..1h)")
    min_interval: Duration = Field(600.0, description="CN 2051 minute data period (standard: 1..30 minutes,"
                                                      " a divisor of an hour)")
    realtime: bool = Field(True, description="send 2011 real-time data from the start (the platform can"
                                             " stop and start it with 2012/2011)")
    hourly: bool = Field(True, description="send CN 2061 hour data")
    daily: bool = Field(True, description="send CN 2031 day data")
    ack: bool = Field(True, description="Flag A: the platform answers 9014 to each data packet, and a stored"
                                        " packet is kept until answered (false: delivered once sent)")
    overtime: Duration = Field(10.0, description="wait this long for an answer before sending again")
    recount: Annotated[int, Field(ge=0, le=10)] = Field(
        3, description="sends again before the link counts as down (then reconnect)")
    factors: dict[str, Annotated[str, Field(pattern=r"^[0-9A-Za-z]{1,12}$")]] = Field(
        default_factory=dict, description="point → factor code, over the built-in table (any point may be added)")
    units: dict[str, str] = Field(default_factory=dict,
                                  description="point → unit it is sent in, e.g. `{pm10: mg/m³}`")
    backlog_rate: Annotated[float, Field(gt=0)] = Field(
        5.0, description="stored packets per second at most when catching up after an outage")
    keep_days: Annotated[int, Field(ge=1, le=366)] = Field(
        31, description="days of minute/hour/day packets kept for the platform's history pulls")
    set_clock: bool = Field(False, description="a platform's set-time (1012) changes the system clock;"
                                               " otherwise it is logged and answered only")

    @model_validator(mode="after")
    def _check(self) -> Hj212Uplink:
        if not 0.1 <= self.rtd_interval <= 86400:
            raise ValueError("rtd_interval must be between 100ms and 1 day")
        if self.min_interval < 1 or 3600 % self.min_interval:
            raise ValueError("min_interval must divide an hour evenly (e.g. 1m, 5m, 10m; 10s in tests)")
        if not 0.1 <= self.overtime <= 600:
            raise ValueError("overtime must be between 100ms and 10m")
        self._check_reconnect()
        for point, unit in self.units.items():
            if point not in FACTORS:
                raise ValueError(f"units: {point} is not in the factor table; only its points convert")
            multiplier(point, unit)
        return self

    def codes(self) -> dict[str, str]:
        """point → factor code: the table, then this uplink's overrides."""
        return {**{p: f.code for p, f in FACTORS.items()}, **self.factors}

    def standard_warnings(self) -> list[tuple[str, str]]:
        """(key, message) for settings outside the standard's ranges (accepted)."""
        out = []
        if not RTD_RANGE[0] <= self.rtd_interval <= RTD_RANGE[1]:
            out.append(("rtd_interval", f"{self.rtd_interval:g}s is outside the standard's 30s..3600s"
                                        " (accepted; a platform may reject it)"))
        if self.min_interval % 60 or int(self.min_interval // 60) not in MIN_MINUTES:
            out.append(("min_interval", f"{self.min_interval:g}s is not one of the standard's 1..30 minute"
                                        " periods (accepted; a platform may reject it)"))
        return out
