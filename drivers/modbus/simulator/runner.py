"""Simulated slaves on one line, served from their own thread and event loop.

For tests and benchmarks that drive the agent's buses in the main thread: ``line`` is
``pty`` (RTU on a socat pty pair; open :attr:`SimRunner.port`), ``tcp`` (Modbus TCP) or
``rtu-over-tcp`` (RTU frames on a TCP socket). Faults may be changed on the slaves while
serving.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Literal

from ...catalog import resolve_profile
from ...simulator.pty import PtyPair
from ..points import as_modbus
from ..wire import bits_per_char
from .server import SimContext, SimSlave, start_serial_server, start_tcp_server

Line = Literal["pty", "tcp", "rtu-over-tcp"]


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class SimRunner:
    def __init__(self, slaves: list[SimSlave] | dict[int, str], line: Line = "pty", *, baudrate: int = 9600,
                 parity: str = "N", stopbits: int = 1, emulate_timing: bool = False,
                 host: str = "127.0.0.1") -> None:
        if isinstance(slaves, dict):
            slaves = [SimSlave(unit=u, profile=as_modbus(resolve_profile(p))) for u, p in slaves.items()]
        self.slaves = slaves
        self.line = line
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.host = host
        self.context = SimContext(slaves, baudrate if emulate_timing else None, bits_per_char(parity, stopbits))
        self.pair: PtyPair | None = None
        self.tcp_port = 0
        self.loop = asyncio.new_event_loop()
        self._server: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"sim-{line}")

    @property
    def port(self) -> str:
        """What the agent opens: the pty's agent end, or ``host:port``."""
        if self.pair is not None:
            return self.pair.agent_end
        return f"{self.host}:{self.tcp_port}"

    def slave(self, unit: int) -> SimSlave:
        return self.context.slaves[unit]

    def start(self) -> SimRunner:
        if self.line == "pty":
            self.pair = PtyPair()
        else:
            self.tcp_port = free_tcp_port(self.host)
        self.thread.start()
        self._ready.wait(10)
        if self._error is not None:
            self.stop()
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to the caller of start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        if self.pair is not None:
            self._server = await start_serial_server(self.pair.device_end, self.context, baudrate=self.baudrate,
                                                     parity=self.parity, stopbits=self.stopbits)
        else:
            self._server = await start_tcp_server(self.host, self.tcp_port, self.context,
                                                  rtu=self.line == "rtu-over-tcp")

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                await self._server.shutdown()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:  # answers still waiting (slow faults, wire time)
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if self.pair is not None:
            self.pair.close()

    def __enter__(self) -> SimRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
