"""Switching and dimming lamps from a platform, end to end on real parts: the lamp controller
simulated on a pty, the agent as a process, mosquitto, a platform client publishing commands.
Every refusal is checked on the simulator's request log: nothing was written."""

from __future__ import annotations

import getpass
import json
import signal
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import load_config
from agent.control.commands import sign
from agent.control.schedule import engines
from agent.harness.collector import Collector
from agent.harness.site import device, mqtt_uplink, serial_bus, write_site
from agent.localbroker import LocalBroker
from drivers.modbus.simulator.server import SimSlave
from tests.helpers import AgentProcess, SimulatorThread, edge_agent, wait_for

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

KEY = b"pole-secret-17"
LAMP = "generic-smart-pole-lamp-controller"
DOWN = "edge/site-test/down/lamp-1/set"
REPLY = "edge/site-test/reply/lamp-1"
UP = "edge/site-test/up/"  # telemetry of the uplink with commands (the other one is noctl/...)


def lamp_site(tmp_path: Path, sim: SimulatorThread, uplinks: dict[str, dict[str, Any]], extra: str = "",
              interval: str = "1s", allow: tuple[str, ...] = ("lamp_on", "dim_level")) -> Path:
    """The lamp controller on a pty line, allowed to be switched and dimmed."""
    return write_site(
        tmp_path / "config.yaml", data_dir=tmp_path / "data",
        buses={"rs485-1": serial_bus(sim.serial_port, baudrate=9600, timeout="0.5s")},
        devices={"lamp-1": device("rs485-1", LAMP, 5, interval=interval, control={"allow": list(allow)})},
        uplinks=uplinks, extra=extra)


def lamp_config(tmp_path: Path, sim: SimulatorThread, broker: LocalBroker, extra: str = "",
                interval: str = "1s") -> Path:
    (tmp_path / "cmd.key").write_bytes(KEY + b"\n")
    city_ops = mqtt_uplink(broker.port, reconnect_max="2s", commands=True, command_key_file="cmd.key",
                           command_max_age="5m")
    telemetry_only = mqtt_uplink(broker.port, reconnect_max="2s", topic_prefix="noctl")
    return lamp_site(tmp_path, sim, {"city-ops": city_ops, "telemetry-only": telemetry_only}, extra, interval)


class Platform:
    """The city-operations platform: publishes (signed) commands with MQTT v5."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="platform", protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_for(self.client.is_connected, 10, "the platform to connect")

    def send(self, values: dict[str, Any], cid: str, topic: str = DOWN, key: bytes | None = KEY,
             props: mqtt.Properties | None = None, **extra: Any) -> None:
        body: dict[str, Any] = {"id": cid, "values": values, "ts": int(time.time() * 1000), **extra}
        if key is not None:
            body["sig"] = sign(body, key)
        self.client.publish(topic, json.dumps(body), qos=1, properties=props).wait_for_publish(5)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def reply(rec: Collector, cid: str, topic: str = REPLY, timeout: float = 5.0) -> tuple[dict[str, Any], float]:
    wait_for(lambda: any(m.body.get("id") == cid for m in rec.on(topic)), timeout, f"the reply to {cid}")
    msg = [m for m in rec.on(topic) if m.body.get("id") == cid][-1]
    return msg.body, msg.at


def writes(slave: SimSlave) -> int:
    return len(slave.writes())


def test_commands_write_refuse_and_repeat_as_the_platform_sees_them(tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(pty={5: LAMP}).start()
    slave = sim.slave("pty", 5)
    rec = Collector(broker.port, "#").start()
    config = lamp_config(tmp_path, sim, broker)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    platform = Platform(broker.port)
    try:
        wait_for(lambda: len(rec.readings(prefix=UP)) >= 1, 30, "a first reading")
        time.sleep(0.5)  # both uplinks subscribed (a session subscribes as it starts)
        sent = time.time()
        platform.send({"dim_level": 60}, "c-1")
        first, at = reply(rec, "c-1")
        assert first == {"id": "c-1", "status": "ok", "reason": "", "values": {"dim_level": 60}}
        assert at - sent < 2.0
        assert slave.writes() == [("holding", 0, 1)]
        wait_for(lambda: any(r.arrived > at and r.values.get("dim_level") == 60 for r in rec.readings(prefix=UP)),
                 5, "a reading with dim_level 60")
        assert all(r.values["dim_level"] == 60 for r in rec.readings(prefix=UP) if r.arrived > at + 0.1)

        cases = {  # id → (values, extra, status, reason)
            "c-2": ({"voltage_l1": 230}, {}, "refused", "'voltage_l1' is not allowed on lamp-1"),
            "c-3": ({"dim_level": 150}, {}, "refused", "dim_level=150 is above the maximum 100"),
            "c-4": ({"dim_level": 10}, {"expires": int(time.time() * 1000) - 1000}, "expired", "expired"),
            "c-5": ({"dim_level": 10}, {"ts": int(time.time() * 1000) - 600_000}, "expired", "command_max_age"),
        }
        for cid, (values, extra, _, _) in cases.items():
            platform.send(values, cid, **extra)
        platform.send({"dim_level": 10}, "c-6", key=b"forged")
        platform.send({"dim_level": 70}, "c-1")  # a new command reusing an id: the first reply, no write
        for cid, (_, _, status, reason) in cases.items():
            body, _ = reply(rec, cid)
            assert body["status"] == status and reason in body["reason"], body
        assert reply(rec, "c-6")[0]["reason"] == "bad signature"
        wait_for(lambda: len([m for m in rec.on(REPLY) if m.body.get("id") == "c-1"]) == 2, 5, "c-1 answered again")
        assert [m.body for m in rec.on(REPLY) if m.body.get("id") == "c-1"] == [first, first]

        platform.send({"dim_level": 20}, "n-1", topic="noctl/site-test/down/lamp-1/set")  # commands: false
        props = mqtt.Properties(mqtt.PacketTypes.PUBLISH)
        props.ResponseTopic, props.CorrelationData = "ops/replies/42", b"corr-42"
        platform.send({"lamp_on": False}, "c-7", props=props)
        body, _ = reply(rec, "c-7", topic="ops/replies/42")
        assert body["status"] == "ok" and body["values"] == {"lamp_on": False}
        wait_for(lambda: any(r.values.get("lamp_on") is False and r.values["current_l1"] == 0
                             for r in rec.readings(prefix=UP)), 5, "a reading with the lamp off and no current")
        time.sleep(0.5)
        assert not rec.on("noctl/site-test/reply/lamp-1")
        assert slave.writes() == [("holding", 0, 1), ("coil", 0, 1)]  # c-1 and c-7 only
    finally:
        platform.stop()
        rc = agent.stop()
        rec.stop()
        sim.stop()
    assert rc == 0, agent.log()
    assert "Traceback" not in agent.log()
    correlation = [m for m in rec.messages if m.topic == "ops/replies/42"]
    assert len(correlation) == 1

    log = edge_agent("control", "log", "-c", str(config), "--limit", "100")
    assert log.returncode == 0, log.stderr
    text = log.stdout
    for cid, result in (("c-1", "ok"), ("c-2", "refused"), ("c-3", "refused"), ("c-4", "expired"),
                        ("c-5", "expired"), ("c-7", "ok")):
        assert any(f"command city-ops {cid}" in line and line.rstrip().endswith(result)
                   for line in text.splitlines()), (cid, text)
    assert "bad signature" in text and "duplicate id: first reply repeated, nothing written" in text
    assert "n-1" not in text  # never received: the uplink without commands does not subscribe


def test_correlation_data_comes_back_with_the_reply(tmp_path: Path, broker: LocalBroker) -> None:
    """The v5 Correlation Data is returned as sent (checked on a second, raw subscriber)."""
    sim = SimulatorThread(pty={5: LAMP}).start()
    config = lamp_config(tmp_path, sim, broker)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    sub = Collector(broker.port, "ops/replies/#").start()
    platform = Platform(broker.port)
    try:
        wait_for(lambda: "uplink city-ops: connected" in agent.log(), 30, "the agent's uplink")
        time.sleep(0.5)
        props = mqtt.Properties(mqtt.PacketTypes.PUBLISH)
        props.ResponseTopic, props.CorrelationData = "ops/replies/7", b"\x00\x01corr"
        platform.send({"dim_level": 55}, "k-1", props=props)
        wait_for(lambda: bool(sub.all()), 10, "the reply on the response topic")
    finally:
        platform.stop()
        sub.stop()
        agent.stop()
        sim.stop()
    got = sub.all()[0]
    assert got.body["status"] == "ok" and getattr(got.properties, "CorrelationData", None) == b"\x00\x01corr"


def test_technician_set_goes_through_the_running_agent_and_directly_without_it(
        tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(pty={5: LAMP}).start()
    slave = sim.slave("pty", 5)
    config = lamp_config(tmp_path, sim, broker, interval="1h")
    rec = Collector(broker.port, "#").start()
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: (tmp_path / "data" / "agent.sock").exists(), 30, "the agent's control socket")
        wait_for(lambda: len(rec.readings(prefix=UP)) == 1, 30, "the first reading")
        r = edge_agent("control", "set", "-c", str(config), "lamp-1", "dim_level=35", "lamp_on=true")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "lamp-1: ok, through the running agent; read back dim_level=35 lamp_on=true"
        # polled once more right after the write: the platform does not wait an hour to see it
        wait_for(lambda: any(r.values["dim_level"] == 35 for r in rec.readings(prefix=UP)), 5, "a reading showing 35")
        r = edge_agent("control", "set", "-c", str(config), "lamp-1", "voltage_l1=230")
        assert r.returncode == 1 and "refused: 'voltage_l1' is not allowed on lamp-1" in r.stderr
    finally:
        rc = agent.stop()
        rec.stop()
    assert rc == 0, agent.log()
    try:
        r = edge_agent("control", "set", "-c", str(config), "lamp-1", "dim_level=45")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == ("lamp-1: ok, no agent running: directly on bus rs485-1;"
                                    " read back dim_level=45")
    finally:
        sim.stop()
    assert slave.writes() == [("holding", 0, 1), ("coil", 0, 1), ("holding", 0, 1)]
    log = edge_agent("control", "log", "-c", str(config)).stdout
    assert log.count(f"technician {getpass.getuser()}") == 3 and "voltage_l1" in log


def test_a_reload_applies_changed_control_settings_to_the_next_write(tmp_path: Path) -> None:
    """A technician allows dimming, adds a pole and reloads: the next writes are checked against
    the new settings, and the new pole can be written, without a restart."""
    sim = SimulatorThread(pty={5: LAMP, 6: LAMP}).start()
    config = lamp_site(tmp_path, sim, {}, interval="1h", allow=("lamp_on",))
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: (tmp_path / "data" / "agent.sock").exists(), 30, "the agent's control socket")
        r = edge_agent("control", "set", "-c", str(config), "lamp-1", "dim_level=35")
        assert r.returncode == 1 and "refused: 'dim_level' is not allowed on lamp-1" in r.stderr
        # now dimming is allowed too, and a second pole is added
        write_site(config, data_dir=tmp_path / "data",
                   buses={"rs485-1": serial_bus(sim.serial_port, baudrate=9600, timeout="0.5s")},
                   devices={"lamp-1": device("rs485-1", LAMP, 5, interval="1h",
                                             control={"allow": ["lamp_on", "dim_level"]}),
                            "lamp-2": device("rs485-1", LAMP, 6, interval="1h", control={"allow": ["dim_level"]})})
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: applied" in agent.log(), 30, "the reload")
        assert "control" not in agent.log().split("reload: reading", 1)[1]  # not put off to the next start
        r = edge_agent("control", "set", "-c", str(config), "lamp-1", "dim_level=35")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "lamp-1: ok, through the running agent; read back dim_level=35"
        r = edge_agent("control", "set", "-c", str(config), "lamp-2", "dim_level=20")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "lamp-2: ok, through the running agent; read back dim_level=20"
    finally:
        rc = agent.stop()
        sim.stop()
    assert rc == 0, agent.log()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_thingsboard_gateway_rpc_sets_the_lamp(tmp_path: Path, broker: LocalBroker, protocol: str) -> None:
    sim = SimulatorThread(pty={5: LAMP}).start()
    slave = sim.slave("pty", 5)
    config = lamp_site(tmp_path, sim, {"tb": mqtt_uplink(broker.port, format="thingsboard", protocol=protocol,
                                                         commands=True)})
    rec = Collector(broker.port, "v1/gateway/rpc").start()
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    platform = Platform(broker.port)
    try:
        wait_for(lambda: "uplink tb: connected" in agent.log(), 30, "the agent's uplink")
        time.sleep(0.5)
        for rpc in ({"device": "lamp-1", "data": {"id": 41, "method": "set", "params": {"dim_level": 40}}},
                    {"device": "lamp-1", "data": {"id": 42, "method": "reboot", "params": {}}},
                    {"device": "lamp-1", "data": {"id": 43, "method": "set", "params": {"lamp_fault": True}}}):
            platform.client.publish("v1/gateway/rpc", json.dumps(rpc), qos=1).wait_for_publish(5)
        wait_for(lambda: {m.body.get("id") for m in rec.messages if "status" in m.body.get("data", {})}
                 >= {41, 42, 43}, 10, "three RPC replies")
        time.sleep(0.5)  # an echoed reply would be answered again here: it must not be
    finally:
        platform.stop()
        rc = agent.stop()
        rec.stop()
        sim.stop()
    assert rc == 0, agent.log()
    replies = {m.body["id"]: m.body for m in rec.messages if "status" in m.body.get("data", {})}
    assert len([m for m in rec.messages if "status" in m.body.get("data", {})]) == 3
    assert replies[41] == {"device": "lamp-1", "id": 41,
                           "data": {"id": "41", "status": "ok", "reason": "", "values": {"dim_level": 40}}}
    assert replies[42]["data"]["status"] == "refused" and "unknown RPC method 'reboot'" in replies[42]["data"]["reason"]
    assert replies[43]["data"]["status"] == "refused" and "not allowed" in replies[43]["data"]["reason"]
    assert slave.writes() == [("holding", 0, 1)]


def test_the_agent_applies_the_schedule_in_force_when_it_starts(tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(pty={5: LAMP}).start()
    slave = sim.slave("pty", 5)
    schedule = ("schedules:\n  street-lights:\n    devices: [lamp-1]\n    location: {lat: 38.04, lon: 114.51}\n"
                "    steps:\n      - {at: sunset+10m, set: {lamp_on: true, dim_level: 100}}\n"
                "      - {at: \"00:30\", set: {dim_level: 50}}\n      - {at: sunrise-10m, set: {lamp_on: false}}\n")
    config = lamp_config(tmp_path, sim, broker, extra=schedule)
    loaded = load_config(str(config))
    wanted = engines(loaded.config.schedules, loaded.config.gateway.timezone)["street-lights"].wanted("lamp-1")
    rec = Collector(broker.port, "#").start()
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: len(slave.writes()) == 2, 30, "the schedule's writes at start")
        wait_for(lambda: any(all(r.values.get(p) == v for p, v in wanted.items()) for r in rec.readings(prefix=UP)),
                 10, f"a reading showing {wanted}")
    finally:
        rc = agent.stop()
        rec.stop()
        sim.stop()
    assert rc == 0, agent.log()
    assert {k: slave.override[k] for k in wanted} == wanted
    log = edge_agent("control", "log", "-c", str(config)).stdout
    assert "schedule street-lights at start" in log
