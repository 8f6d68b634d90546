"""The running agent: pollers → outbox → uplinks, reload on SIGHUP, and an orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time
from collections.abc import Coroutine
from zoneinfo import ZoneInfo

from buffer.outbox import Outbox
from drivers.protocols import Bus, Device
from drivers.reading import Reading

from . import __version__
from .alarms.engine import STATE_KEY, AlarmEngine
from .alarms.store import saved_state
from .clock import ClockGuard, ClockSource
from .config import LoadedConfig, MqttUplink
from .control.audit import DB_NAME, AuditLog
from .control.mqtt_commands import CommandPort
from .control.service import ControlService
from .health.activity import DeviceActivity
from .health.clock import clock_state
from .health.days import LocalDays
from .health.publisher import HealthPublisher
from .health.status import StatusSource
from .ipc import ControlServer
from .scheduler import DevicePoller
from .sdnotify import Notifier
from .startsignals import StartSignals
from .uplinks.hj212.config import Hj212Uplink
from .uplinks.hj212.worker import Hj212UplinkWorker
from .uplinks.mqtt import GatewayInfo, MqttUplinkWorker
from .wiring import build_devices, device_metadata

log = logging.getLogger(__name__)


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


async def run_agent(loaded: LoadedConfig, stop: asyncio.Event | None = None, log_level: str | None = None,
                    signals: StartSignals | None = None) -> None:
    """Build the agent inside the running event loop (the Modbus clients need it) and run it.
    ``log_level`` (``run --log-level``) outranks the config's, across reloads too. ``signals``
    held the signals of the start; a SIGHUP among them reloads once the agent is up."""
    agent = Agent(loaded)
    agent.log_level = log_level
    await agent.run(stop, signals)


class Agent:
    """Must be created inside a running event loop."""

    def __init__(self, loaded: LoadedConfig, notifier: Notifier | None = None,
                 clock_source: ClockSource | None = None) -> None:
        self.loaded = loaded
        cfg = loaded.config
        data_dir = loaded.data_dir
        self.data_dir = data_dir
        self.started_ms = int(time.time() * 1000)
        self.notifier = notifier or Notifier()
        self.days = LocalDays(cfg.gateway.timezone)
        self.outbox = Outbox(data_dir / "outbox.db", list(cfg.uplinks), max_bytes=cfg.buffer.max_bytes,
                             commit_interval=cfg.buffer.commit_interval, day_of=self.days.day_of)
        self.clock = ClockGuard(data_dir, cfg.clock.step, clock_source, on_good=self.outbox.release_held,
                                on_bad=self.outbox.hold_from_now)
        self.buses: dict[str, Bus]
        self.devices: dict[str, Device]
        self.buses, self.devices = build_devices(loaded)
        reader = self.outbox.reader()
        try:
            saved = saved_state(reader.conn)
        finally:
            reader.close()
        self.pollers: dict[str, DevicePoller] = {}  # before the alarms: restored ones may ask for fast polls
        self.alarms = AlarmEngine(cfg.alarms, self._alarm_event, self._hasten, saved)
        self.alarms_published = bool(cfg.alarms or saved)  # else the retained set is never touched
        self.audit = AuditLog(data_dir / DB_NAME)
        self.activity: dict[str, DeviceActivity] = {}  # polls and errors in the last hour, per device
        self.poll_tasks: dict[str, asyncio.Task[None]] = {}
        for dev_id in self.devices:
            self.add_poller(dev_id)
        self.writes = ControlService(loaded, self.devices, self.audit)
        self.writes.on_written = self._poll_now
        self._extra_polls: set[asyncio.Task[None]] = set()
        info = self.gateway_info(loaded)
        self.uplinks: dict[str, MqttUplinkWorker | Hj212UplinkWorker] = {
            name: self.make_uplink(loaded, name, info) for name in cfg.uplinks}
        self.control = ControlServer(data_dir)  # status, control set, ... register their operations
        self.status = StatusSource(cfg.gateway.id, self.pollers, self.activity, self.uplinks, self.outbox, self.days)
        # the kernel's NTP state, and whether readings are held until the clock is known good
        self.status.add_section("clock", lambda: {**clock_state(), **self.clock.state()})
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
        self.control.register("clock", lambda _req: self.clock.state())
        self.reload_lock = asyncio.Lock()
        self.log_level: str | None = None  # from the command line: a reload keeps it
        self._background: set[asyncio.Task[object]] = set()

    # -- parts that a reload replaces one by one ------------------------------------------
    def gateway_info(self, loaded: LoadedConfig) -> GatewayInfo:
        return GatewayInfo(loaded.config.gateway.id, __version__, config_hash(loaded.text), self.started_ms,
                           device_metadata(loaded))

    def make_uplink(self, loaded: LoadedConfig, name: str,
                    info: GatewayInfo) -> MqttUplinkWorker | Hj212UplinkWorker:
        cfg, up = loaded.config, loaded.config.uplinks[name]
        if isinstance(up, Hj212Uplink):
            points = {dev: list(profile.points) for dev, profile in loaded.profiles.items()}
            intervals = {dev: d.interval for dev, d in cfg.devices.items()}
            return Hj212UplinkWorker(name, up, self.outbox, loaded.data_dir, points, intervals,
                                     ZoneInfo(cfg.gateway.timezone))
        assert isinstance(up, MqttUplink)
        base = loaded.file.resolve().parent
        report = {dev_id: dev.report for dev_id, dev in cfg.devices.items() if dev.report}
        commands = (CommandPort(name, up, cfg.gateway.id, base, self.writes.command, asyncio.get_running_loop())
                    if up.commands else None)
        return MqttUplinkWorker(name, up, info, self.outbox, base, report=report,
                                alarms=self.alarms if self.alarms_published else None, commands=commands)

    def add_poller(self, dev_id: str) -> DevicePoller:
        poller = DevicePoller(dev_id, self.devices[dev_id].read, self.loaded.config.devices[dev_id].interval,
                              self.submit, stamp=self.clock.stamp)
        poller.hasten(self.alarms.fast_interval(dev_id))  # an alarm raised before a restart or reload
        self.pollers[dev_id] = poller
        self.activity.setdefault(dev_id, DeviceActivity())
        return poller

    def start_poller(self, dev_id: str) -> None:
        poller = self.pollers.get(dev_id) or self.add_poller(dev_id)
        self.poll_tasks[dev_id] = asyncio.create_task(poller.run(), name=f"poll-{dev_id}")

    async def stop_pollers(self, dev_ids: list[str]) -> None:
        tasks = [self.poll_tasks.pop(d) for d in dev_ids if d in self.poll_tasks]
        for dev_id in dev_ids:
            self.pollers.pop(dev_id, None)
            self.activity.pop(dev_id, None)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
        for up in self.uplinks.values():
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

    def status_line(self) -> str:
        """One line for systemd's STATUS=: "3 devices, 1 offline; 2 of 2 uplinks up"."""
        offline = sum(1 for p in self.pollers.values() if p.offline)
        up = sum(1 for u in self.uplinks.values() if u.stats.connected)
        devices, uplinks = len(self.pollers), len(self.uplinks)
        line = (f"{devices} device{'' if devices == 1 else 's'}, {offline} offline; "
                f"{up} of {uplinks} uplink{'' if uplinks == 1 else 's'} up")
        return line if self.clock.good else line + "; clock not known good, readings held"

    def spawn(self, coro: Coroutine[object, object, object], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def on_sighup(self) -> None:
        from .reload import reload_config

        self.spawn(reload_config(self), "reload")

    # -- life cycle -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None, signals: StartSignals | None = None) -> None:
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.on_sighup)
        self.outbox.start()
        for up in self.uplinks.values():
            up.start()
        await self.control.start()
        cfg = self.loaded.config
        log.info("edge-agent %s: gateway %s, %d buses, %d devices, %d uplinks, buffer %s",
                 __version__, cfg.gateway.id, len(self.buses), len(self.devices), len(self.uplinks),
                 self.outbox.path)
        for dev_id in self.devices:
            self.start_poller(dev_id)
        self.spawn(self.writes.schedules.run(), "schedules")
        self.spawn(self.health.run(), "health")
        if self.metrics is not None:
            self.metrics.start()
        self.notifier.ready(self.status_line())
        if signals is not None and signals.reload_pending:
            log.info("SIGHUP during the start: reloading the config now")
            self.on_sighup()
        self.spawn(self.notifier.keep_alive(self.status_line), "systemd-keep-alive")
        try:
            await stop.wait()
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        log.info("stopping: flushing the buffer")
        self.notifier.stopping()
        await self.control.close()
        if self.metrics is not None:
            self.metrics.stop()
        tasks = [*self._background, *self._extra_polls]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.stop_pollers(list(self.poll_tasks))
        for bus in self.buses.values():
            await bus.close()
        self.outbox.sync()
        for up in self.uplinks.values():
            up.stop()
        self.outbox.close()
        self.audit.close()
        self.clock.persist(force=True)
