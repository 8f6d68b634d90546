"""What a platform knows about the gateway: retained birth, last will, device metadata."""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import pytest

from agent import __version__
from agent.harness.collector import Collector, retained
from agent.harness.site import device, mqtt_uplink, tcp_bus, write_site
from agent.localbroker import LocalBroker
from tests.helpers import AgentProcess, SimulatorThread, wait_for
from tests.mqtt_support import GATEWAY

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

STATUS = f"edge/{GATEWAY}/status"


def _config(tmp_path: Path, sim: SimulatorThread, broker: LocalBroker) -> Path:
    return write_site(
        tmp_path / "config.yaml", gateway=GATEWAY, data_dir=tmp_path / "data",
        gateway_settings={"location": "31.2304,121.4737"}, buses={"lan": tcp_bus(sim.tcp_port)},
        devices={"meter-1": device("lan", "eastron-sdm630", 1, interval="500ms"),
                 "level-1": device("lan", "generic-radar-level-80ghz", 2, interval="500ms", location="well 7")},
        uplinks={"central": mqtt_uplink(broker.port, keepalive="5s")})


def _online(rec: Collector) -> bool:
    return any(m.body.get("status") == "online" for m in rec.on(STATUS))


def test_birth_metadata_and_the_last_will_when_the_agent_is_killed(tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(tcp={1: "eastron-sdm630", 2: "generic-radar-level-80ghz"}).start()
    rec = Collector(broker.port, f"edge/{GATEWAY}/#").start()
    config = _config(tmp_path, sim, broker)
    t0 = int(time.time() * 1000)
    agent = AgentProcess(config, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: _online(rec) and len(set(rec.seqs())) >= 2, 20, "the birth message and readings")
        birth = retained(broker.port, STATUS)
        meter = retained(broker.port, f"edge/{GATEWAY}/meta/meter-1")
        level = retained(broker.port, f"edge/{GATEWAY}/meta/level-1")
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGKILL)  # power cut, OOM kill: no goodbye
        wait_for(lambda: any(m.body == {"status": "offline"} for m in rec.on(STATUS)), 10, "the last will")
        after = retained(broker.port, STATUS)
    finally:
        agent.stop()
        rec.stop()
        sim.stop()
    assert birth["status"] == "online" and birth["version"] == __version__
    assert birth["config_hash"] == hashlib.sha256(config.read_bytes()).hexdigest()[:12]
    assert t0 - 1000 <= birth["started"] <= int(time.time() * 1000)
    assert set(birth) == {"status", "version", "config_hash", "started"}
    assert meter["profile"] == "eastron-sdm630" and meter["units"]["energy_import"] == "kWh"
    assert meter["location"] == "31.2304,121.4737"  # the gateway's, when the device has none
    assert level["profile"] == "generic-radar-level-80ghz" and level["units"]["water_level"] == "m"
    assert level["location"] == "well 7"
    assert after == {"status": "offline"}  # what a platform connecting later sees


def test_a_clean_stop_says_offline_too(tmp_path: Path, broker: LocalBroker) -> None:
    """A clean DISCONNECT discards the will, so the agent publishes offline itself."""
    sim = SimulatorThread(tcp={1: "eastron-sdm630", 2: "generic-radar-level-80ghz"}).start()
    rec = Collector(broker.port, f"edge/{GATEWAY}/#").start()
    agent = AgentProcess(_config(tmp_path, sim, broker), tmp_path / "agent.log").start()
    try:
        wait_for(lambda: _online(rec) and len(set(rec.seqs())) >= 2, 20, "the birth message and readings")
        rc = agent.stop(signal.SIGTERM)
        after = retained(broker.port, STATUS)
    finally:
        agent.stop()
        rec.stop()
        sim.stop()
    assert rc == 0, agent.log()
    assert after == {"status": "offline"}
    assert rec.on(STATUS)[-1].body == {"status": "offline"}
