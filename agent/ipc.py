"""The running daemon's local control socket: ``data_dir/agent.sock``.

One JSON request per connection, one JSON answer: ``{"op": "status", ...}`` →
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Parts of the agent register
the operations they answer (``status``, ``control.set``, ``alarms``, ...); commands such
as ``edge-agent status`` ask with :func:`ask`. The socket is owner- and group-only
(mode 0660), like the data directory it lives in, and it answers only on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOCKET_NAME = "agent.sock"
MAX_REQUEST = 64 * 1024

Answer = dict[str, Any]
Handler = Callable[[dict[str, Any]], Answer | Awaitable[Answer]]


class DaemonNotRunning(Exception):
    """No daemon answers on the data directory's socket."""

    def __init__(self, data_dir: Path, why: str) -> None:
        super().__init__(f"no edge-agent is running on {data_dir} ({why})")
        self.data_dir = data_dir


class RequestFailed(Exception):
    """The daemon answered ``ok: false``."""


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


class ControlServer:
    """Serves registered operations on ``data_dir/agent.sock`` inside the agent's event loop."""

    def __init__(self, data_dir: Path) -> None:
        self.path = socket_path(data_dir)
        self._handlers: dict[str, Handler] = {"ping": lambda _req: {"pid": os.getpid()}}
        self._server: asyncio.AbstractServer | None = None

    def register(self, op: str, handler: Handler) -> None:
        self._handlers[op] = handler

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by a daemon that died; the data_dir lock says we own it
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                           limit=MAX_REQUEST)
        except OSError as exc:
            log.warning("control socket %s not available (%s): status and control set "
                        "will not reach this daemon", self.path, exc.strerror or exc)
            return
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o660)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            answer = await self._answer(line)
            writer.write(json.dumps(answer, default=str).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, OSError, ValueError):
            pass  # the asker went away or sent nothing: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> Answer:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "the request is not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"ok": False, "error": "a request is a JSON object with an 'op'"}
        handler = self._handlers.get(request["op"])
        if handler is None:
            return {"ok": False, "error": f"unknown operation '{request['op']}'"}
        try:
            result = handler(request)
            if isinstance(result, Awaitable):
                result = await result
        except Exception as exc:  # an operation's failure is an answer, never the daemon's end
            log.exception("control socket: %s failed", request["op"])
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, **result}


def ask(data_dir: Path, op: str, timeout: float = 10.0, **args: Any) -> Answer:
    """Ask the daemon on ``data_dir``; raises :class:`DaemonNotRunning` or :class:`RequestFailed`."""
    path = socket_path(data_dir)
    if not path.exists():
        raise DaemonNotRunning(data_dir, f"no {SOCKET_NAME}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            raise DaemonNotRunning(data_dir, f"{SOCKET_NAME} does not answer") from None
        except PermissionError:
            raise DaemonNotRunning(data_dir, f"no permission to use {path}") from None
        s.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                raise RequestFailed(f"the daemon did not answer '{op}' within {timeout:g} s") from None
            if not chunk:
                break
            chunks.append(chunk)
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise RequestFailed(f"the daemon's answer to '{op}' is not JSON") from None
    if not answer.get("ok"):
        raise RequestFailed(str(answer.get("error", "failed")))
    return dict(answer)
