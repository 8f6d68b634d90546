"""The day's counts equal the truth exactly through a device outage, a broker outage and the
agent stopped for a while: real agent processes, a real mosquitto, a simulated slave."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest

from agent.harness.collector import Collector
from agent.harness.site import device, mqtt_uplink, serial_bus, write_site
from agent.health.days import LocalDays
from agent.localbroker import LocalBroker
from tests.helpers import AgentProcess, SimulatorThread, edge_agent, wait_for

pytestmark = pytest.mark.slow

INTERVAL = 0.25


def test_counts_match_the_truth_through_device_broker_and_agent_outages(tmp_path: Path,
                                                                       broker: LocalBroker) -> None:
    sim = SimulatorThread(pty={1: "renke-dust-all-in-one"}).start()
    cfg = write_site(
        tmp_path / "config.yaml", data_dir=tmp_path / "data",
        buses={"rs485-1": serial_bus(sim.serial_port, timeout="0.2s", retries=0)},
        devices={"dust-1": device("rs485-1", "renke-dust-all-in-one", 1, interval=f"{INTERVAL}s")},
        uplinks={"central": mqtt_uplink(broker.port, reconnect_min="200ms", reconnect_max="1s")})
    collector = Collector(broker.port, host=broker.host).start()
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: len(collector.seqs()) >= 8, 30, "first readings")
        sim.slave("pty", 1).set_fault("dead")  # the device dies for 3 s
        time.sleep(3)
        sim.slave("pty", 1).set_fault("none")
        wait_for(lambda: any(r.status == "ok" for r in collector.readings()[-3:]), 30, "the device back")
        broker.stop()  # the platform's broker is gone for 3 s
        time.sleep(3)
        broker.start()
        time.sleep(1.5)
        assert agent.stop() == 0, agent.log()  # the agent stopped for 3 s
        stopped = time.time()
        time.sleep(3)
        agent = AgentProcess(cfg, tmp_path / "agent2.log").start()
        wait_for(lambda: max(r.ts for r in collector.readings()) > stopped * 1000 + 2000, 30, "polling again")
        time.sleep(1)
    finally:
        rc = agent.stop()
        collector.stop()
        sim.stop()
    assert rc == 0, agent.log()
    # the truth: what the platform got, and what is still in the buffer (not delivered)
    db = sqlite3.connect(tmp_path / "data" / "outbox.db")
    buffered = {seq: (ts, status) for seq, ts, status in db.execute("SELECT seq, ts, status FROM readings")}
    db.close()
    got = {r.seq: (r.ts, r.status) for r in collector.readings()}
    days = LocalDays("Asia/Shanghai")
    truth: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for seq, (ts, status) in {**got, **buffered}.items():
        t = truth[days.day_of(ts)]
        t["received"] += 1
        t["valid"] += status == "ok"
        t["delivered"] += seq not in buffered
        t["delivered_valid"] += seq not in buffered and status == "ok"
    first_ts = min(ts for ts, _ in {**got, **buffered}.values())
    assert sum(t["received"] - t["valid"] for t in truth.values()) >= 3, "the dead device's readings"
    for day, t in truth.items():
        done = edge_agent("report", "-c", str(cfg), "--day", day, "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        dust = report["devices"]["dust-1"]
        assert dust["received"] == t["received"] and dust["valid"] == t["valid"], (day, dust, dict(t))
        assert dust["delivered"] == {"central": t["delivered"]}, (day, dust, dict(t))
        assert dust["delivered_valid"] == {"central": t["delivered_valid"]}, (day, dust, dict(t))
        start, end = days.bounds(date.fromisoformat(day))
        span = min(end, report["at"]) - max(start, first_ts)
        assert dust["expected"] == math.ceil(span / (INTERVAL * 1000) - 1e-9)
    # the 3 s the agent was stopped (and its restart) count as missing, as the platform sees them
    total = edge_agent("report", "-c", str(cfg), "--json")
    today = json.loads(total.stdout)["devices"]["dust-1"]
    if len(truth) == 1:
        print(f"\ncompleteness: {today}")
        assert today["expected"] - today["received"] >= 3 / INTERVAL - 1, today
        assert today["transmission_rate"] < 1.0 and today["effective_rate"] < today["transmission_rate"]
