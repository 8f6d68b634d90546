"""Simulated devices → agent → mosquitto → a platform subscriber, all real parts."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agent.harness.collector import Collector
from agent.harness.site import device, mqtt_uplink, serial_bus, tcp_bus, write_site
from agent.localbroker import LocalBroker
from buffer.schema import committed_seq
from drivers.catalog import resolve_profile
from drivers.vocabulary import unit_of
from tests.helpers import AgentProcess, SimulatorThread, wait_for

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

SITE_PTY = {1: "renke-dust-all-in-one", 2: "generic-radar-level-80ghz"}
SITE_TCP = {1: "eastron-sdm630"}


def site_config(tmp_path: Path, sim: SimulatorThread, broker: LocalBroker, interval: str = "1s") -> Path:
    return write_site(
        tmp_path / "config.yaml", data_dir=tmp_path / "data",
        buses={"rs485-1": serial_bus(sim.serial_port, baudrate=9600, timeout="0.5s"), "lan": tcp_bus(sim.tcp_port)},
        devices={"dust-1": device("rs485-1", "renke-dust-all-in-one", 1, interval=interval),
                 "level-1": device("rs485-1", "generic-radar-level-80ghz", 2, interval=interval),
                 "meter-1": device("lan", "eastron-sdm630", 1, interval=interval)},
        uplinks={"central": mqtt_uplink(broker.port, reconnect_max="2s")})


def test_readings_arrive_with_correct_values_and_units(tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(pty=SITE_PTY, tcp=SITE_TCP).start()
    collector = Collector(broker.port, host=broker.host).start()
    agent = AgentProcess(site_config(tmp_path, sim, broker), tmp_path / "agent.log").start()
    try:
        wait_for(lambda: all(len(collector.readings(d)) >= 3 for d in ("dust-1", "level-1", "meter-1")),
                 30, "3 readings from each device")
    finally:
        rc = agent.stop()
        collector.stop()
        sim.stop()
    assert rc == 0, agent.log()
    served = {"dust-1": sim.slave("pty", 1), "level-1": sim.slave("pty", 2), "meter-1": sim.slave("tcp", 1)}
    for dev_id, slave in served.items():
        profile = resolve_profile(slave.profile.name)
        meta = collector.meta()[dev_id]
        assert meta["profile"] == profile.name
        for point in profile.points:
            declared = profile.points[point].unit
            assert meta["units"][point] == (declared if declared is not None else unit_of(point))
        readings = collector.readings(dev_id)
        assert all(r.status == "ok" for r in readings), [r.status for r in readings]
        for r in readings:
            assert r.topic == f"edge/site-test/up/{dev_id}"
            assert set(r.values) == set(profile.points)
            for point, value in r.values.items():
                assert slave.was_served(point, value), (dev_id, point, value, list(slave.history[point])[-5:])
    # units in the vocabulary are what a platform sees
    assert collector.meta()["dust-1"]["units"]["pm2_5"] == "µg/m³"
    assert collector.meta()["meter-1"]["units"]["energy_import"] == "kWh"
    seqs = collector.seqs()
    assert sorted(set(seqs)) == list(range(min(seqs), max(seqs) + 1))  # duplicates allowed, gaps not
    status = [s for s in collector.status() if s.get("status") == "online"]
    assert status and status[0]["version"] and status[0]["config_hash"]


def test_outage_of_the_broker_loses_no_reading(tmp_path: Path, broker: LocalBroker,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    sim = SimulatorThread(pty={1: "renke-dust-all-in-one"}, tcp=SITE_TCP).start()
    collector = Collector(broker.port, host=broker.host).start()
    cfg = site_config(tmp_path, sim, broker, interval="500ms")
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: len(collector.seqs()) >= 5, 30, "first readings")
        before = max(collector.seqs())
        broker.stop()
        outage_start = time.time()
        time.sleep(10)
        broker.start()
        outage_end = time.time()
        # the agent polled on during the outage; after it, the backlog drains
        wait_for(lambda: max(collector.seqs()) > before + 40, 60, "delivery to resume after the outage")
        time.sleep(2)
    finally:
        rc = agent.stop()
        collector.stop()
        sim.stop()
    assert rc == 0, agent.log()
    db = sqlite3.connect(tmp_path / "data" / "outbox.db")
    committed = committed_seq(db)
    still_buffered = {r[0] for r in db.execute("SELECT seq FROM readings")}
    received = set(collector.seqs())
    missing = set(range(1, committed + 1)) - received - still_buffered
    assert not missing, f"lost seqs: {sorted(missing)[:20]}"
    # what is still buffered is only the tail the agent committed while shutting down
    assert all(s > committed - 10 for s in still_buffered), sorted(still_buffered)
    during = [r for r in collector.readings() if outage_start * 1000 <= r.ts <= outage_end * 1000]
    assert len(during) >= 20, "readings taken during the outage must arrive afterwards"
    dups = len(collector.seqs()) - len(received)
    with capsys.disabled():
        print(f"\noutage: committed = {committed}, received = {len(received)}, lost = 0, duplicates = {dups}")
