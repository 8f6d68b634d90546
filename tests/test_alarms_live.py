"""Edge alarms end to end: a simulated level gauge, the agent process, a real mosquitto."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from agent.harness.collector import Collector, retained
from agent.harness.site import device, mqtt_uplink, tcp_bus, write_site
from agent.harness.subscriber import Message
from agent.localbroker import LocalBroker, free_port
from tests.helpers import AgentProcess, SimulatorThread, edge_agent, wait_for
from tests.mqtt_support import GATEWAY, broker_lines

pytestmark = pytest.mark.slow  # real processes, brokers and a simulated gauge

ALARM_TOPIC = f"edge/{GATEWAY}/alarm/level-1"
EVENT_KEYS = {"seq", "ts", "alarm", "state", "severity", "point", "value", "threshold"}


def config(tmp_path: Path, sim: SimulatorThread, uplinks: dict[str, dict[str, Any]], *, interval: str,
           alarms: str = "", report: dict[str, Any] | None = None) -> Path:
    """The level gauge on Modbus TCP; ``alarms`` is the YAML of the rules under test."""
    gauge = device("lan", "generic-submersible-level-transmitter", 1, interval=interval,
                   **({"report": report} if report else {}))
    return write_site(tmp_path / "config.yaml", gateway=GATEWAY, data_dir=tmp_path / "data",
                      buses={"lan": tcp_bus(sim.tcp_port, timeout="1s")}, devices={"level-1": gauge},
                      uplinks=uplinks, extra=alarms)


def uplink(port: int, **settings: Any) -> dict[str, Any]:
    return mqtt_uplink(port, reconnect_min="200ms", reconnect_max="1s", **settings)


def alarm_events(rec: Collector) -> list[dict[str, Any]]:
    return [m.body for m in rec.on(ALARM_TOPIC)]


def level_ts(rec: Collector, after_ms: float) -> list[int]:
    return sorted(r.ts for r in rec.readings() if r.device == "level-1" and r.ts >= after_ms)


def test_flood_alarm_raised_fast_polled_and_cleared_once(tmp_path: Path) -> None:
    broker = LocalBroker(workdir=tmp_path / "broker", extra=broker_lines()).start()
    sim = SimulatorThread(tcp={1: "generic-submersible-level-transmitter"}).start()
    gauge = sim.slave("tcp", 1)
    gauge.override["water_level"] = 0.10
    rec = Collector(broker.port, "edge/#").start()
    cfg = config(tmp_path, sim, {"city-ops": uplink(broker.port)}, interval="2s", alarms="""\
alarms:
  underpass-flood: {device: level-1, point: water_level, above: 0.30, clear_at: 0.25,
                    for: 1s, severity: critical, fast_poll: 300ms}""")
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: len(level_ts(rec, 0)) >= 2, 20, "two ordinary readings")
        risen = time.time()
        gauge.override["water_level"] = 0.42
        wait_for(lambda: bool(alarm_events(rec)), 10, "the raised event")
        arrived = rec.on(ALARM_TOPIC)[0].at
        # within for + 2 polls + 1 s
        assert arrived - risen <= 1.0 + 2 * 2.0 + 1.0, arrived - risen
        raised = alarm_events(rec)[0]
        assert set(raised) == EVENT_KEYS
        assert raised | {"seq": 0, "ts": 0} == {"seq": 0, "ts": 0, "alarm": "underpass-flood", "state": "raised",
                                                "severity": "critical", "point": "water_level", "value": 0.42,
                                                "threshold": 0.3}
        assert risen * 1000 < raised["ts"] <= arrived * 1000
        active = retained(broker.port, f"edge/{GATEWAY}/alarms")
        assert [a["alarm"] for a in active["active"]] == ["underpass-flood"]
        live = edge_agent("alarms", "-c", str(cfg))  # the daemon answers on its control socket
        assert "live, from the running daemon" in live.stdout and "RAISED since" in live.stdout, live.stdout
        # fast polling while raised: readings 300 ms apart, not 2 s
        time.sleep(2.5)
        fast = level_ts(rec, raised["ts"] + 1)
        assert len(fast) >= 5, fast
        assert max(b - a for a, b in itertools.pairwise(fast)) < 1000, fast
        # in the hysteresis band: still raised, nothing new
        gauge.override["water_level"] = 0.27
        time.sleep(1.5)
        assert len(alarm_events(rec)) == 1
        gauge.override["water_level"] = 0.20
        wait_for(lambda: len(alarm_events(rec)) >= 2, 10, "the cleared event")
        cleared = alarm_events(rec)[1]
        assert cleared["state"] == "cleared" and cleared["value"] == 0.2 and cleared["threshold"] == 0.25
        assert cleared["seq"] > raised["seq"]
        time.sleep(5)  # the configured interval again
        slow = level_ts(rec, cleared["ts"] + 1)
        assert 1 <= len(slow) <= 4 and all(b - a >= 1500 for a, b in itertools.pairwise(slow)), slow
        assert retained(broker.port, f"edge/{GATEWAY}/alarms")["active"] == []
    finally:
        rc = agent.stop()
        rec.stop()
        sim.stop()
        broker.stop()
    assert rc == 0, agent.log()
    assert [e["state"] for e in alarm_events(rec)] == ["raised", "cleared"], "each event once"
    # the technician's view, without the daemon
    out = edge_agent("alarms", "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "underpass-flood" in out.stdout and "OK" in out.stdout and "from the buffer" in out.stdout
    events = [line for line in out.stdout.splitlines() if f"seq {raised['seq']} " in line
              or f"seq {cleared['seq']} " in line]
    assert len(events) == 2 and "raised" in events[0] and "cleared" in events[1]


def test_alarm_raised_while_the_broker_is_down_arrives_first_with_its_ts(tmp_path: Path) -> None:
    broker = LocalBroker(workdir=tmp_path / "broker", extra=broker_lines(), persistent=True).start()
    sim = SimulatorThread(tcp={1: "generic-submersible-level-transmitter"}).start()
    gauge = sim.slave("tcp", 1)
    gauge.override["water_level"] = 0.10
    rec = Collector(broker.port, "edge/#").start()
    cfg = config(tmp_path, sim, {"city-ops": uplink(broker.port)}, interval="300ms", alarms="""\
alarms:
  underpass-flood: {device: level-1, point: water_level, above: 0.30, clear_at: 0.25, severity: critical}""")
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: len(level_ts(rec, 0)) >= 3, 20, "ordinary readings")
        broker.stop()
        time.sleep(2)  # a backlog of ordinary readings builds up
        risen = time.time()
        gauge.override["water_level"] = 0.55
        time.sleep(2)
        back = time.time()
        broker.start()
        wait_for(lambda: bool(alarm_events(rec)), 20, "the raised event after reconnection")
        wait_for(lambda: level_ts(rec, back * 1000 + 500) != [], 20, "live readings again")
    finally:
        rc = agent.stop()
        rec.stop()
        sim.stop()
        broker.stop()
    assert rc == 0, agent.log()
    event = alarm_events(rec)[0]
    assert event["state"] == "raised" and event["value"] == 0.55
    assert risen * 1000 < event["ts"] < risen * 1000 + 1500, "the ts of the poll that raised it"
    after: list[Message] = [m for m in rec.messages if m.at >= back]
    first_alarm = next(i for i, m in enumerate(after) if m.topic == ALARM_TOPIC)
    backlog = [i for i, m in enumerate(after) if m.topic.endswith("/up/level-1")
               and any(r["ts"] < back * 1000 for r in m.body["readings"])]
    assert backlog, "the outage's readings were delivered"
    assert first_alarm < min(backlog), "the alarm went ahead of the backlog"
    seqs = sorted(set(rec.seqs()) | {event["seq"]})
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "no reading lost, the event in the same seq"


def test_deadband_platform_gets_moved_values_and_heartbeats_buffer_every_reading(tmp_path: Path) -> None:
    broker = LocalBroker(workdir=tmp_path / "broker", extra=broker_lines()).start()
    sim = SimulatorThread(tcp={1: "generic-submersible-level-transmitter"}).start()
    gauge = sim.slave("tcp", 1)
    gauge.override["water_level"] = 1.0
    rec = Collector(broker.port, "edge/#").start()
    quiet = {"deadband": 0, "max_silence": "2s"}
    report = {"water_level": {"deadband": 0.05, "max_silence": "2s"}, "unit_code": quiet, "decimals": quiet,
              "range_zero": quiet, "range_full": quiet}
    # the archive's broker is away: every reading stays in the buffer for it
    uplinks = {"city-ops": uplink(broker.port, on_change=True), "archive": uplink(free_port())}
    cfg = config(tmp_path, sim, uplinks, interval="250ms", report=report)
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: bool(level_ts(rec, 0)), 20, "the first reading")
        start = time.time()
        steps = [(1.02, 2.5), (1.10, 1.0), (1.12, 1.0), (0.90, 1.0)]  # (level, seconds)
        for level, seconds in steps:
            gauge.override["water_level"] = level
            time.sleep(seconds)
        end = time.time()
    finally:
        rc = agent.stop()
        rec.stop()
        sim.stop()
        broker.stop()
    assert rc == 0, agent.log()
    got = [(r.ts, r.values["water_level"]) for r in rec.readings() if "water_level" in r.values]
    window = [(ts, v) for ts, v in got if start * 1000 <= ts <= end * 1000]
    values = [v for _, v in window]
    for (ts0, v0), (ts1, v1) in itertools.pairwise(got):
        assert abs(v1 - v0) > 0.05 or ts1 - ts0 >= 1900, f"{v0} → {v1} after {ts1 - ts0} ms: neither moved nor due"
    assert 1.1 in values and 0.9 in values, "moves beyond the deadband are sent"
    assert 1.12 not in values, "a move within the deadband is not"
    assert 3 <= len(window) <= 7, window
    # heartbeats: the quiet points too, every 2 s only
    zero = [r.ts for r in rec.readings() if "range_zero" in r.values]
    assert zero and all(b - a >= 1900 for a, b in itertools.pairwise(zero)), zero
    # the buffer holds one reading per interval all the same
    with sqlite3.connect(tmp_path / "data" / "outbox.db") as db:
        ts = [t for (t,) in db.execute("SELECT ts FROM readings WHERE device = 'level-1' AND ts BETWEEN ? AND ?"
                                       " ORDER BY seq", (start * 1000, end * 1000))]
    assert len(ts) >= (end - start) / 0.25 * 0.8, len(ts)
    assert max(b - a for a, b in itertools.pairwise(ts)) < 600
