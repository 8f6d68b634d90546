"""A publish the broker refuses (mosquitto ACL) keeps its readings in the buffer under MQTT v5.

Under 3.1.1 mosquitto acknowledges a denied publish as a success: the last test pins that
down, because docs/mqtt.md tells technicians so.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from agent.harness.collector import Collector
from agent.harness.site import device, mqtt_uplink, serial_bus, tcp_bus, write_site
from agent.localbroker import LocalBroker
from buffer.schema import committed_seq
from tests.helpers import AgentProcess, SimulatorThread, wait_for
from tests.mqtt_support import GATEWAY, Rig, broker_lines, uplink

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

DENY_DUST = """# anonymous clients: the platform reads everything, the gateway may not publish dust-1
topic read edge/#
topic write edge/site-test/status
topic write edge/site-test/health
topic write edge/site-test/meta/#
topic write edge/site-test/up/meter-1
"""
ALLOW_ALL = "topic readwrite edge/#\n"


def acl_broker(d: Path, rules: str) -> LocalBroker:
    acl = d / "acl"
    acl.write_text(rules)
    return LocalBroker(workdir=d / "broker", extra=broker_lines(f"acl_file {acl}")).start()


def test_refused_readings_stay_buffered_and_the_refusal_is_logged_once(tmp_path: Path) -> None:
    broker = acl_broker(tmp_path, DENY_DUST)
    sim = SimulatorThread(pty={1: "renke-dust-all-in-one"}, tcp={1: "eastron-sdm630"}).start()
    rec = Collector(broker.port, "edge/#").start()
    cfg = write_site(
        tmp_path / "config.yaml", data_dir=tmp_path / "data",
        buses={"rs485-1": serial_bus(sim.serial_port, baudrate=9600), "lan": tcp_bus(sim.tcp_port)},
        devices={"dust-1": device("rs485-1", "renke-dust-all-in-one", 1, interval="500ms"),
                 "meter-1": device("lan", "eastron-sdm630", 1, interval="500ms")},
        uplinks={"central": mqtt_uplink(broker.port, refused_retry="1s")}, extra={"logging": {"level": "debug"}})
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        # several refusal periods pass: each one re-probes the denied topic
        wait_for(lambda: len({r.seq for r in rec.readings() if r.device == "meter-1"}) >= 6, 30,
                 "meter-1 readings (allowed) to arrive")
        time.sleep(1.5)
    finally:
        rc = agent.stop(signal.SIGTERM)
        rec.stop()
        sim.stop()
        broker.stop()
    log = agent.log()
    assert rc == 0, log
    assert not [r for r in rec.readings() if r.device == "dust-1"], "the broker must have refused dust-1"
    db = sqlite3.connect(tmp_path / "data" / "outbox.db")
    buffered = [s for (s,) in db.execute("SELECT seq FROM readings WHERE device = 'dust-1' ORDER BY seq")]
    meter = {r.seq for r in rec.readings() if r.device == "meter-1"}
    committed = committed_seq(db)
    # every dust-1 reading is still in the buffer: nothing lost, and the platform got every other one
    assert len(buffered) >= 6
    assert set(range(1, committed + 1)) - meter - set(buffered) <= set(range(committed - 4, committed + 1))
    assert not set(buffered) & meter
    refusals = [line for line in log.splitlines() if "refused publish to" in line]
    errors = [line for line in refusals if " ERROR " in line]
    assert len(errors) == 1, refusals
    assert f"edge/{GATEWAY}/up/dust-1" in errors[0]
    assert "Not authorized" in errors[0] and "reason 135" in errors[0]
    assert len(refusals) >= 3, "the topic was probed again and refused again (at debug level only)"


def test_a_refused_topic_is_delivered_once_the_broker_allows_it(tmp_path: Path) -> None:
    broker = acl_broker(tmp_path, DENY_DUST)
    rec = Collector(broker.port, "edge/#").start()
    rig = Rig(tmp_path, {"central": uplink(broker.port, refused_retry="500ms")}, devices=("dust-1", "meter-1"))
    rig.start()
    try:
        rig.submit("dust-1", 20)
        rig.submit("meter-1", 5)
        wait_for(lambda: len(set(rec.seqs())) == 5, 10, "the allowed meter-1 readings")
        worker = rig.workers["central"]
        wait_for(lambda: worker.stats.refused >= 2, 10, "a refusal and a refused probe")
        assert rig.outbox.sync()
        assert [d for _, d in rig.pending("central")] == ["dust-1"] * 20
        assert "reason 135" in worker.stats.last_error and worker.stats.errors >= 2
        # the platform fixes its ACL; mosquitto reloads it on SIGHUP
        (tmp_path / "acl").write_text(ALLOW_ALL)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(set(rec.seqs())) == 25, 15, "the buffered dust-1 readings after the ACL fix")
        wait_for(lambda: rig.outbox.sync() and not rig.pending("central"), 5, "the buffer to empty")
    finally:
        rig.stop()
        rec.stop()
        broker.stop()
    assert set(rec.seqs()) == set(range(1, 26))


def test_under_mqtt_3_1_1_a_denied_publish_is_silently_lost(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Why v5 is the default: mosquitto PUBACKs a denied 3.1.1 publish as a success."""
    caplog.set_level(logging.INFO)
    broker = acl_broker(tmp_path, DENY_DUST)
    rec = Collector(broker.port, "edge/#").start()
    rig = Rig(tmp_path, {"central": uplink(broker.port, protocol="3.1.1")}).start()
    try:
        rig.submit("dust-1", 5)
        wait_for(lambda: rig.workers["central"].stats.readings_acked == 5, 10, "5 (false) acknowledgements")
        wait_for(lambda: rig.outbox.sync() and not rig.pending("central"), 5, "the buffer to empty")
    finally:
        rig.stop()
        rec.stop()
        broker.stop()
    assert set(rec.seqs()) == set()  # the platform never got them, and the agent could not know
    assert rig.workers["central"].stats.refused == 0
    assert not [m for m in caplog.messages if "refused" in m]


def test_readings_skipped_while_refused_go_out_at_once_when_the_acl_is_lifted(tmp_path: Path) -> None:
    """Live readings keep coming while the broker refuses their topic, so a probe is a live
    message of one reading and the rest wait. When the probe gets through, every skipped
    reading goes out on the live connection, without waiting for a reconnect."""
    broker = acl_broker(tmp_path, DENY_DUST)
    rec = Collector(broker.port, "edge/#").start()
    rig = Rig(tmp_path, {"central": uplink(broker.port, refused_retry="1s")}, devices=("dust-1",))
    rig.start()
    worker = rig.workers["central"]
    done = threading.Event()

    def trickle() -> None:
        while not done.is_set():
            rig.submit("dust-1", 1)
            time.sleep(0.02)

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    try:
        wait_for(lambda: worker.stats.refused >= 2, 10, "a refusal and a refused probe")
        (tmp_path / "acl").write_text(ALLOW_ALL)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)
        time.sleep(1 + 1.5)  # one refused_retry for the probe, then everything skipped goes at once
        done.set()
        feeder.join()
        wait_for(lambda: len(set(rec.seqs())) == len(rig.submitted), 3, "every skipped dust-1 reading")
    finally:
        done.set()
        rig.stop()
        rec.stop()
        broker.stop()
    assert set(rec.seqs()) == set(range(1, len(rig.submitted) + 1))
    assert worker.stats.connects == 1, "delivered on the same connection, not after a reconnect"


def test_a_new_session_probes_refused_topics_at_once(tmp_path: Path) -> None:
    """refused_retry is long; the broker restarts with the topic allowed: the new session
    probes at once instead of waiting out refused_retry."""
    broker = acl_broker(tmp_path, DENY_DUST)
    rig = Rig(tmp_path, {"central": uplink(broker.port, refused_retry="10m")})
    rig.start()
    worker = rig.workers["central"]
    try:
        rig.submit("dust-1", 10)
        wait_for(lambda: worker.stats.refused >= 1, 10, "the refusal")
        broker.stop()
        (tmp_path / "acl").write_text(ALLOW_ALL)
        broker.start()
        rec = Collector(broker.port, "edge/#").start()
        try:
            wait_for(lambda: rig.outbox.sync() and not rig.pending("central"), 15,
                     "the refused readings to go out in the new session")
        finally:
            rec.stop()
    finally:
        rig.stop()
        broker.stop()
    assert worker.stats.connects >= 2
