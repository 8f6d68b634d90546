"""The running agent: pollers → outbox → uplinks, and an orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time
from zoneinfo import ZoneInfo

from buffer.outbox import Outbox
from drivers.reading import Reading

from . import __version__
from .alarms.engine import STATE_KEY, AlarmEngine
from .alarms.store import saved_state
from .config import LoadedConfig, MqttUplink
from .control.audit import DB_NAME, AuditLog
from .control.mqtt_commands import CommandPort
from .control.service import ControlService
from .ipc import ControlServer
from .scheduler import DevicePoller
from .uplinks.hj212.config import Hj212Uplink
from .uplinks.hj212.worker import Hj212UplinkWorker
from .uplinks.mqtt import GatewayInfo, MqttUplinkWorker
from .wiring import build_devices, device_metadata

log = logging.getLogger(__name__)


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


async def run_agent(loaded: LoadedConfig, stop: asyncio.Event | None = None) -> None:
    """Build the agent inside the running event loop (the Modbus clients need it) and run it."""
    await Agent(loaded).run(stop)


class Agent:
    """Must be created inside a running event loop."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        cfg = loaded.config
        data_dir = loaded.data_dir
        self.data_dir = data_dir
        self.outbox = Outbox(data_dir / "outbox.db", list(cfg.uplinks), max_bytes=cfg.buffer.max_bytes,
                             commit_interval=cfg.buffer.commit_interval)
        self.buses, self.devices = build_devices(loaded)
        info = GatewayInfo(cfg.gateway.id, __version__, config_hash(loaded.text),
                           int(time.time() * 1000), device_metadata(loaded))
        base = loaded.file.resolve().parent
        self.pollers = {
            dev_id: DevicePoller(dev_id, dev.read, cfg.devices[dev_id].interval, self.submit)
            for dev_id, dev in self.devices.items()
        }
        reader = self.outbox.reader()
        try:
            saved = saved_state(reader.conn)
        finally:
            reader.close()
        self.alarms = AlarmEngine(cfg.alarms, self._alarm_event, self._hasten, saved)
        self.audit = AuditLog(data_dir / DB_NAME)
        self.writes = ControlService(loaded, self.devices, self.audit)
        self.writes.on_written = self._poll_now
        self._extra_polls: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        # without rules the retained set is published only to clear one left from before
        report = {dev_id: dev.report for dev_id, dev in cfg.devices.items() if dev.report}
        self.uplinks: list[MqttUplinkWorker | Hj212UplinkWorker] = [
            MqttUplinkWorker(name, up, info, self.outbox, base, report=report,
                             alarms=self.alarms if cfg.alarms or saved else None,
                             commands=CommandPort(name, up, cfg.gateway.id, base, self.writes.command,
                                                  loop) if up.commands else None)
            for name, up in cfg.uplinks.items() if isinstance(up, MqttUplink)]
        points = {dev: list(profile.points) for dev, profile in loaded.profiles.items()}
        intervals = {dev: d.interval for dev, d in cfg.devices.items()}
        tz = ZoneInfo(cfg.gateway.timezone)
        self.uplinks += [Hj212UplinkWorker(name, up, self.outbox, data_dir, points, intervals, tz)
                         for name, up in cfg.uplinks.items() if isinstance(up, Hj212Uplink)]
        self.control = ControlServer(data_dir)  # status, control set, ... register their operations
        self.control.register("alarms", lambda _req: {"alarms": self.alarms.snapshot(),
                                                      "active": self.alarms.active()})
        self.control.register("control.set", self.writes.handle_set)

    def _poll_now(self, device: str) -> None:
        """One extra reading right after a write, so the platform sees the new state."""
        poller = self.pollers.get(device)
        if poller is None:
            return

        async def poll() -> None:
            self.submit(await poller.poll_once())

        task = asyncio.get_running_loop().create_task(poll(), name=f"poll-after-write-{device}")
        self._extra_polls.add(task)
        task.add_done_callback(self._extra_polls.discard)

    def submit(self, reading: Reading) -> None:
        self.outbox.submit(reading)
        self.alarms.feed(reading)

    def _alarm_event(self, event: Reading, state: str) -> None:
        self.outbox.submit_event(event, STATE_KEY, state)

    def _hasten(self, device: str, interval: float | None) -> None:
        poller = self.pollers.get(device)
        if poller is not None:
            poller.hasten(interval)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        self.outbox.start()
        for up in self.uplinks:
            up.start()
        await self.control.start()
        cfg = self.loaded.config
        log.info("edge-agent %s: gateway %s, %d buses, %d devices, %d uplinks, buffer %s",
                 __version__, cfg.gateway.id, len(self.buses), len(self.devices), len(self.uplinks),
                 self.outbox.path)
        tasks = [asyncio.create_task(p.run(), name=f"poll-{p.device_id}") for p in self.pollers.values()]
        tasks.append(asyncio.create_task(self.writes.schedules.run(), name="schedules"))
        try:
            await stop.wait()
        finally:
            log.info("stopping: flushing the buffer")
            await self.control.close()
            tasks += self._extra_polls
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for bus in self.buses.values():
                await bus.close()
            self.outbox.sync()
            for up in self.uplinks:
                up.stop()
            self.outbox.close()
            self.audit.close()
