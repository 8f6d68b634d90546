"""The stall watchdog: a connection that silently loses bytes (the socket stays up) is
detected by the age of the oldest unacknowledged publish, and a fresh session delivers all."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from agent.harness.collector import Collector, retained
from agent.localbroker import LocalBroker
from tests.faultproxy import FaultProxy
from tests.helpers import wait_for
from tests.mqtt_support import GATEWAY, Rig, broker_lines, uplink

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

READINGS = 60
PERIOD = 0.1


def test_a_black_holed_connection_is_replaced_and_every_reading_arrives(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    broker = LocalBroker(workdir=tmp_path / "broker", extra=broker_lines()).start()
    proxy = FaultProxy(seed=7).start(0, broker.port)
    rec = Collector(broker.port, "edge/#").start()
    # keepalive far longer than the test: only the watchdog can notice
    rig = Rig(tmp_path, {"central": uplink(proxy.port, ack_timeout="2s", keepalive="60s")}).start()
    worker = rig.workers["central"]

    def feed() -> None:
        for _ in range(READINGS):
            rig.submit()
            time.sleep(PERIOD)

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        feeder.start()
        wait_for(lambda: len(set(rec.seqs())) >= 5, 10, "first readings through the proxy")
        proxy.drop_bytes(True)  # the live connection now loses every byte, both ways, silently
        dropped_at = time.monotonic()
        time.sleep(0.5)
        proxy.drop_bytes(False)  # new connections are clean; the black-holed one stays dead
        wait_for(lambda: worker.stats.stalls >= 1, 10, "the watchdog to notice")
        noticed = time.monotonic() - dropped_at
        feeder.join(READINGS * PERIOD + 5)
        wait_for(lambda: set(rec.seqs()) >= set(range(1, READINGS + 1)), 15, f"all {READINGS} readings")
        wait_for(lambda: rig.outbox.sync() and not rig.pending("central"), 5, "the buffer to empty")
        status = retained(broker.port, f"edge/{GATEWAY}/status")  # the old session's will came before
    finally:
        rig.stop()
        rec.stop()
        proxy.stop()
        broker.stop()
    assert proxy.stats.bytes_dropped > 0, "the fault must have hit live traffic"
    assert 1.5 <= noticed <= 2.0 + 2.5, noticed  # about ack_timeout (the oldest message may predate the fault)
    assert worker.stats.connects >= 2
    warnings = [m for m in caplog.messages if "no PUBACK for" in m]
    assert warnings and "reconnecting" in warnings[0]
    assert set(rec.seqs()) == set(range(1, READINGS + 1))
    assert status["status"] == "online"
