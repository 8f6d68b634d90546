"""SIGHUP reloads the config: what changed is rebuilt, what did not keeps polling; a broken
config is refused with FILE:LINE and the old one keeps running. Real agent process, real
mosquitto, simulated slaves on a virtual RS-485 line and Modbus TCP."""

from __future__ import annotations

import signal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from agent.harness.collector import Collector
from agent.harness.site import device, mqtt_uplink, serial_bus, tcp_bus, write_site
from agent.localbroker import LocalBroker
from tests.helpers import AgentProcess, SimulatorThread, wait_for

pytestmark = pytest.mark.slow

INTERVAL = 0.5


def _config(tmp_path: Path, sim: SimulatorThread, broker: LocalBroker, devices: dict[str, dict[str, Any]],
            extra: dict[str, Any] | None = None) -> Path:
    return write_site(
        tmp_path / "config.yaml", data_dir=tmp_path / "data",
        buses={"rs485-1": serial_bus(sim.serial_port, timeout="0.5s"), "lan": tcp_bus(sim.tcp_port)},
        devices=devices, uplinks={"central": mqtt_uplink(broker.port, reconnect_max="2s")}, extra=extra or {})


DUST = device("rs485-1", "renke-dust-all-in-one", 1, interval="500ms")
METER = device("lan", "eastron-sdm630", 1, interval="500ms")
LEVEL = device("rs485-1", "generic-radar-level-80ghz", 2, interval="500ms")


def _largest_gap(ts: list[int]) -> float:
    ts = sorted(ts)
    return max(b - a for a, b in pairwise(ts)) / 1000


def test_sighup_applies_changes_without_a_gap_and_refuses_a_broken_config(
        tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(pty={1: "renke-dust-all-in-one", 2: "generic-radar-level-80ghz"},
                          tcp={1: "eastron-sdm630"}).start()
    collector = Collector(broker.port, host=broker.host).start()
    cfg = _config(tmp_path, sim, broker, {"dust-1": DUST, "meter-1": METER})
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: len(collector.readings("dust-1")) >= 4, 30, "readings from dust-1")
        # a device added on the same line, the meter's interval changed, logging to debug
        _config(tmp_path, sim, broker, {"dust-1": DUST, "meter-1": {**METER, "interval": "1s"},
                                        "level-1": LEVEL}, extra={"logging": {"level": "debug"}})
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: applied" in agent.log(), 15, "the reload to be applied")
        meter_before = len(collector.readings("meter-1"))
        wait_for(lambda: len(collector.readings("level-1")) >= 4, 20, "readings from the added level-1")
        assert "devices: 1 added, 0 removed, 1 rebuilt, 1 kept" in agent.log()
        assert "device dust-1: poll ok in" in agent.log()  # the new log level applies
        # a broken config: refused, FILE:LINE named, the running one keeps going
        text = cfg.read_text()
        cfg.write_text(text.replace("interval: 500ms}", "intervall: 500ms}", 1))
        line = next(i for i, t in enumerate(cfg.read_text().splitlines(), 1) if "intervall" in t)
        before = len(collector.readings("dust-1"))
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in agent.log(), 15, "the broken config to be refused")
        assert f"{cfg}:{line}: devices.dust-1.intervall" in agent.log()
        wait_for(lambda: len(collector.readings("dust-1")) >= before + 4, 10, "dust-1 to keep polling")
        wait_for(lambda: len(collector.readings("level-1")) >= 8, 10, "level-1 to keep polling")
        assert agent.proc.poll() is None  # SIGHUP never kills the daemon
    finally:
        rc = agent.stop()
        collector.stop()
        sim.stop()
    assert rc == 0, agent.log()
    log = agent.log()
    dust = [r.ts for r in collector.readings("dust-1")]
    assert _largest_gap(dust) < 3 * INTERVAL, (_largest_gap(dust), log[-3000:])
    late = sorted(r.ts for r in collector.readings("meter-1")[meter_before + 1:])
    assert len(late) >= 2 and min(b - a for a, b in pairwise(late)) >= 900  # its new interval
    assert log.count("uplink central: connected") == 1, log  # the unchanged uplink kept its connection
    seqs = collector.seqs()
    assert sorted(set(seqs)) == list(range(min(seqs), max(seqs) + 1))  # nothing lost


def test_an_uplink_dropped_with_readings_waiting_is_refused(tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(tcp={1: "eastron-sdm630"}).start()
    dead_port = broker.port + 1 if broker.port < 65535 else broker.port - 1  # nothing listens there
    cfg = write_site(
        tmp_path / "config.yaml", data_dir=tmp_path / "data", buses={"lan": tcp_bus(sim.tcp_port)},
        devices={"meter-1": METER},
        uplinks={"central": mqtt_uplink(broker.port), "backup": mqtt_uplink(dead_port, reconnect_max="1s")})
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: "uplink central: connected" in agent.log(), 20, "the agent to connect")
        text = cfg.read_text()
        cfg.write_text(text[:text.index("  backup:")])
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in agent.log(), 15, "the reload to be refused")
        assert "uplink 'backup' is no longer in the config, but" in agent.log()
        assert agent.proc.poll() is None
    finally:
        rc = agent.stop()
        sim.stop()
    assert rc == 0, agent.log()


def test_an_uplink_added_by_a_reload_gets_the_new_readings(tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(tcp={1: "eastron-sdm630"}).start()
    central = Collector(broker.port, host=broker.host).start()
    second = Collector(broker.port, "edge2/#", host=broker.host).start()
    uplinks = {"central": mqtt_uplink(broker.port)}
    cfg = write_site(tmp_path / "config.yaml", data_dir=tmp_path / "data", buses={"lan": tcp_bus(sim.tcp_port)},
                     devices={"meter-1": METER}, uplinks=uplinks)
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: len(central.readings()) >= 3, 20, "readings at the first platform")
        write_site(cfg, data_dir=tmp_path / "data", buses={"lan": tcp_bus(sim.tcp_port)}, devices={"meter-1": METER},
                   uplinks={**uplinks, "second": mqtt_uplink(broker.port, topic_prefix="edge2")})
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(second.readings()) >= 3, 20, "readings at the added platform")
        assert "uplinks: 1 added, 0 removed, 0 rebuilt, 1 kept" in agent.log()
        assert "edge2/site-test/meta/meter-1" in {m.topic for m in second.all()}  # its metadata, retained
    finally:
        rc = agent.stop()
        central.stop()
        second.stop()
        sim.stop()
    assert rc == 0, agent.log()
    assert agent.log().count("uplink central: connected") == 1
    assert min(r.seq for r in second.readings()) > min(r.seq for r in central.readings())
