"""SIGHUP: re-read the config and apply what changed, without a restart.

The new config passes the same checks as at start (an invalid one is refused, each problem
logged as ``FILE:LINE: dotted.path: message``, and the running config stays). Then only
what changed is rebuilt:

- a bus whose settings (or protocol) changed, or that is gone, is closed before any new bus
  opens (one owner per port), and every device on it is rebuilt;
- a device whose entry or profile changed is rebuilt on its bus; the others keep polling
  on their schedule, with their bus connection;
- devices' ``control`` settings apply to the next command: commands and ``control set``
  are checked against the reloaded profiles and settings;
- a new or changed schedule applies what it has in force now, as at start (a device a
  platform command holds keeps the held values until the hold ends);
- an uplink whose settings changed reconnects; the others keep their connection and send
  the new birth and device metadata on it; an uplink removed while readings wait for it is
  refused, as at start (nothing in the buffer is lost: it is the same buffer throughout).

``gateway.data_dir``, ``gateway.timezone``, ``buffer``, ``clock``, ``health``, ``metrics``
and ``alarms`` take effect at the next start (logged as such).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drivers.protocols import DEFAULT as DEFAULT_PROTOCOL
from drivers.yamlsource import SourceError

from .config import LoadedConfig, load_config
from .logsetup import set_level
from .preflight import stranded_from_counts
from .wiring import build_bus, build_device, bus_protocols

if TYPE_CHECKING:
    from .runtime import Agent

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ReloadPlan:
    buses: set[str] = field(default_factory=set)  # to close (changed or removed)
    new_buses: set[str] = field(default_factory=set)  # to open (changed or added)
    devices: set[str] = field(default_factory=set)  # to stop (changed, removed, or on a rebuilt bus)
    new_devices: set[str] = field(default_factory=set)  # to build and start
    uplinks: set[str] = field(default_factory=set)  # to stop (changed or removed)
    new_uplinks: set[str] = field(default_factory=set)  # to start (changed or added)
    kept_uplinks: set[str] = field(default_factory=set)

    def summary(self, old: LoadedConfig, new: LoadedConfig) -> str:
        def part(what: str, before: Iterable[str], after: Iterable[str], rebuilt: set[str]) -> str:
            added, removed = set(after) - set(before), set(before) - set(after)
            changed = rebuilt - added - removed
            kept = len(set(after) & set(before)) - len(changed)
            return f"{what}: {len(added)} added, {len(removed)} removed, {len(changed)} rebuilt, {kept} kept"

        return "; ".join([
            part("buses", old.config.buses, new.config.buses, self.new_buses),
            part("devices", _enabled(old), _enabled(new), self.new_devices),
            part("uplinks", old.config.uplinks, new.config.uplinks, self.new_uplinks)])


def _enabled(loaded: LoadedConfig) -> set[str]:
    return {d for d, dev in loaded.config.devices.items() if dev.enabled}


def _bus_key(loaded: LoadedConfig, name: str) -> object:
    protocol = bus_protocols(loaded).get(name, DEFAULT_PROTOCOL)
    return loaded.config.buses[name].model_dump(mode="json"), protocol


def _device_key(loaded: LoadedConfig, dev_id: str) -> object:
    return loaded.config.devices[dev_id].model_dump(mode="json"), loaded.profiles[dev_id].model_dump(mode="json")


def _reports(loaded: LoadedConfig) -> dict[str, object]:
    """Each device's report-by-exception settings (an on_change uplink's filter holds them)."""
    return {d: dev.model_dump(mode="json")["report"] for d, dev in loaded.config.devices.items() if dev.report}


def plan_reload(old: LoadedConfig, new: LoadedConfig) -> ReloadPlan:
    plan = ReloadPlan()
    ob, nb = old.config.buses, new.config.buses
    plan.buses = {b for b in ob if b not in nb or _bus_key(old, b) != _bus_key(new, b)}
    plan.new_buses = {b for b in nb if b not in ob or b in plan.buses}
    before, after = _enabled(old), _enabled(new)
    for dev_id in before:
        if (dev_id not in after or old.config.devices[dev_id].bus in plan.buses
                or _device_key(old, dev_id) != _device_key(new, dev_id)):
            plan.devices.add(dev_id)
    plan.new_devices = {d for d in after if d not in before or d in plan.devices}
    ou, nu = old.config.uplinks, new.config.uplinks
    gateway_changed = old.config.gateway.id != new.config.gateway.id
    plan.uplinks = {u for u in ou if u not in nu or gateway_changed
                    or ou[u].model_dump(mode="json") != nu[u].model_dump(mode="json")
                    or (ou[u].type == "hj212" and plan.devices)  # its aggregates know each device
                    or (getattr(nu[u], "on_change", False) and _reports(old) != _reports(new))}  # its filter
    plan.new_uplinks = {u for u in nu if u not in ou or u in plan.uplinks}
    plan.kept_uplinks = set(nu) - plan.new_uplinks
    return plan


def restart_only(old: LoadedConfig, new: LoadedConfig) -> list[str]:
    """Settings that a running agent keeps until it is started again."""
    out = []
    if old.data_dir != new.data_dir:
        out.append(f"gateway.data_dir (stays {old.data_dir} until the next start)")
    if old.config.gateway.timezone != new.config.gateway.timezone:
        out.append("gateway.timezone")  # local days of the buffer's counts, health and status
    if old.config.buffer != new.config.buffer:
        out.append("buffer")
    out += [key for key in ("clock", "health", "metrics")
            if getattr(old.config, key) != getattr(new.config, key)]
    if old.config.alarms != new.config.alarms:  # the alarm engine is set up once, at start
        out.append("alarms")
    return out


async def reload_config(agent: Agent) -> bool:
    """Re-read the agent's config file and apply it; False (the old config running) if refused."""
    async with agent.reload_lock:
        path = agent.loaded.file
        log.info("reload: reading %s", path)
        agent.notifier.reloading()
        try:
            applied = await _reload(agent)
        finally:
            agent.notifier.ready(agent.status_line())
        return applied


async def _reload(agent: Agent) -> bool:
    old = agent.loaded
    try:
        new = await asyncio.to_thread(load_config, old.file)
    except SourceError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        log.error("reload refused: %d problem(s) in %s; the running config stays", len(exc.problems), old.file)
        return False
    except OSError as exc:
        log.error("reload refused: %s: %s; the running config stays", old.file, exc.strerror or exc)
        return False
    plan = plan_reload(old, new)
    try:
        stranded = await asyncio.to_thread(agent.outbox.change_uplinks, list(new.config.uplinks))
    except (TimeoutError, sqlite3.Error, OSError) as exc:
        log.error("reload refused: the buffer could not take the new uplinks (%s); the running config stays", exc)
        return False
    if stranded:
        problems = stranded_from_counts(new, stranded, running=True)
        for problem in problems:
            log.error("%s", problem)
        log.error("reload refused: %d problem(s) in %s; the running config stays", len(problems), old.file)
        return False
    for warning in new.warnings:
        log.warning("%s:%d: %s: %s", warning.file, warning.line, warning.path, warning.message)
    await _apply_uplinks(agent, new, plan)
    await _apply_devices(agent, new, plan)
    agent.writes.retarget(new)
    agent.loaded = new
    agent.status.gateway = new.config.gateway.id  # status and the health payload name the gateway
    set_level(agent.log_level or new.config.logging.level)
    later = restart_only(old, new)
    if later:
        log.warning("reload: %s changed; that takes effect at the next start", ", ".join(later))
    log.info("reload: applied %s (%s)", new.file, plan.summary(old, new))
    return True


async def _apply_uplinks(agent: Agent, new: LoadedConfig, plan: ReloadPlan) -> None:
    for name in sorted(plan.uplinks):
        worker = agent.uplinks.pop(name)
        await asyncio.to_thread(worker.stop)
    info = agent.gateway_info(new)
    for name in sorted(plan.new_uplinks):
        worker = agent.make_uplink(new, name, info)
        agent.uplinks[name] = worker
        worker.start()
    for name in plan.kept_uplinks:
        agent.uplinks[name].update_info(info)
    in_order = {name: agent.uplinks[name] for name in new.config.uplinks}
    agent.uplinks.clear()  # the same dict: status and metrics hold it
    agent.uplinks.update(in_order)


async def _apply_devices(agent: Agent, new: LoadedConfig, plan: ReloadPlan) -> None:
    await agent.stop_pollers(sorted(plan.devices))
    for dev_id in plan.devices:
        agent.devices.pop(dev_id, None)
    for name in sorted(plan.buses):  # closed before any new bus opens: one owner per port
        await agent.buses.pop(name).close()
    protocols = bus_protocols(new)
    for name in sorted(plan.new_buses):
        agent.buses[name] = build_bus(name, new.config.buses[name], protocols.get(name, DEFAULT_PROTOCOL))
    agent.loaded = new  # pollers read their interval from the config they belong to
    for dev_id in sorted(plan.new_devices):
        agent.devices[dev_id] = build_device(new, dev_id, agent.buses[new.config.devices[dev_id].bus])
        agent.start_poller(dev_id)
