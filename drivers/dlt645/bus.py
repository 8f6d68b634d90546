"""A DL/T 645 serial line with one owner, and a meter on it read point by point.

Requests on a bus are strictly serialised (an asyncio lock) with an inter-frame delay
after each; errors come back as typed exceptions. The port is read without blocking the
event loop: pyserial in non-blocking mode, woken by the loop's reader callback (POSIX).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import termios
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import serial

from ..busstats import BusStats
from ..errors import (
    BusUnavailable,
    CrcError,
    DriverError,
    GarbageFrame,
    NoResponse,
    ShortFrame,
    WriteRefused,
)
from ..reading import Polled, Value
from ..scale import apply_scale
from . import bcd, codec
from .points import DLT645Profile as Profile

log = logging.getLogger(__name__)

T = TypeVar("T")
PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
RETRYABLE = (NoResponse, CrcError, GarbageFrame, ShortFrame)
MAX_FOLLOW_ON = 255


def char_seconds(baudrate: int, parity: str = "E", stopbits: int = 1, bytesize: int = 8) -> float:
    """Wire time of one character: start bit, data bits, parity bit, stop bits."""
    return (1 + bytesize + (parity != "N") + stopbits) / baudrate


class DLT645Bus:
    """A serial line of DL/T 645 meters (default 2400 baud 8E1) with one owner."""

    kind = "serial"

    def __init__(
        self,
        name: str,
        port: str,
        *,
        baudrate: int = 2400,
        parity: str = "E",
        stopbits: int = 1,
        bytesize: int = 8,
        timeout: float = 0.5,
        retries: int = 1,
        inter_frame_delay: float | None = None,
        preamble: bool = True,
    ) -> None:
        if parity not in PARITIES:
            raise ValueError(f"parity must be one of {', '.join(PARITIES)}")
        self.name = name
        self.where = port
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self.timeout = timeout
        self.retries = retries
        self.preamble = preamble
        self.char_seconds = char_seconds(baudrate, parity, stopbits, bytesize)
        if inter_frame_delay is None:
            inter_frame_delay = max(0.02, 4 * self.char_seconds)
        self.inter_frame_delay = inter_frame_delay
        self.stats = BusStats()
        self._lock = asyncio.Lock()
        self._serial: serial.Serial | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rx = bytearray()
        self._rx_event = asyncio.Event()
        self._rx_error: Exception | None = None
        self._last_open_try = 0.0

    # --- the port ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._serial is not None

    def _open(self) -> None:
        if self._serial is not None:
            return
        now = time.monotonic()
        if now - self._last_open_try < min(1.0, self.timeout):
            raise BusUnavailable(f"{self.name}: {self.where} not open")
        self._last_open_try = now
        try:
            port = serial.Serial(self.where, baudrate=self.baudrate,
                                 parity=PARITIES[self.parity], stopbits=self.stopbits,
                                 bytesize=self.bytesize, timeout=0, write_timeout=2.0,
                                 exclusive=True)
        except (OSError, ValueError, termios.error) as exc:  # termios: line settings refused
            raise BusUnavailable(f"{self.name}: cannot open {self.where}: {exc}") from exc
        self._loop = asyncio.get_running_loop()
        self._serial = port
        self._rx.clear()
        self._rx_error = None
        self._loop.add_reader(port.fileno(), self._on_readable)
        log.info("%s: opened %s at %d %d%s%d", self.name, self.where, self.baudrate,
                 self.bytesize, self.parity, self.stopbits)

    def _on_readable(self) -> None:
        port = self._serial
        if port is None:
            return
        try:
            self._rx += port.read(4096)
        except (OSError, serial.SerialException) as exc:
            self._rx_error = exc
            self._drop_port()
        self._rx_event.set()

    def _drop_port(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(port.fileno())
        with contextlib.suppress(OSError, serial.SerialException):
            port.close()

    def _fail_port(self, exc: BaseException) -> BusUnavailable:
        self._drop_port()
        log.warning("%s: %s lost: %s", self.name, self.where, exc)
        return BusUnavailable(f"{self.name}: {self.where}: {exc}")

    async def close(self) -> None:
        self._drop_port()

    # --- one exchange -----------------------------------------------------------------

    def _wire(self, nbytes: int) -> float:
        return nbytes * self.char_seconds

    def _send(self, frame: bytes) -> None:
        assert self._serial is not None
        self._rx.clear()
        self._rx_event.clear()
        try:
            self._serial.write(frame)
        except (OSError, serial.SerialException) as exc:
            raise self._fail_port(exc) from exc

    async def _exchange(self, request: bytes, parse: Callable[[bytes], T]) -> T:
        """Send ``request``; return ``parse`` of the first frame that answers it.

        Noise before a frame and an echo of the request are skipped; so is a well-formed
        reply to another request (a late answer), while time remains. The timeout runs
        from the end of the request on the wire and stretches by the reply's wire time.
        """
        self._send(request)
        echo = request.lstrip(b"\xfe")
        sent = time.monotonic() + self._wire(len(request))
        deadline = sent + self.timeout
        skipped: DriverError | None = None
        while True:
            if self._rx_error is not None:
                err, self._rx_error = self._rx_error, None
                raise BusUnavailable(f"{self.name}: {self.where}: {err}") from err
            where = codec.locate_frame(self._rx)
            if where is not None and where.end is not None:
                deadline = max(deadline, sent + self.timeout + self._wire(where.end - where.start))
                if len(self._rx) >= where.end:
                    raw = bytes(self._rx[where.start : where.end])
                    del self._rx[: where.end]
                    if raw.lstrip(b"\xfe") == echo:
                        continue
                    try:
                        return parse(raw)
                    except codec.WrongReply as exc:
                        skipped = exc
                        continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout_error(skipped)
            self._rx_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rx_event.wait(), remaining)

    def _timeout_error(self, skipped: DriverError | None) -> DriverError:
        rx = bytes(self._rx)
        if rx:
            where = codec.locate_frame(rx)
            if where is None:
                return GarbageFrame(f"{self.name}: {len(rx)} bytes of noise, no frame")
            return ShortFrame(f"{self.name}: frame cut short ({len(rx) - where.start} bytes)")
        if skipped is not None:
            return skipped
        return NoResponse(f"{self.name}: no answer within {self.timeout:g} s")

    async def _transact(self, request: bytes, parse: Callable[[bytes], T]) -> T:
        """One exchange with retries; counts it and keeps the inter-frame delay after it."""
        attempts = 1 + self.retries
        for attempt in range(attempts):
            started = time.perf_counter()
            try:
                self._open()
                return await self._exchange(request, parse)
            except RETRYABLE as exc:
                self.stats.errors += 1
                if attempt + 1 == attempts:
                    raise
                log.debug("%s: %s, retrying", self.name, exc)
            except DriverError:
                self.stats.errors += 1
                raise
            finally:
                self.stats.transactions += 1
                self.stats.busy_seconds += time.perf_counter() - started
                if self.inter_frame_delay:
                    await asyncio.sleep(self.inter_frame_delay)
        raise AssertionError("unreachable")

    # --- the API ----------------------------------------------------------------------

    async def read(self, address: str, di: str | int) -> bytes:
        """The value bytes of data identifier ``di`` of the meter at ``address``.

        Follow-on frames (0xB1/0xB2) are fetched and joined. Raises a DriverError
        subclass on any failure: the result is never a guess.
        """
        di_int = codec.parse_di(di)
        async with self._lock:
            reply = await self._transact(
                codec.read_request(address, di_int, preamble=self.preamble),
                lambda raw: codec.parse_read_reply(raw, address, di_int))
            value = bytearray(reply.data)
            seq = 0
            while reply.more:
                seq += 1
                if seq > MAX_FOLLOW_ON:
                    raise GarbageFrame(f"{self.name}: more than {MAX_FOLLOW_ON} follow-on frames")
                reply = await self._transact(
                    codec.read_follow_request(address, di_int, seq, preamble=self.preamble),
                    functools.partial(codec.parse_read_reply, address=address, di=di_int,
                                      seq=seq))
                value += reply.data
            return bytes(value)

    async def read_address(self) -> str:
        """The address of the one meter on the line (control 0x13 to AA..AA)."""
        async with self._lock:
            return await self._transact(codec.read_address_request(preamble=self.preamble),
                                        codec.parse_address_reply)


@dataclass(frozen=True, slots=True)
class PointRead:
    """How one point is read: its DI and the BCD layout, sign, scale and offset to decode."""

    name: str
    di: int
    format: str
    signed: bool
    scale: float
    offset: float
    valid: tuple[float, float] | None = None


class DLT645Device:
    """A DL/T 645 meter at ``address`` on a bus; each point of its profile is one DI read."""

    def __init__(self, bus: DLT645Bus, address: str, profile: Profile) -> None:
        if profile.protocol != "dlt645":
            raise ValueError(f"profile {profile.name} is {profile.protocol}, not dlt645")
        codec.address_bytes(address)  # ValueError early for a malformed address
        self.bus = bus
        self.address = address
        self.profile = profile
        self.plan: list[PointRead] = []
        for name, p in profile.points.items():
            assert p.di is not None
            fmt, signed = bcd.item_layout(p.di, p.format, p.signed)
            self.plan.append(PointRead(name, codec.parse_di(p.di), fmt, signed, p.scale, p.offset, p.range))

    async def read(self) -> Polled:
        """Read every point; a point the meter refuses or garbles gets its error, the others
        keep their values. Raise the first DriverError when no point could be read."""
        polled = Polled()
        first_error: DriverError | None = None
        for item in self.plan:
            try:
                data = await self.bus.read(self.address, item.di)
                raw = bcd.decode_value(data, item.format, item.signed)
            except (NoResponse, BusUnavailable) as exc:
                if not polled.values:
                    raise
                polled.errors[item.name] = exc.status  # the meter went silent: the rest are lost too
                for rest in self.plan[self.plan.index(item) + 1 :]:
                    polled.errors[rest.name] = exc.status
                break
            except DriverError as exc:
                first_error = first_error or exc
                polled.errors[item.name] = exc.status
                continue
            polled.keep(item.name, apply_scale(raw, item.scale, item.offset), item.valid)
        if not polled.values and first_error is not None:
            raise first_error
        return polled

    async def write(self, values: Mapping[str, Value]) -> dict[str, Value]:
        """The agent does not write to meters: always refused, before the bus is touched."""
        points = ", ".join(values) or "nothing"
        raise WriteRefused(f"{self.profile.name} is a DL/T 645 meter: the agent does not write to meters"
                           f" ({points} not written)")

    def describe(self) -> dict[str, Any]:
        """What the device is, for logs and the CLI."""
        return {"address": self.address, "bus": self.bus.name, "profile": self.profile.name}
