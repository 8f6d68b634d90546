"""The running agent: pollers → outbox → uplinks, and an orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time

from buffer.outbox import Outbox
from drivers.reading import Reading

from . import __version__
from .alarms.engine import STATE_KEY, AlarmEngine
from .alarms.store import saved_state
from .config import LoadedConfig
from .control.audit import DB_NAME, AuditLog
from .control.mqtt_commands import CommandPort
from .control.service import ControlService
from .health.activity import DeviceActivity
from .health.days import LocalDays
from .health.publisher import HealthPublisher
from .health.status import StatusSource
from .ipc import ControlServer
from .scheduler import DevicePoller
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
        self.days = LocalDays(cfg.gateway.timezone)
        self.outbox = Outbox(data_dir / "outbox.db", list(cfg.uplinks), max_bytes=cfg.buffer.max_bytes,
                             commit_interval=cfg.buffer.commit_interval, day_of=self.days.day_of)
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
        self.uplinks = [MqttUplinkWorker(name, up, info, self.outbox, base, report=report,
                                         alarms=self.alarms if cfg.alarms or saved else None,
                                         commands=CommandPort(name, up, cfg.gateway.id, base, self.writes.command,
                                                              loop) if up.commands else None)
                        for name, up in cfg.uplinks.items()]
        self.control = ControlServer(data_dir)  # status, control set, ... register their operations
        self.activity = {dev_id: DeviceActivity() for dev_id in self.pollers}
        self.status = StatusSource(cfg.gateway.id, self.pollers, self.activity,
                                   {up.name: up for up in self.uplinks}, self.outbox, self.days)
        if cfg.alarms:
            self.status.add_section("alarms", self.alarms.active)
        self.control.register("status", lambda _req: self.status.snapshot())
        self.health = HealthPublisher(self.status, cfg.health.interval, self.publish_health)
        self.metrics = None
        if cfg.metrics is not None:
            from .health.metrics import MetricsServer  # prometheus-client only when asked for

            self.metrics = MetricsServer(cfg.metrics.listen, self.status)
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

    def publish_health(self, data: str) -> None:
        for up in self.uplinks:
            up.publish_health(data)

    def submit(self, reading: Reading) -> None:
        activity = self.activity.get(reading.device)
        if activity is not None:
            activity.note(reading)
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
        tasks.append(asyncio.create_task(self.health.run(), name="health"))
        if self.metrics is not None:
            self.metrics.start()
        try:
            await stop.wait()
        finally:
            log.info("stopping: flushing the buffer")
            await self.control.close()
            if self.metrics is not None:
                self.metrics.stop()
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
