"""pymodbus servers whose request handler answers each request on its own, faults included.

pymodbus's own handler reads ``last_pdu`` again after the datastore has answered; when a
slow answer overlaps the next request that is the *next* request's unit id and transaction
id, so the late answer would go out under another slave's address. This handler keeps each
request's PDU with its answer, handles every complete frame of a chunk (TCP), lets the context
damage the frame (faults), emulates wire time, and never answers an undecodable request
(a real slave stays silent).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException, NoSuchIdException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.transaction import TransactionManager

if TYPE_CHECKING:
    from .server import Fault, SimContext

log = logging.getLogger(__name__)


@dataclass
class Pending:
    """The fault chosen for the request being answered (set by the context, read by the handler)."""

    fault: Fault = "none"
    unit: int = 0


_PENDING: contextvars.ContextVar[Pending | None] = contextvars.ContextVar("sim_pending_fault", default=None)


def pending_fault() -> Pending | None:
    return _PENDING.get()


class SimRequestHandler(ServerRequestHandler):
    def __init__(self, owner: Any) -> None:
        super().__init__(owner, None, None, None)
        self._tasks: set[asyncio.Task[None]] = set()

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        used = 0
        while used < len(data):
            try:
                n = TransactionManager.callback_data(self, data[used:], addr)
            except ModbusIOException:
                return len(data)
            used += n
            pdu = self.last_pdu
            if pdu is None or n == 0:
                break
            task = self.loop.create_task(self._answer(pdu, self.last_addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return used

    async def _answer(self, pdu: ModbusPDU, addr: Any) -> None:
        """Answer one request; a slave answers its requests one at a time, in order, like a real one."""
        context: SimContext = self.server.context
        async with context.busy(pdu.dev_id):
            await self._answer_now(context, pdu)

    async def _answer_now(self, context: SimContext, pdu: ModbusPDU) -> None:
        pending = Pending()
        token = _PENDING.set(pending)
        try:
            response = await pdu.datastore_update(context, pdu.dev_id)  # type: ignore[arg-type]
        except NoSuchIdException:
            return
        except Exception:  # a simulator bug must not kill the line
            log.exception("simulator: request %s failed", pdu)
            response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        finally:
            _PENDING.reset(token)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        rtu = isinstance(self.framer, FramerRTU)
        frame = self.framer.buildFrame(response)
        delay = context.emulated_seconds(len(self.framer.buildFrame(pdu)), len(frame)) if rtu else 0.0
        if pending.fault == "slow":
            delay += context.slaves[pending.unit].slow_seconds
        if delay:
            await asyncio.sleep(delay)
        frame = context.damage(frame, pending, rtu)
        if self.transport:
            self.transport.write(frame)  # type: ignore[attr-defined]


def _placeholder() -> list[SimDevice]:
    return [SimDevice(id=0, simdata=[SimData(address=0, values=0, datatype=DataType.REGISTERS)])]


class SimSerialServer(ModbusSerialServer):
    def __init__(self, context: SimContext, **kwargs: Any) -> None:
        super().__init__(_placeholder(), ignore_missing_devices=True, **kwargs)
        self.context = context  # type: ignore[assignment]

    def callback_new_connection(self) -> SimRequestHandler:
        return SimRequestHandler(self)


class SimTcpServer(ModbusTcpServer):
    def __init__(self, context: SimContext, **kwargs: Any) -> None:
        super().__init__(_placeholder(), ignore_missing_devices=True, **kwargs)
        self.context = context  # type: ignore[assignment]

    def callback_new_connection(self) -> SimRequestHandler:
        return SimRequestHandler(self)
