"""Planning a reload from two real configs with catalog profiles (no agent running)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from agent.config import load_config
from agent.harness.site import device, mqtt_uplink, tcp_bus, write_site
from agent.reload import plan_reload, restart_only


def test_planning_a_reload_writes_no_serializer_warnings(tmp_path: Path) -> None:
    """Each SIGHUP compares every device's profile; the lamp controller's simulated points
    (``value: 0``) made pydantic print warnings to the journal on every reload."""
    def config(interval: str) -> Path:
        return write_site(tmp_path / f"config-{interval}.yaml", data_dir=tmp_path / "data",
                          buses={"lan": tcp_bus(1502)},
                          devices={"lamp-1": device("lan", "generic-smart-pole-lamp-controller", 5, interval=interval)})

    old, new = load_config(config("30s")), load_config(config("10s"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = plan_reload(old, new)
    assert plan.devices == {"lamp-1"} and plan.new_devices == {"lamp-1"}


def site(tmp_path: Path, name: str, deadband: float | None = None, extra: dict[str, Any] | None = None) -> Path:
    report = {"report": {"pm2_5": {"deadband": deadband}}} if deadband is not None else {}
    return write_site(tmp_path / name, data_dir=tmp_path / "data", buses={"lan": tcp_bus(1502)},
                      devices={"dust-1": device("lan", "renke-dust-all-in-one", 1, interval="10s", **report)},
                      uplinks={"city": mqtt_uplink(1883, on_change=True), "raw": mqtt_uplink(1884)},
                      extra=extra or {})


def test_a_changed_report_setting_rebuilds_the_on_change_uplinks_that_filter_with_it(tmp_path: Path) -> None:
    old = load_config(site(tmp_path, "a.yaml", deadband=5))
    new = load_config(site(tmp_path, "b.yaml", deadband=20))
    plan = plan_reload(old, new)
    assert plan.uplinks == {"city"} and plan.kept_uplinks == {"raw"}
    assert plan_reload(old, old).uplinks == set()


def test_settings_read_only_at_start_are_named_when_a_reload_changes_them(tmp_path: Path) -> None:
    old = load_config(site(tmp_path, "a.yaml"))
    new = load_config(site(tmp_path, "b.yaml", extra={"health": {"interval": "1m"}, "clock": {"step": "60s"},
                                                      "metrics": {"listen": "127.0.0.1:9109"}}))
    new.config.gateway.timezone = "Europe/Berlin"
    assert restart_only(old, new) == ["gateway.timezone", "clock", "health", "metrics"]
    assert restart_only(old, old) == []


def test_a_reload_that_renames_the_gateway_shows_the_new_id_in_status_and_health(tmp_path: Path) -> None:
    import asyncio
    from datetime import date

    from agent.reload import reload_config
    from agent.runtime import Agent

    def config(gateway: str) -> Path:
        return write_site(tmp_path / "config.yaml", gateway=gateway, data_dir=tmp_path / "data",
                          buses={"lan": tcp_bus(1502)},
                          devices={"dust-1": device("lan", "renke-dust-all-in-one", 1, enabled=False)})

    async def main() -> tuple[str, str]:
        agent = Agent(load_config(config("site-old")))
        agent.outbox.start()
        try:
            config("site-new")
            assert await reload_config(agent)
            health = await asyncio.to_thread(agent.health.payload, date(2026, 11, 28), 0)
            return str((await agent.status.snapshot())["gateway"]), str(health["gateway"])
        finally:
            agent.outbox.close()
            agent.audit.close()

    assert asyncio.run(main()) == ("site-new", "site-new")


def test_an_uplink_stopped_by_a_reload_leaves_the_buffer_alone(tmp_path: Path) -> None:
    """Its commit listener goes with it: a buffer reloaded many times calls only live uplinks."""
    from agent.config import MqttUplink
    from agent.uplinks.messages import GatewayInfo
    from agent.uplinks.mqtt import MqttUplinkWorker
    from buffer.outbox import Outbox

    box = Outbox(tmp_path / "outbox.db", ["central"])
    before = len(box._listeners)
    up = MqttUplink.model_validate({"type": "mqtt", "host": "127.0.0.1", "port": 1})
    worker = MqttUplinkWorker("central", up, GatewayInfo("gw", "1", "h", 0, {}), box, tmp_path)
    assert len(box._listeners) == before + 1
    worker.stop()
    assert len(box._listeners) == before
    box.close()
