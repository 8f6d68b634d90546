"""Real parts for the tests: simulated slaves in a thread, the agent process. The site config
builder and the MQTT collector are the shared ones in agent.harness."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.modbus.simulator.runner import SimRunner
from drivers.modbus.simulator.server import SimSlave

ROOT = Path(__file__).resolve().parents[1]


def edge_agent(*args: str, timeout: float = 60, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    """``edge-agent ARGS`` as a technician runs it: a process, its output captured."""
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=env)


def wait_for(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class SimulatorThread:
    """Simulated Modbus slaves on a pty pair and/or Modbus TCP: one SimRunner (its own thread
    and event loop) per line."""

    def __init__(self, pty: dict[int, str] | None = None, tcp: dict[int, str] | None = None,
                 baudrate: int = 9600, emulate_timing: bool = False) -> None:
        self.runners: dict[str, SimRunner] = {}
        if pty:
            self.runners["pty"] = SimRunner(pty, "pty", baudrate=baudrate, emulate_timing=emulate_timing)
        if tcp:
            self.runners["tcp"] = SimRunner(tcp, "tcp")

    @property
    def serial_port(self) -> str:
        return self.runners["pty"].port

    @property
    def tcp_port(self) -> int:
        return self.runners["tcp"].tcp_port

    def slave(self, line: str, unit: int) -> SimSlave:
        return self.runners[line].slave(unit)

    def start(self) -> SimulatorThread:
        started: list[SimRunner] = []
        try:
            for runner in self.runners.values():
                started.append(runner.start())
        except BaseException:
            for runner in started:
                runner.stop()
            raise
        return self

    def stop(self) -> None:
        for runner in self.runners.values():
            runner.stop()


class AgentProcess:
    """``edge-agent run -c FILE`` as a real process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}  # SIGABRT prints every thread
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "-c", str(self.config)],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:  # stuck: its threads' stacks go to the log, for the failure report
            self.proc.send_signal(signal.SIGABRT)
            try:
                rc = self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        self._log.close()
        return rc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def installed_example(text: str, name: str, tmp_path: Path) -> Path:
    """An example config as on a gateway: its /etc/edge-agent files exist (mode 600) and its
    data_dir is writable; all of it under ``tmp_path``. Returns the config file's path."""
    etc = tmp_path / "etc"
    text = text.replace("/etc/edge-agent/", f"{etc}/").replace("/var/lib/edge-agent", str(tmp_path / "data"))
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for file in re.findall(re.escape(str(etc)) + r"/[\w./-]+", line):
            Path(file).parent.mkdir(parents=True, exist_ok=True)
            Path(file).write_text("x\n")
            Path(file).chmod(0o600)
    cfg = tmp_path / name
    cfg.write_text(text, encoding="utf-8")
    return cfg


async def read_all(device: Any) -> dict[str, Any]:
    """Every point's value from one poll of a Modbus or DL/T 645 device; a poll with any bad
    point fails the test (its errors are shown)."""
    polled = await device.read()
    assert not polled.errors, f"points without a valid value: {polled.errors}"
    values: dict[str, Any] = polled.values
    return values
