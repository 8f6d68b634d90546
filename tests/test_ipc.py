"""The daemon's control socket, on a real UNIX socket in a data directory."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from agent.ipc import ControlServer, DaemonNotRunning, RequestFailed, ask


def test_asking_with_no_daemon_says_so(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match="no edge-agent is running"):
        ask(tmp_path, "ping")
    (tmp_path / "agent.sock").touch()  # left behind by a daemon that died
    with pytest.raises(DaemonNotRunning, match="does not answer"):
        ask(tmp_path, "ping")


def test_registered_operations_answer_and_failures_are_answers(tmp_path: Path) -> None:
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def boom(_req: dict) -> dict:
        raise ValueError("no such lamp")

    async def serve() -> None:
        server = ControlServer(tmp_path)
        server.register("echo", lambda req: {"got": req.get("x")})
        server.register("boom", boom)
        await server.start()
        stop.append(asyncio.Event())
        ready.set()
        await stop[0].wait()
        await server.close()

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    t.start()
    try:
        assert ready.wait(5)
        assert ask(tmp_path, "echo", x=[1, 2]) == {"ok": True, "got": [1, 2]}
        assert ask(tmp_path, "ping")["pid"] > 0
        with pytest.raises(RequestFailed, match="no such lamp"):
            ask(tmp_path, "boom")
        with pytest.raises(RequestFailed, match="unknown operation 'nope'"):
            ask(tmp_path, "nope")
        assert oct((tmp_path / "agent.sock").stat().st_mode & 0o777) == "0o660"
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        t.join(5)
    assert not (tmp_path / "agent.sock").exists()
