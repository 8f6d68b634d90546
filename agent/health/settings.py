"""Config models for operations: ``health:`` (the health topic) and ``metrics:`` (Prometheus)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..units import Duration


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(Strict):
    interval: Duration = Field(
        300.0, description="how often today's completeness is published, retained, on {prefix}/{gateway}/health"
                           " (10s to 24h); the finished day's final counts also go out just after local midnight")

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if not 10 <= value <= 86400:
            raise ValueError(f"must be between 10s and 24h, not {value:g}s")
        return value


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) on a loopback address."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"'{value}' is not HOST:PORT (example: 127.0.0.1:9108)")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            raise ValueError(f"'{host}' is not an IP address (example: 127.0.0.1:9108)") from None
        if not loopback:
            raise ValueError(f"the metrics endpoint listens only on loopback (127.0.0.1 or ::1), not {host}: it"
                             " has no authentication; reach it through SSH or a local collector")
    return host, int(port)


class Metrics(Strict):
    listen: str = Field(description="HOST:PORT of the Prometheus endpoint, on loopback (e.g. 127.0.0.1:9108)")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value
