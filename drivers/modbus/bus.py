"""One Modbus bus: a single owner of a serial port or TCP connection.

Requests on a bus are strictly serialised (an asyncio lock) with an inter-frame delay
after each; different buses run concurrently. Errors come back as typed exceptions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from ..errors import BusUnavailable, ExceptionResponse, NoResponse, ShortFrame
from ..planner import ReadRequest

log = logging.getLogger(__name__)

BusKind = Literal["serial", "tcp", "rtu-over-tcp"]


def rtu_gap_seconds(baudrate: int) -> float:
    """The 3.5-character silence that ends an RTU frame (fixed 1.75 ms above 19200 baud)."""
    return 0.00175 if baudrate > 19200 else 3.5 * 11 / baudrate


def rtu_wire_seconds(request_bytes: int, response_bytes: int, baudrate: int, bits_per_byte: int = 10) -> float:
    """Time on the wire for one RTU transaction: both frames plus their gaps."""
    return (request_bytes + response_bytes) * bits_per_byte / baudrate + 2 * rtu_gap_seconds(baudrate)


@dataclass(slots=True)
class BusStats:
    transactions: int = 0
    errors: int = 0
    busy_seconds: float = 0.0


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
        if inter_frame_delay is None:
            inter_frame_delay = rtu_gap_seconds(baudrate) if kind == "serial" else 0.0
        self.inter_frame_delay = inter_frame_delay
        self.stats = BusStats()
        self._lock = asyncio.Lock()
        self._last_connect_try = 0.0
        self._client: Any
        common: dict[str, Any] = {"timeout": timeout, "retries": retries, "name": name,
                                  "reconnect_delay": 0, "reconnect_delay_max": 0}
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

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def _ensure_connected(self) -> None:
        if self._client.connected:
            return
        now = time.monotonic()
        if now - self._last_connect_try < min(1.0, self.timeout):
            raise BusUnavailable(f"{self.name}: {self.where} not connected")
        self._last_connect_try = now
        try:
            ok = await asyncio.wait_for(self._client.connect(), timeout=max(self.timeout, 1.0) * 2)
        except (TimeoutError, OSError, ModbusException) as exc:
            raise BusUnavailable(f"{self.name}: cannot open {self.where}: {exc}") from exc
        if not ok:
            raise BusUnavailable(f"{self.name}: cannot open {self.where}")

    async def read(self, unit: int, req: ReadRequest) -> list[int] | list[bool]:
        """Run one read request on the bus. Raises a DriverError subclass on any failure."""
        async with self._lock:
            await self._ensure_connected()
            started = time.perf_counter()
            try:
                return await self._read_locked(unit, req)
            except Exception:
                self.stats.errors += 1
                raise
            finally:
                self.stats.transactions += 1
                self.stats.busy_seconds += time.perf_counter() - started
                if self.inter_frame_delay:
                    await asyncio.sleep(self.inter_frame_delay)

    async def _read_locked(self, unit: int, req: ReadRequest) -> list[int] | list[bool]:
        c = self._client
        call = {
            1: c.read_coils,
            2: c.read_discrete_inputs,
            3: c.read_holding_registers,
            4: c.read_input_registers,
        }[req.function_code]
        try:
            rr = await call(req.address, count=req.count, device_id=unit)
        except ModbusIOException as exc:
            raise NoResponse(f"unit {unit} on {self.name}: no answer to fc{req.function_code} "
                             f"@{req.address}+{req.count}") from exc
        except ConnectionException as exc:
            raise BusUnavailable(f"{self.name}: {exc}") from exc
        except TimeoutError as exc:
            raise NoResponse(f"unit {unit} on {self.name}: timeout") from exc
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            raise ExceptionResponse(code, f"unit {unit} on {self.name}: exception {code} to "
                                    f"fc{req.function_code} @{req.address}+{req.count}")
        if req.function_code in (1, 2):
            bits = list(rr.bits)
            if len(bits) < req.count:
                raise ShortFrame(f"unit {unit}: {len(bits)} bits for {req.count}")
            return bits[: req.count]
        regs = list(rr.registers)
        if len(regs) != req.count:
            raise ShortFrame(f"unit {unit}: {len(regs)} registers for {req.count}")
        return regs

    async def close(self) -> None:
        self._client.close()
