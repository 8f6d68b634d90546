"""The one place the simulator touches pymodbus internals (checked against pymodbus 3.12.1 and 3.16).

Everything else goes through pymodbus's public server API: the simulator's datastore
(:class:`~.server.SimContext`) answers ``async_getValues``/``async_setValues`` and draws
each request's fault there (``dead`` raises ``NoSuchIdException``, which a server with
``ignore_missing_devices`` answers with silence; ``exception`` returns an ``ExcCodes``;
``slow`` waits before returning), and it damages answer frames in the servers'
``trace_packet`` hook. What no public hook can do is here, and this is what it touches:

- ``ServerRequestHandler`` (``pymodbus.server.requesthandler``, not exported): subclassed,
  and handed out by overriding the server's ``callback_new_connection``. Its
  ``handle_request`` reads ``self.last_pdu`` again *after* awaiting the datastore; when a
  slow answer overlaps the next request (a master that timed out and went on), that is the
  next request's PDU, so the late answer would go out under another slave's unit id and
  transaction id: a wrong value on the master's side. Our handler keeps each request's PDU
  with its answer.
- ``TransactionManager.callback_data`` and the ``last_pdu``/``last_addr`` attributes it
  sets: called once per frame so every complete frame of a received chunk is answered
  (the stock handler answers one), and an undecodable request gets no answer (a real slave
  stays silent; the stock handler answers exception 01).
- ``framer``/``loop``/``transport``: the framer builds the answer (its length gives the
  wire time to emulate on RTU lines); the answer is written on ``transport`` directly,
  calling the ``trace_pdu``/``trace_packet`` hooks as ``pdu_send`` does, because
  ``ModbusProtocol.send`` empties the receive buffer and would drop a request that is half
  received while a late answer goes out.
- ``ModbusBaseServer.context``: replaced by our datastore after construction; the public
  constructors only take ``SimDevice`` lists (a fixed register image) or the deprecated
  ``ModbusServerContext``, while our register image is computed at each request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException, NoSuchIdException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.transaction import TransactionManager

log = logging.getLogger(__name__)

TracePacket = Callable[[bool, bytes], bytes]


class Datastore(Protocol):
    """What the handler needs of the simulator's datastore besides pymodbus's async API."""

    def busy(self, unit: int) -> asyncio.Lock: ...

    def emulated_seconds(self, request_bytes: int, response_bytes: int) -> float: ...


class SimRequestHandler(ServerRequestHandler):
    """Answers every request with its own PDU, one at a time per slave, in order."""

    def __init__(self, owner: Any) -> None:
        super().__init__(owner, owner.trace_packet, owner.trace_pdu, owner.trace_connect)
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
            task = self.loop.create_task(self._answer(pdu))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return used

    async def _answer(self, pdu: ModbusPDU) -> None:
        """Answer one request; a slave answers its requests one at a time, in order, like a real one."""
        datastore: Datastore = self.server.context
        async with datastore.busy(pdu.dev_id):
            response = await self._ask(pdu)
            if response is None:
                return
            response.transaction_id = pdu.transaction_id
            response.dev_id = pdu.dev_id
            response = self.trace_pdu(True, response)
            frame = self.framer.buildFrame(response)
            if isinstance(self.framer, FramerRTU):
                delay = datastore.emulated_seconds(len(self.framer.buildFrame(pdu)), len(frame))
                if delay:
                    await asyncio.sleep(delay)
            frame = self.trace_packet(True, frame)
            if self.transport and frame:
                self.transport.write(frame)  # type: ignore[attr-defined]

    async def _ask(self, pdu: ModbusPDU) -> ModbusPDU | None:
        """The datastore's answer to ``pdu``; None when the slave stays silent."""
        try:
            return await pdu.datastore_update(self.server.context, pdu.dev_id)
        except NoSuchIdException:
            return None
        except Exception:  # a simulator bug must not kill the line
            log.exception("simulator: request %s failed", pdu)
            return ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)


def _placeholder() -> list[SimDevice]:
    return [SimDevice(id=0, simdata=[SimData(address=0, values=0, datatype=DataType.REGISTERS)])]


class SimSerialServer(ModbusSerialServer):
    def __init__(self, datastore: Datastore, **kwargs: Any) -> None:
        super().__init__(_placeholder(), ignore_missing_devices=True, **kwargs)
        self.context = datastore  # type: ignore[assignment]

    def callback_new_connection(self) -> SimRequestHandler:
        return SimRequestHandler(self)


class SimTcpServer(ModbusTcpServer):
    def __init__(self, datastore: Datastore, **kwargs: Any) -> None:
        super().__init__(_placeholder(), ignore_missing_devices=True, **kwargs)
        self.context = datastore  # type: ignore[assignment]

    def callback_new_connection(self) -> SimRequestHandler:
        return SimRequestHandler(self)
