"""One agent per data directory, and an uplink's backlog never deleted silently when the
uplink leaves the config (real `run` processes, a real mosquitto, SQLite on disk)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.harness.collector import Collector
from agent.harness.site import device, mqtt_uplink, tcp_bus, write_site
from agent.localbroker import LocalBroker
from buffer.outbox import Outbox
from drivers.reading import Reading
from tests.helpers import AgentProcess, SimulatorThread, edge_agent, wait_for

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them


def _config(tmp_path: Path, sim: SimulatorThread | None, broker_port: int, uplink: str = "central") -> Path:
    port = sim.tcp_port if sim else 1
    return write_site(
        tmp_path / "config.yaml", data_dir=tmp_path / "data", buses={"lan": tcp_bus(port, timeout="0.5s")},
        devices={"meter-1": device("lan", "eastron-sdm630", 1, interval="200ms")},
        uplinks={uplink: mqtt_uplink(broker_port, reconnect_min="200ms", reconnect_max="1s")})


def _prefill(data: Path, uplink: str, n: int) -> list[int]:
    """Readings buffered for ``uplink`` while its platform was unreachable."""
    ob = Outbox(data / "outbox.db", [uplink])
    ob.start()
    now = int(time.time() * 1000)
    for i in range(n):
        ob.submit(Reading("meter-1", now - (n - i) * 1000, values={"voltage_l1": 230.0 + i}))
    assert ob.sync()
    seqs = list(range(1, ob.last_seq + 1))
    ob.close()
    return seqs


def test_a_second_run_on_a_held_data_dir_exits_naming_the_holder(tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(tcp={1: "eastron-sdm630"}).start()
    cfg = _config(tmp_path, sim, broker.port)
    first = AgentProcess(cfg, tmp_path / "first.log").start()
    try:
        db = tmp_path / "data" / "outbox.db"
        wait_for(lambda: db.exists() and "edge-agent" in first.log(), 20, "the first agent to start")
        second = edge_agent("run", "-c", str(cfg), timeout=30)
        assert second.returncode == 1, second.stderr
        assert "Traceback" not in second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert first.proc is not None
        assert f"pid {first.proc.pid}" in lines[0] and str(tmp_path / "data") in lines[0], lines[0]
        # read-only commands keep working beside the running agent
        stats = edge_agent("buffer", "stats", "-c", str(cfg))
        assert stats.returncode == 0, stats.stderr
        assert "central" in stats.stdout
        export = edge_agent("buffer", "export", "-c", str(cfg), "--format", "jsonl")
        assert export.returncode == 0, export.stderr
        # commands that rewrite delivery state refuse while the agent holds the data_dir
        rename = edge_agent("buffer", "rename-uplink", "-c", str(cfg), "central", "city")
        assert rename.returncode == 1 and f"pid {first.proc.pid}" in rename.stderr, rename.stderr
        assert first.proc.poll() is None, "the first agent must keep running"
    finally:
        rc = first.stop()
        sim.stop()
    assert rc == 0, first.log()
    # the lock goes with the process: a new run may start (here: stopped at once by a bad uplink check)
    assert edge_agent("check", "-c", str(cfg)).returncode == 0


def test_a_removed_uplink_with_a_backlog_stops_run_until_renamed(tmp_path: Path, broker: LocalBroker) -> None:
    seqs = _prefill(tmp_path / "data", "old-name", 40)
    cfg = _config(tmp_path, None, broker.port, uplink="central")
    for command in ("run", "check"):
        refused = edge_agent(command, "-c", str(cfg), timeout=30)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        out = refused.stdout + refused.stderr
        assert "uplink 'old-name' is no longer in the config, but 40 readings" in out, out
        assert f"edge-agent buffer rename-uplink -c {cfg} old-name NEW" in out
        assert f"edge-agent buffer drop-uplink -c {cfg} old-name" in out
        assert "Traceback" not in out
    renamed = edge_agent("buffer", "rename-uplink", "-c", str(cfg), "old-name", "central")
    assert renamed.returncode == 0, renamed.stderr
    assert "40 readings wait for it" in renamed.stdout
    collector = Collector(broker.port, host=broker.host).start()
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: set(seqs) <= set(collector.seqs()), 30, "the renamed uplink's backlog")
    finally:
        rc = agent.stop()
        collector.stop()
    assert rc == 0, agent.log()


def test_drop_uplink_records_the_backlog_as_evicted(tmp_path: Path) -> None:
    _prefill(tmp_path / "data", "old-name", 25)
    cfg = _config(tmp_path, None, 1883, uplink="central")
    dropped = edge_agent("buffer", "drop-uplink", "-c", str(cfg), "old-name")
    assert dropped.returncode == 0, dropped.stderr
    assert "25 undelivered readings recorded as evicted (seq 1..25)" in dropped.stdout
    stats = edge_agent("buffer", "stats", "-c", str(cfg))
    assert "old-name: seq 1..25 (25 readings)  uplink dropped from the config" in stats.stdout, stats.stdout
    assert "readings evicted 25" in stats.stdout
    assert edge_agent("check", "-c", str(cfg)).returncode == 0
    again = edge_agent("buffer", "drop-uplink", "-c", str(cfg), "old-name")
    assert again.returncode == 1 and "the buffer has no uplink 'old-name'" in again.stderr


def test_a_dropped_uplinks_gap_is_announced_when_it_comes_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _prefill(data, "old-name", 10)
    cfg = _config(tmp_path, None, 1883, uplink="central")
    assert edge_agent("buffer", "drop-uplink", "-c", str(cfg), "old-name").returncode == 0
    # the notice waits for no other uplink ...
    ob = Outbox(data / "outbox.db", ["central"])
    reader = ob.reader()
    assert reader.evictions(ob.uplink_bits["central"]) == []
    reader.close()
    ob.close()
    # ... and is handed to the uplink of that name when the config has it again
    ob = Outbox(data / "outbox.db", ["central", "old-name"])
    reader = ob.reader()
    back = reader.evictions(ob.uplink_bits["old-name"])
    reader.close()
    ob.close()
    assert [(e.first_seq, e.last_seq, e.count, e.uplink) for e in back] == [(1, 10, 10, "old-name")]
