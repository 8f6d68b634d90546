"""Real parts for the tests: simulated slaves in a thread, an MQTT collector, the agent process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

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


@dataclass
class Received:
    device: str
    seq: int
    ts: int
    status: str
    values: dict[str, Any]
    topic: str
    errors: dict[str, str] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)


@dataclass
class Collector:
    """A platform stand-in: subscribes to the gateway's topics with a persistent session."""

    host: str
    port: int
    topic: str = "edge/#"
    client_id: str = "test-platform"
    readings: list[Received] = field(default_factory=list)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: list[dict[str, Any]] = field(default_factory=list)
    raw: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)

    def start(self) -> Collector:
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(self.host, self.port, clean_start=False, properties=props)
        self.client.loop_start()
        wait_for(lambda: self.client.is_connected(), 10, "the collector to connect")
        return self

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.raw.append((msg.topic, msg.payload))
            try:
                body = json.loads(msg.payload)
            except ValueError:
                return
            parts = msg.topic.split("/")
            if len(parts) >= 4 and parts[2] == "up":
                for r in body["readings"]:
                    self.readings.append(Received(body["device"], r["seq"], r["ts"], r["status"],
                                                  r.get("values", {}), msg.topic, r.get("errors", {}),
                                                  r.get("flags", {})))
            elif len(parts) >= 4 and parts[2] == "meta":
                self.meta[parts[3]] = body
            elif len(parts) == 3 and parts[2] == "status":
                self.status.append(body)

    def seqs(self) -> list[int]:
        with self.lock:
            return [r.seq for r in self.readings]

    def by_device(self, device: str) -> list[Received]:
        with self.lock:
            return [r for r in self.readings if r.device == device]


class AgentProcess:
    """``edge-agent run -c FILE`` as a real process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "-c", str(self.config)],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._log.close()
        return rc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def write_config(path: Path, *, gateway: str = "site-test", data_dir: Path, buses: dict[str, str],
                 devices: dict[str, str], uplinks: str, extra: str = "") -> Path:
    lines = ["gateway:", f"  id: {gateway}", f"  data_dir: {data_dir}", "buses:"]
    lines += [f"  {k}: {v}" for k, v in buses.items()]
    lines += ["devices:"] + [f"  {k}: {v}" for k, v in devices.items()]
    lines += ["uplinks:", uplinks.rstrip("\n")]
    if extra:
        lines.append(extra.rstrip("\n"))
    path.write_text("\n".join(lines) + "\n")
    return path


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
