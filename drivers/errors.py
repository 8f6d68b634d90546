"""Typed driver errors. Each carries the short ``status`` recorded in a failed reading.

A driver never returns ``None`` or a guessed value for a bad answer: it raises one of these.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base of every error a bus or device can produce."""

    status = "error"


class NoResponse(DriverError):
    """The slave did not answer within the timeout (after retries)."""

    status = "timeout"


class CrcError(DriverError):
    """A frame arrived whose CRC or checksum did not match."""

    status = "crc_error"


class GarbageFrame(DriverError):
    """Bytes arrived that do not form a frame of the protocol."""

    status = "garbage"


class ShortFrame(DriverError):
    """A frame arrived but shorter than the request implies."""

    status = "short_frame"


class ExceptionResponse(DriverError):
    """The slave answered with a protocol exception (Modbus exception code, DL/T 645 error)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"exception response, code {code:#04x}")
        self.code = code

    @property
    def status(self) -> str:  # type: ignore[override]
        return f"exception_{self.code:02x}"


class BusUnavailable(DriverError):
    """The port or host could not be opened or connected."""

    status = "bus_unavailable"


class DecodeError(DriverError):
    """Registers arrived but could not be decoded to the point's type (e.g. NaN float)."""

    status = "decode_error"


class NotFinite(DecodeError):
    """A float register holds NaN or an infinity: the sensor has no valid value."""

    def __init__(self, value: float, message: str = "") -> None:
        super().__init__(message or f"not a finite number ({value})")
        self.value = value

    @property
    def status(self) -> str:  # type: ignore[override]
        return "nan" if self.value != self.value else "inf"


class InvalidValue(DecodeError):
    """The raw register value is one the profile lists as the sensor's "no valid value"."""

    status = "invalid"


class DeviceOffline(DriverError):
    """The device is in back-off after consecutive failures; the bus was not asked."""

    status = "offline"


class WriteRefused(ValueError):
    """A write that must not go to the device (not writable, out of range, not encodable, or a
    protocol the agent does not write to); ``str()`` is the reason a user sees. Raised before
    anything touches the bus."""
