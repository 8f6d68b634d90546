"""A broker that caps message size without announcing it (mosquitto ``message_size_limit``,
cloud brokers' payload caps) must not block the uplink: batches are halved until they pass,
and a single reading too large even alone is set aside and announced, never retried forever.

Real parts: a mosquitto with ``message_size_limit``, the outbox on disk, the uplink worker.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.harness.collector import Collector
from agent.localbroker import LocalBroker
from drivers.reading import Reading
from tests.helpers import wait_for
from tests.mqtt_support import GATEWAY, Rig, broker_lines, uplink

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

LIMIT = 4000  # bytes of payload mosquitto accepts; it drops the connection of a client that sends more


def big_reading(points: int) -> Reading:
    return Reading("dust-1", int(time.time() * 1000), {f"channel_{i:03d}": 1000.5 + i for i in range(points)})


def test_a_payload_cap_halves_batches_and_sets_aside_a_reading_too_large_alone(tmp_path: Path) -> None:
    broker = LocalBroker(workdir=tmp_path / "broker", extra=broker_lines(f"message_size_limit {LIMIT}")).start()
    rec = Collector(broker.port, "edge/#").start()
    rig = Rig(tmp_path, {"central": uplink(broker.port, backlog_batch=100, live_batch=20)})
    for _ in range(100):  # a backlog: ~30 kB per batch of 100, each reading ~300 bytes
        rig.outbox.submit(big_reading(12))
    rig.start()
    worker = rig.workers["central"]
    try:
        wait_for(lambda: set(rec.seqs()) == set(range(1, 101)), 60, "all 100 readings past the payload cap")
        assert 0 < worker.stats.size_cap <= LIMIT, worker.stats
        rig.outbox.submit(big_reading(400))  # seq 101: ~9 kB alone
        for _ in range(5):
            rig.outbox.submit(big_reading(12))  # seqs 102..106 behind it
        wait_for(lambda: set(rec.seqs()) >= set(range(102, 107)), 60, "the readings behind the oversize one")
        notices = lambda: [m.body for m in rec.on(f"edge/{GATEWAY}/status")  # noqa: E731
                           if isinstance(m.body, dict) and m.body.get("event") == "undeliverable"]
        wait_for(lambda: bool(notices()), 30, "the undeliverable notice")
        wait_for(lambda: rig.outbox.sync() and not rig.pending("central"), 10, "the backlog to empty")
    finally:
        rig.stop()
        rec.stop()
        broker.stop()
    assert set(rec.seqs()) == set(range(1, 107)) - {101}
    notice = notices()[0]
    assert (notice["first_seq"], notice["last_seq"], notice["count"]) == (101, 101, 1), notice
    assert "too large" in notice["reason"]
    assert worker.stats.set_aside == 1
