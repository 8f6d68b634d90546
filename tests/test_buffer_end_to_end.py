"""The buffer seen from the platform: simulated devices → agent process → mosquitto → a
subscriber. Evictions are announced exactly; a large backlog drains oldest first, in big
messages, under the rate limit, while live readings stay on time."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agent.harness.collector import Collector
from agent.localbroker import LocalBroker
from buffer.outbox import Outbox
from drivers.reading import Reading
from tests.buffer_helpers import (
    BROKER_EXTRA,
    announced,
    buffer_site,
    committed_high_water,
    count_upto,
    evicted_ranges,
    expand,
    first_arrivals,
    stored_seqs,
    tcp_site,
    telemetry_messages,
)
from tests.helpers import AgentProcess, SimulatorThread, wait_for

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them


def prefill(db: Path, n: int, devices: int, max_bytes: int = 256 * 1024**2) -> None:
    """Readings taken while the gateway was offline, committed straight into its buffer."""
    ob = Outbox(db, ["central"], max_bytes=max_bytes)
    ob.start()
    t0 = int(time.time() * 1000) - n * 10
    for i in range(n):
        ob.submit(Reading(f"dev-{i % devices + 1}", t0 + i * 10, {"pm2_5": i % 500, "pm10": i % 700 + 0.5}))
    assert ob.sync(60)
    ob.close()


def test_evictions_are_announced_and_are_exactly_what_the_platform_misses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = data / "outbox.db"
    prefill(db, 4000, devices=4, max_bytes=256 * 1024)  # a full 256 KiB buffer, some already evicted
    before_agent = evicted_ranges(db, "central")
    assert before_agent
    broker = LocalBroker(workdir=tmp_path / "broker", persistent=True, extra=BROKER_EXTRA).start()
    collector = Collector(broker.port, host=broker.host).start()
    broker.stop()  # the platform is unreachable: the agent buffers, and its buffer is full
    sim = SimulatorThread(tcp=tcp_site(4)).start()
    cfg = buffer_site(tmp_path / "config.yaml", data_dir=data, sim_port=sim.tcp_port, broker_port=broker.port,
                      devices=4, interval="100ms", max_bytes="256KiB")
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        # the running agent evicts too (readings keep coming, the cap holds)
        last_evicted = max(b for _, b, _ in before_agent)
        wait_for(lambda: max(b for _, b, _ in evicted_ranges(db, "central")) > last_evicted, 30,
                 "an eviction by the agent")
        broker.start()
        wait_for(lambda: len(announced(collector.status())) >= len(evicted_ranges(db, "central"))
                 and len(stored_seqs(db)) < 100, 60, "announcements and the backlog to arrive")
        time.sleep(1)
    finally:
        rc = agent.stop()
        collector.stop()
        broker.stop()
        sim.stop()
    assert rc == 0, agent.log()
    assert "BUFFER FULL (max_bytes)" in agent.log()
    committed = committed_high_water(db)
    received = set(collector.seqs())
    told = announced(collector.status())
    lost = expand(told)
    missing = set(range(1, committed + 1)) - received - stored_seqs(db)
    print(f"evictions: committed={committed} received={len(received)} announced ranges={len(told)}"
          f" lost={len(lost)} still buffered={len(stored_seqs(db))}")
    # every range recorded was announced, and the announced seqs are exactly those missing
    assert set(evicted_ranges(db, "central")) <= set(told)
    assert missing == lost
    assert not lost & received
    for a, b, n in evicted_ranges(db, "central"):
        assert n == len(set(range(a, b + 1)) - received)


def test_a_large_backlog_drains_oldest_first_while_live_readings_stay_on_time(tmp_path: Path) -> None:
    backlog, devices, rate = 200_000, 10, 40_000
    data = tmp_path / "data"
    prefill(data / "outbox.db", backlog, devices)
    broker = LocalBroker(workdir=tmp_path / "broker", persistent=True, extra=BROKER_EXTRA).start()
    collector = Collector(broker.port, host=broker.host).start()
    sim = SimulatorThread(tcp=tcp_site(devices)).start()
    cfg = buffer_site(tmp_path / "config.yaml", data_dir=data, sim_port=sim.tcp_port, broker_port=broker.port,
                      devices=devices, interval="200ms",
                      backlog_rate=rate, backlog_batch=1000, live_batch=10)
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: count_upto(collector, backlog) == backlog, 90, "the whole backlog", step=0.5)
        time.sleep(2)  # live readings after the drain, for comparison
    finally:
        rc = agent.stop()
        collector.stop()
        broker.stop()
        sim.stop()
    assert rc == 0, agent.log()
    arrived = first_arrivals(collector)
    messages = telemetry_messages(collector)
    live_ts = {r.seq: r.ts for r in collector.readings() if r.seq > backlog}
    back = sorted((t, s) for s, t in arrived.items() if s <= backlog)
    drain_start, drain_end = back[0][0], back[-1][0]
    drain = drain_end - drain_start
    # live readings polled while the backlog drained: poll → subscriber
    during = [arrived[s] - ts / 1000 for s, ts in live_ts.items() if drain_start <= ts / 1000 <= drain_end]
    during.sort()
    after = sorted(arrived[s] - ts / 1000 for s, ts in live_ts.items() if ts / 1000 > drain_end + 0.5)
    p99 = during[int(len(during) * 0.99) - 1]
    backlog_msgs = [seqs for _, seqs in messages if max(seqs) <= backlog]
    per_msg = backlog / len(backlog_msgs)
    # oldest first: no backlog reading arrives after one more than two fetches newer
    order = [s for _, s in back]
    high, late = 0, 0
    for s in order:
        late += s < high - 2000
        high = max(high, s)
    print(f"backlog: {backlog} readings in {drain:.1f}s ({backlog / drain:,.0f}/s, limit {rate}/s),"
          f" {len(backlog_msgs)} messages ({per_msg:.0f} readings each); live during the drain: {len(during)}"
          f" readings, poll→platform p50 {during[len(during) // 2] * 1000:.0f} ms,"
          f" p99 {p99 * 1000:.0f} ms, max {during[-1] * 1000:.0f} ms; after it: p50"
          f" {after[len(after) // 2] * 1000:.0f} ms")
    assert set(range(1, backlog + 1)) <= set(arrived)
    assert len(during) >= 100, "too few live readings during the drain to judge"
    assert p99 < 2.0
    assert backlog / drain <= rate * 1.1, "the backlog ignored backlog_rate"
    assert per_msg >= 20, "catch-up must batch many readings per message"
    assert late == 0, "the backlog did not drain oldest first"
    conn = sqlite3.connect(data / "outbox.db")
    assert conn.execute("SELECT count(*) FROM readings WHERE seq <= ?", (backlog,)).fetchone()[0] == 0
