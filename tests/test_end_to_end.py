"""Simulated devices → agent → mosquitto → a platform subscriber, all real parts."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agent.localbroker import LocalBroker
from buffer.schema import committed_seq
from drivers.catalog import resolve_profile
from drivers.vocabulary import unit_of
from tests.helpers import AgentProcess, Collector, SimulatorThread, wait_for, write_config

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

SITE_PTY = {1: "renke-dust-all-in-one", 2: "generic-radar-level-80ghz"}
SITE_TCP = {1: "eastron-sdm630"}


def site_config(tmp_path: Path, sim: SimulatorThread, broker: LocalBroker, interval: str = "1s",
                uplink_extra: str = "") -> Path:
    return write_config(
        tmp_path / "config.yaml", data_dir=tmp_path / "data",
        buses={"rs485-1": f"{{type: serial, port: {sim.serial_port}, baudrate: 9600, timeout: 0.5s}}",
               "lan": f"{{type: tcp, host: 127.0.0.1, port: {sim.tcp_port}}}"},
        devices={"dust-1": f"{{bus: rs485-1, unit: 1, profile: renke-dust-all-in-one, interval: {interval}}}",
                 "level-1": f"{{bus: rs485-1, unit: 2, profile: generic-radar-level-80ghz, interval: {interval}}}",
                 "meter-1": f"{{bus: lan, unit: 1, profile: eastron-sdm630, interval: {interval}}}"},
        uplinks=f"  central:\n    type: mqtt\n    host: 127.0.0.1\n    port: {broker.port}\n"
                f"    reconnect_max: 2s\n{uplink_extra}",
    )


def test_readings_arrive_with_correct_values_and_units(tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(pty=SITE_PTY, tcp=SITE_TCP).start()
    collector = Collector(broker.host, broker.port).start()
    agent = AgentProcess(site_config(tmp_path, sim, broker), tmp_path / "agent.log").start()
    try:
        wait_for(lambda: all(len(collector.by_device(d)) >= 3 for d in ("dust-1", "level-1", "meter-1")),
                 30, "3 readings from each device")
    finally:
        rc = agent.stop()
        collector.stop()
        sim.stop()
    assert rc == 0, agent.log()
    served = {"dust-1": sim.slave("pty", 1), "level-1": sim.slave("pty", 2), "meter-1": sim.slave("tcp", 1)}
    for device, slave in served.items():
        profile = resolve_profile(slave.profile.name)
        meta = collector.meta[device]
        assert meta["profile"] == profile.name
        for point in profile.points:
            declared = profile.points[point].unit
            assert meta["units"][point] == (declared if declared is not None else unit_of(point))
        readings = collector.by_device(device)
        assert all(r.status == "ok" for r in readings), [r.status for r in readings]
        for r in readings:
            assert r.topic == f"edge/site-test/up/{device}"
            assert set(r.values) == set(profile.points)
            for point, value in r.values.items():
                assert slave.was_served(point, value), (device, point, value, list(slave.history[point])[-5:])
    # units in the vocabulary are what a platform sees
    assert collector.meta["dust-1"]["units"]["pm2_5"] == "µg/m³"
    assert collector.meta["meter-1"]["units"]["energy_import"] == "kWh"
    seqs = collector.seqs()
    assert sorted(set(seqs)) == list(range(min(seqs), max(seqs) + 1))  # duplicates allowed, gaps not
    status = [s for s in collector.status if s.get("status") == "online"]
    assert status and status[0]["version"] and status[0]["config_hash"]


def test_outage_of_the_broker_loses_no_reading(tmp_path: Path, broker: LocalBroker,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    sim = SimulatorThread(pty={1: "renke-dust-all-in-one"}, tcp=SITE_TCP).start()
    collector = Collector(broker.host, broker.port).start()
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
    during = [r for r in collector.readings if outage_start * 1000 <= r.ts <= outage_end * 1000]
    assert len(during) >= 20, "readings taken during the outage must arrive afterwards"
    dups = len(collector.seqs()) - len(received)
    with capsys.disabled():
        print(f"\noutage: committed = {committed}, received = {len(received)}, lost = 0, duplicates = {dups}")
