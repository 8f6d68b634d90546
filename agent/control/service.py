"""Writes to devices inside the running agent: platform commands, schedule steps, technicians.

Everything that writes goes through :meth:`ControlService.write`: one write (and its
read-back) at a time per device, on the device's bus between polls (the bus's own lock keeps
one owner per port). The agent knows devices only by their ``write`` method (see
:class:`Writer`): which protocol a device speaks is the drivers' business, and a device that
cannot be written refuses with :class:`~drivers.errors.WriteRefused`.

Every case is audited (``control.db``): commands by :class:`~.commands.CommandDesk`, schedule
steps and technician writes here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from drivers.errors import DriverError, WriteRefused
from drivers.reading import Value

from ..config import LoadedConfig
from .audit import AuditLog, Kind
from .commands import Channel, CommandDesk, Status, Target
from .config import SetValue
from .schedule import Clock, engines
from .schedule_runner import ScheduleRunner

log = logging.getLogger(__name__)
TECHNICIAN = "technician"


class Writer(Protocol):
    """What the agent needs of a device to write to it."""

    async def write(self, values: Mapping[str, Value]) -> dict[str, Value]: ...


@dataclass(slots=True)
class Outcome:
    status: Status
    reason: str = ""
    values: dict[str, Any] = field(default_factory=dict)  # read back after the write

    def answer(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "values": self.values}


class ControlService:
    """Must be created inside the agent's event loop."""

    def __init__(self, loaded: LoadedConfig, devices: Mapping[str, Writer], audit: AuditLog,
                 clock: Clock = time.time) -> None:
        cfg = loaded.config
        self.devices = devices
        self.audit = audit
        self.desk = CommandDesk(audit)
        self.targets = self._targets(loaded)
        self._timezone, self._clock = cfg.gateway.timezone, clock  # the gateway's zone changes at a restart only
        self.schedules = ScheduleRunner(engines(cfg.schedules, self._timezone, clock), self.schedule_step)
        self._locks: dict[str, asyncio.Lock] = {}  # one write (and read-back) per device at a time
        # one command per device at a time, from check to reply: a QoS 1 redelivery that arrives
        # while the first delivery is being written waits, then finds its first reply
        self._command_locks: dict[str, asyncio.Lock] = {}
        # called with the device id after every successful write (the daemon polls it at once,
        # so the platform's next reading shows the new state without waiting an interval)
        self.on_written: Callable[[str], None] = lambda _device: None

    def _targets(self, loaded: LoadedConfig) -> dict[str, Target]:
        return {dev_id: Target(dev_id, loaded.profiles[dev_id], dev.control, dev.unit)
                for dev_id, dev in loaded.config.devices.items() if dev_id in self.devices}

    def retarget(self, loaded: LoadedConfig) -> None:
        """After a reload (``devices`` already rebuilt): commands and ``control set`` are checked
        against the new profiles and control settings; a device the reload added can be
        written, one it removed no longer; new and changed schedules take over (see
        :meth:`ScheduleRunner.replace`)."""
        self.targets = self._targets(loaded)
        self.schedules.replace(engines(loaded.config.schedules, self._timezone, self._clock))

    async def write(self, device: str, values: Mapping[str, SetValue]) -> Outcome:
        """Write and read back; the outcome, never an exception for a device's failure."""
        dev = self.devices.get(device)
        if dev is None:
            return Outcome("refused", f"unknown device '{device}'")
        write = getattr(dev, "write", None)  # a protocol added without a write path
        if write is None:
            return Outcome("refused", f"{device}: its protocol has no write path")
        lock = self._locks.setdefault(device, asyncio.Lock())
        async with lock:
            try:
                back = await write(values)
            except WriteRefused as exc:
                return Outcome("refused", str(exc))
            except DriverError as exc:
                log.warning("write to %s failed: %s", device, exc)
                return Outcome("failed", f"{exc.status}: {exc}")
        self.on_written(device)
        return Outcome("ok", "", dict(back))

    async def command(self, channel: Channel, device: str, raw: bytes | str) -> dict[str, Any]:
        """A platform command, from checks to reply (the first reply again for a known id)."""
        async with self._command_locks.setdefault(device, asyncio.Lock()):
            d = self.desk.decide(channel, self.targets.get(device), device, raw)
            if d.status is None:
                out = await self.write(device, d.values)
                self.desk.finish(d, out.status, out.values, out.reason)
                if out.status == "ok":
                    self.schedules.override(device, d.values, d.hold)
                log.info("command %s from %s on %s: %s %s", d.command_id, channel.name, device, out.status,
                         out.reason)
        assert d.reply is not None
        return d.reply

    async def technician(self, device: str, values: dict[str, SetValue], who: str = TECHNICIAN) -> Outcome:
        """``edge-agent control set``: the checks a command gets (allow, limits, min_toggle);
        ``who`` is the login that ran it."""
        target = self.targets.get(device)
        if target is None:
            out = Outcome("refused", f"unknown device '{device}'")
        else:
            _, reason = self.desk.check(target, values)
            out = Outcome("refused", reason) if reason is not None else await self.write(device, values)
        self._audit_write("technician", who, device, values, out, None)
        return out

    async def schedule_step(self, schedule: str, device: str, values: dict[str, SetValue], ref: str) -> Outcome:
        out = await self.write(device, values)
        self._audit_write("schedule", schedule, device, values, out, ref)
        log.info("schedule %s (%s) on %s: %s %s", schedule, ref, device, out.status, out.reason)
        return out

    def _audit_write(self, kind: Kind, source: str, device: str, values: Mapping[str, SetValue], out: Outcome,
                     ref: str | None) -> None:
        if out.status == "ok":
            for point, value in values.items():
                self.audit.note_switch(device, point, value)
        self.audit.record(kind, source, device, dict(values), out.status, out.reason,
                          out.values if out.status == "ok" else None, ref)

    async def handle_set(self, request: dict[str, Any]) -> dict[str, Any]:
        """The control socket's ``control.set``: ``{"device", "values": {point: value}, "user"}``."""
        device, values, user = request.get("device"), request.get("values"), request.get("user")
        if not isinstance(device, str) or not isinstance(values, dict) or not values:
            raise ValueError("control.set takes a device and a values object")
        who = user if isinstance(user, str) and user else TECHNICIAN
        return (await self.technician(device, values, who[:32])).answer()
