"""One Modbus bus: a single owner of a serial port or TCP connection.

Kinds: ``serial`` (RTU on a serial port), ``tcp`` (Modbus TCP, MBAP framing) and
``rtu-over-tcp`` (RTU frames through a TCP socket, as a transparent serial-to-Ethernet
converter passes them). Requests on a bus are strictly serialised, with an inter-frame delay
after each transaction; different buses run concurrently. Every failure is a typed
:class:`~drivers.errors.DriverError` whose ``status`` goes into the reading.

Retries: a request is tried ``1 + retries`` times on timeout, CRC error, garbage or short
frame (an exception response is an answer and is not retried). A unit whose previous request
timed out gets a single attempt and waits behind the other units (see :mod:`.buslock`), so a
dead slave costs its bus at most one timeout per poll of it. On RTU lines every byte is judged
by :class:`~drivers.modbus.rtu_line.RtuLine` before pymodbus sees it.
"""

from __future__ import annotations

import asyncio
import logging
import termios
import time
from collections.abc import Callable
from typing import Any, Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from ..busstats import BusStats
from ..errors import BusUnavailable, DriverError, ExceptionResponse, NoResponse, ShortFrame
from .buslock import BusLock
from .planner import ReadRequest
from .rtu_line import RtuLine
from .wire import REQUEST_BYTES, Expected, bits_per_char, response_bytes, rtu_gap_seconds, rtu_wire_seconds
from .writes import RegisterWrite

__all__ = ["BusKind", "BusStats", "ModbusBus", "rtu_gap_seconds", "rtu_wire_seconds"]

log = logging.getLogger(__name__)

BusKind = Literal["serial", "tcp", "rtu-over-tcp"]
LATE_WINDOW_TIMEOUTS = 3.0  # an answer later than this many timeouts after its request is not expected
RECONNECT_AFTER_SILENCE = 5  # TCP kinds: reopen the socket after this many timeouts in a row
NO_RESPONSE_LIMIT = 1 << 30  # pymodbus closes a TCP client after retries+3 timeouts; we decide that


def quiet_gap_seconds(kind: BusKind, baudrate: int) -> float:
    """How long the line must be silent before bytes that form no frame are judged (and resync ends).

    Long enough for USB adapters that deliver a frame in chunks (latency timers of ~16 ms)."""
    if kind == "serial":
        return max(0.03, 20 * 11 / baudrate)
    return 0.05


class ModbusBus:
    """A Modbus RTU (serial or over TCP) or Modbus TCP bus with one owner."""

    def __init__(
        self,
        name: str,
        kind: BusKind,
        *,
        port: str | None = None,
        host: str | None = None,
        tcp_port: int = 502,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        timeout: float = 0.5,
        retries: int = 1,
        inter_frame_delay: float | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.timeout = timeout
        self.retries = retries
        self.baudrate = baudrate
        self.bits_per_char = bits_per_char(parity, stopbits, bytesize)
        if inter_frame_delay is None:
            inter_frame_delay = rtu_gap_seconds(baudrate) if kind == "serial" else 0.0
        self.inter_frame_delay = inter_frame_delay
        self.stats = BusStats()
        self._lock = BusLock()
        self._silent: set[int] = set()  # units whose last request timed out
        self._silence_run = 0
        self._last_connect_try = float("-inf")
        self.line: RtuLine | None = None
        if kind != "tcp":
            self.line = RtuLine(min(quiet_gap_seconds(kind, baudrate), timeout / 2), LATE_WINDOW_TIMEOUTS * timeout)
        common: dict[str, Any] = {"timeout": timeout, "retries": 0, "name": name,
                                  "reconnect_delay": 0, "reconnect_delay_max": 0,
                                  "trace_packet": self.line.trace if self.line else None}
        self._client: Any
        if kind == "serial":
            if not port:
                raise ValueError("serial bus needs a port")
            self.where = port
            self._client = AsyncModbusSerialClient(
                port, framer=FramerType.RTU, baudrate=baudrate, parity=parity,
                stopbits=stopbits, bytesize=bytesize, **common,
            )
        else:
            if not host:
                raise ValueError(f"{kind} bus needs a host")
            self.where = f"{host}:{tcp_port}"
            framer = FramerType.RTU if kind == "rtu-over-tcp" else FramerType.SOCKET
            self._client = AsyncModbusTcpClient(host, port=tcp_port, framer=framer, **common)
        self._client.set_max_no_responses(NO_RESPONSE_LIMIT)

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    def wire_seconds(self, req: ReadRequest) -> float:
        """The time ``req`` takes on an RTU line at this bus's speed (the physical limit)."""
        return rtu_wire_seconds(REQUEST_BYTES, response_bytes(req), self.baudrate, self.bits_per_char)

    async def _ensure_connected(self) -> None:
        if self._client.connected:
            return
        now = time.monotonic()
        if now - self._last_connect_try < min(1.0, self.timeout):
            raise BusUnavailable(f"{self.name}: {self.where} not connected")
        self._last_connect_try = now
        try:
            ok = await asyncio.wait_for(self._client.connect(), timeout=max(self.timeout, 1.0) * 2)
        except (TimeoutError, OSError, ModbusException, termios.error) as exc:
            raise BusUnavailable(f"{self.name}: cannot open {self.where}: {exc}") from exc
        if not ok:
            raise BusUnavailable(f"{self.name}: cannot open {self.where}")
        self._silence_run = 0

    async def read(self, unit: int, req: ReadRequest) -> list[int] | list[bool]:
        """Run one read request on the bus. Raises a DriverError subclass on any failure."""
        c = self._client
        call = {1: c.read_coils, 2: c.read_discrete_inputs, 3: c.read_holding_registers,
                4: c.read_input_registers}[req.function_code]
        what = f"fc{req.function_code} @{req.address}+{req.count}"
        values: list[int] | list[bool] = await self._transact(
            unit, Expected.of(unit, req), what, lambda: call(req.address, count=req.count, device_id=unit),
            lambda rr: self._values(unit, req, rr))
        return values

    async def write(self, unit: int, request: RegisterWrite) -> None:
        """Run one write request (FC05/06/15/16) on the bus, between polls (same lock and
        inter-frame delay as reads). Raises a DriverError subclass on any failure."""
        c, fc = self._client, request.function
        if fc in (5, 15):
            assert request.coil is not None
            count = 1
            coil = request.coil
            send: Callable[[], Any] = ((lambda: c.write_coil(request.address, coil, device_id=unit)) if fc == 5
                                       else (lambda: c.write_coils(request.address, [coil], device_id=unit)))
        else:
            regs = list(request.registers)
            count = len(regs)
            send = ((lambda: c.write_register(request.address, regs[0], device_id=unit)) if fc == 6
                    else (lambda: c.write_registers(request.address, regs, device_id=unit)))
        what = f"fc{fc} @{request.address}+{count}"

        def accept(rr: Any) -> None:
            if rr.isError():
                code = int(getattr(rr, "exception_code", 0) or 0)
                raise ExceptionResponse(code, f"unit {unit} on {self.name}: exception {code} to {what}")
            if rr.function_code != fc:
                raise ShortFrame(f"unit {unit}: answer with function {rr.function_code} to fc{fc}")

        await self._transact(unit, Expected.of_write(unit, fc, request.address, count), what, send, accept)

    async def _transact(self, unit: int, expect: Expected, what: str, send: Callable[[], Any],
                        accept: Callable[[Any], Any]) -> Any:
        """One request under the bus lock, tried ``1 + retries`` times: what ``accept`` makes of the
        pymodbus response (it raises for an exception answer or a malformed one, counted as failures)."""
        silent = unit in self._silent
        attempts = 1 if silent else 1 + self.retries
        await self._acquire(unit, expect, low=silent)
        try:
            await self._ensure_connected()
            last: DriverError | None = None
            for _ in range(attempts):
                started = time.perf_counter()
                try:
                    result = accept(await self._attempt(unit, send, expect, what))
                except (ExceptionResponse, BusUnavailable) as exc:  # an answer, or no bus: no retry
                    self._count_failure(unit, exc)
                    self._silent.discard(unit)
                    raise
                except DriverError as exc:
                    last = exc
                    self._count_failure(unit, exc)
                    await self._after_failure(exc)
                    continue
                finally:
                    await self._inter_frame(started)
                self._silent.discard(unit)
                self._silence_run = 0
                return result
            assert last is not None
            if isinstance(last, NoResponse):
                self._silent.add(unit)
            raise last
        finally:
            self._lock.release()

    async def _acquire(self, unit: int, expect: Expected, low: bool) -> None:
        """Take the bus; on RTU, not while a different request of the same shape may still be answered."""
        held = False
        while True:
            if self.line is not None:
                wait = self.line.conflict(unit, expect, asyncio.get_running_loop().time())
                if wait > 0:
                    if not held:
                        held = True
                        self.line.stats.held_back += 1
                    await asyncio.sleep(min(wait, 0.02))
                    continue
            await self._lock.acquire(low=low)
            if self.line is None or self.line.conflict(unit, expect, asyncio.get_running_loop().time()) <= 0:
                return
            self._lock.release()

    async def _inter_frame(self, started: float) -> None:
        if self.inter_frame_delay:
            await asyncio.sleep(self.inter_frame_delay)
        self.stats.transactions += 1
        self.stats.busy_seconds += time.perf_counter() - started

    def _count_failure(self, unit: int, exc: DriverError) -> None:
        self.stats.errors += 1
        self.stats.by_status[exc.status] += 1
        self.stats.by_unit[unit, exc.status] += 1

    async def _after_failure(self, exc: DriverError) -> None:
        if isinstance(exc, NoResponse):
            self._silence_run += 1
            if self.kind != "serial" and self._silence_run >= RECONNECT_AFTER_SILENCE:
                log.info("%s: %d timeouts in a row, reopening %s", self.name, self._silence_run, self.where)
                self._client.close()
                self._silence_run = 0
        elif self.line is not None:
            await self.line.quiet(self.timeout)  # let the rest of the bad frame pass: resync

    async def _attempt(self, unit: int, send: Callable[[], Any], expect: Expected, what: str) -> Any:
        try:
            coro = send()
        except ConnectionException as exc:
            raise BusUnavailable(f"{self.name}: {exc}") from exc
        line = self.line
        if line is None:
            return await self._await_tcp(coro, unit, what)
        verdict: asyncio.Future[DriverError] = asyncio.get_running_loop().create_future()
        line.begin(expect, verdict)
        task = asyncio.ensure_future(coro)
        try:
            await asyncio.wait({task, verdict}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise verdict.result()
            try:
                return task.result()
            except ModbusIOException as exc:
                raise line.failure() from exc
            except ConnectionException as exc:
                raise BusUnavailable(f"{self.name}: {exc}") from exc
        finally:
            if not task.done():
                task.cancel()
            line.end()

    async def _await_tcp(self, coro: Any, unit: int, what: str) -> Any:
        try:
            return await coro
        except ModbusIOException as exc:
            raise NoResponse(f"unit {unit} on {self.name}: no answer to {what}") from exc
        except ConnectionException as exc:
            raise BusUnavailable(f"{self.name}: {exc}") from exc
        except TimeoutError as exc:
            raise NoResponse(f"unit {unit} on {self.name}: timeout") from exc

    def _values(self, unit: int, req: ReadRequest, rr: Any) -> list[int] | list[bool]:
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            raise ExceptionResponse(code, f"unit {unit} on {self.name}: exception {code} to "
                                    f"fc{req.function_code} @{req.address}+{req.count}")
        if rr.function_code != req.function_code:
            raise ShortFrame(f"unit {unit}: answer with function {rr.function_code} to fc{req.function_code}")
        if req.function_code in (1, 2):
            bits = list(rr.bits)
            if len(bits) < req.count or len(bits) >= req.count + 8:
                raise ShortFrame(f"unit {unit}: {len(bits)} bits for {req.count}")
            return bits[: req.count]
        regs = list(rr.registers)
        if len(regs) != req.count:
            raise ShortFrame(f"unit {unit}: {len(regs)} registers for {req.count}")
        return regs

    async def close(self) -> None:
        self._client.close()
