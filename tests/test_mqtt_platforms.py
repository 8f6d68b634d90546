"""Several platforms at once: each uplink its own broker, format and delivery state."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agent.harness.collector import Collector
from agent.harness.subscriber import Message
from agent.localbroker import LocalBroker
from tests.helpers import AgentProcess, SimulatorThread, wait_for
from tests.mqtt_support import GATEWAY, Rig, broker_lines, uplink

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

OUTAGE = 6.0


def tb_readings(messages: list[Message]) -> set[tuple[str, int]]:
    """(device, ts) of every reading in ThingsBoard gateway telemetry messages."""
    return {(device, item["ts"]) for m in messages for device, items in m.body.items() for item in items}


def test_one_platform_down_does_not_delay_the_other_which_catches_up_after(tmp_path: Path) -> None:
    # persistent: the platforms' subscriptions survive the restart
    central = LocalBroker(workdir=tmp_path / "central", persistent=True, extra=broker_lines()).start()
    city = LocalBroker(workdir=tmp_path / "city", persistent=True, extra=broker_lines()).start()
    sim = SimulatorThread(tcp={1: "eastron-sdm630", 2: "generic-radar-level-80ghz"}).start()
    rec_central = Collector(central.port, "edge/#", client_id="central-platform").start()
    rec_city = Collector(city.port, "v1/#", client_id="city-platform").start()
    config = tmp_path / "config.yaml"
    config.write_text(f"""\
gateway: {{id: {GATEWAY}, data_dir: {tmp_path / "data"}}}
buses:
  lan: {{type: tcp, host: 127.0.0.1, port: {sim.tcp_port}}}
devices:
  meter-1: {{bus: lan, unit: 1, profile: eastron-sdm630, interval: 500ms}}
  level-1: {{bus: lan, unit: 2, profile: generic-radar-level-80ghz, interval: 500ms}}
uplinks:
  central:
    type: mqtt
    host: 127.0.0.1
    port: {central.port}
  city-ops:
    type: mqtt
    host: 127.0.0.1
    port: {city.port}
    format: thingsboard
    reconnect_min: 200ms
    reconnect_max: 1s
""")
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: len(set(rec_central.seqs())) >= 4 and rec_city.on("v1/gateway/telemetry"), 20,
                 "readings on both platforms")
        city.stop()
        down_from = time.time()
        time.sleep(OUTAGE)
        down_to = time.time()
        city.start()
        # the city platform gets everything the central one got, after the outage
        wait_for(lambda: {(r.device, r.ts) for r in rec_central.readings() if r.ts < down_to * 1000}
                 <= tb_readings(rec_city.on("v1/gateway/telemetry")), 20, "the city platform to catch up")
        time.sleep(1)
    finally:
        rc = agent.stop()
        rec_central.stop()
        rec_city.stop()
        sim.stop()
        central.stop()
        city.stop()
    assert rc == 0, agent.log()
    central_readings = rec_central.readings()
    during = [r for r in central_readings if down_from * 1000 <= r.ts <= down_to * 1000]
    assert len(during) >= 2 * (OUTAGE / 0.5) - 4, "the central platform kept getting readings"
    late = [(r.seq, round(r.arrived - r.ts / 1000, 2)) for r in central_readings
            if r.arrived - r.ts / 1000 > 2.0]
    assert not late, f"central readings more than 2 s late: {late}"
    seqs = sorted(set(rec_central.seqs()))
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "no gap on the central platform"
    # every reading, ok or not, reached the city platform too: none lost in the outage
    central_set = {(r.device, r.ts) for r in central_readings}
    city_set = tb_readings(rec_city.on("v1/gateway/telemetry"))
    newest = max(ts for _, ts in central_set)
    assert {x for x in central_set if x[1] < newest - 1500} <= city_set
    assert "city-ops" in agent.log() and "connection refused" in agent.log()


def test_thingsboard_payloads_on_a_subscriber(tmp_path: Path) -> None:
    broker = LocalBroker(workdir=tmp_path / "broker", extra=broker_lines()).start()
    rec = Collector(broker.port, "v1/#").start()
    rig = Rig(tmp_path, {"city-ops": uplink(broker.port, format="thingsboard")}, devices=("dust-1", "level-1"))
    rig.start()
    try:
        rig.submit("dust-1", 2)
        rig.submit("level-1", 1, status="timeout")
        wait_for(lambda: sum(len(items) for m in rec.on("v1/gateway/telemetry") for items in m.body.values()) == 3,
                 10, "3 readings")
    finally:
        rig.stop()
        rec.stop()
        broker.stop()
    connects = [m.body for m in rec.on("v1/gateway/connect")]
    assert connects == [{"device": "dust-1"}, {"device": "level-1"}]
    attributes = rec.on("v1/gateway/attributes")[0].body
    assert attributes["dust-1"]["profile"] == "renke-dust-all-in-one"
    assert attributes["level-1"]["units"]["pm2_5"] == "µg/m³"
    telemetry: dict[str, list[dict[str, Any]]] = {}
    for m in rec.on("v1/gateway/telemetry"):
        for device, items in m.body.items():
            telemetry.setdefault(device, []).extend(items)
    r0, r1 = rig.submitted[:2]
    assert telemetry["dust-1"] == [{"ts": r0.ts, "values": {"pm2_5": 0, "pm10": 0.5}},
                                   {"ts": r1.ts, "values": {"pm2_5": 1, "pm10": 1.5}}]
    assert telemetry["level-1"] == [{"ts": rig.submitted[2].ts, "values": {"status": "timeout"}}]
    # the gateway's own status goes to its client attributes
    status = rec.on("v1/devices/me/attributes")
    assert status[0].body["status"] == "online" and status[0].body["version"] == "9.9.9"
    assert status[-1].body == {"status": "offline"}
    # every message on the ThingsBoard topics is a JSON object (a payload that failed to parse stays bytes)
    assert [m.topic for m in rec.messages if not isinstance(m.body, dict)] == []
