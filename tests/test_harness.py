"""The shared harness: the site builder's files load as the agent loads them, and the
subscriber receives from a real mosquitto (MQTT 5 and 3.1.1, retained messages, properties)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import load_config
from agent.harness.collector import Collector, retained
from agent.harness.counter import ReadingCounter
from agent.harness.site import device, hj212_uplink, mqtt_uplink, serial_bus, site_text, tcp_bus, write_site
from agent.harness.subscriber import Subscriber
from agent.localbroker import LocalBroker
from tests.helpers import wait_for

MN = "010000A8900016F000169DC0"


def telemetry(device_id: str, *seqs: int, status: str = "ok") -> str:
    readings = [{"seq": s, "ts": 1_700_000_000_000 + s, "status": status,
                 **({"values": {"pm2_5": s}} if status == "ok" else {})} for s in seqs]
    return json.dumps({"device": device_id, "readings": readings})


def send(port: int, topic: str, payload: str | bytes, *, retain: bool = False, mqtt5: bool = True,
         properties: mqtt.Properties | None = None) -> None:
    """One QoS 1 publish, acknowledged before it returns."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain, properties=properties).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_an_mqtt_site_loads_as_written(tmp_path: Path) -> None:
    cfg = write_site(tmp_path / "config.yaml", data_dir=tmp_path / "data",
                     buses={"rs485-1": serial_bus("/dev/ttyUSB0", baudrate=2400, parity="E"),
                            "lan": tcp_bus(1502, timeout="0.5s")},
                     devices={"dust-1": device("lan", "renke-dust-all-in-one", 1, interval="200ms"),
                              "meter-2": device("rs485-1", "generic-dlt645-2007", address="000000000002")},
                     uplinks={"central": mqtt_uplink(1883, reconnect_max="2s"),
                              "tb": mqtt_uplink(1884, format="thingsboard", protocol="3.1.1")})
    config = load_config(cfg).config
    assert config.gateway.id == "site-test" and config.gateway.data_dir == str(tmp_path / "data")
    assert config.buses["lan"].type == "tcp" and config.buses["lan"].timeout == 0.5
    assert config.devices["dust-1"].unit == 1 and config.devices["dust-1"].interval == 0.2
    assert config.devices["meter-2"].address == "000000000002"  # digits stay a string
    central, tb = config.uplinks["central"], config.uplinks["tb"]
    assert central.type == "mqtt" and central.port == 1883 and central.reconnect_max == 2.0
    assert tb.type == "mqtt" and tb.protocol == "3.1.1" and tb.format == "thingsboard"


def test_an_hj212_uplink_and_extra_sections_load(tmp_path: Path) -> None:
    cfg = write_site(tmp_path / "config.yaml", gateway="site-hj", data_dir=tmp_path / "data",
                     gateway_settings={"location": "31.2304,121.4737"}, comment="made by a test\nsecond line",
                     buses={"lan": tcp_bus(1502)},
                     devices={"dust-1": device("lan", "renke-dust-all-in-one", 1,
                                               report={"pm2_5": {"deadband": 5}})},
                     uplinks={"env": hj212_uplink(4000, MN, ["dust-1"], pw="123456", rtd_interval="30s")},
                     extra={"buffer": {"max_bytes": "64MiB"}, "logging": {"level": "debug"},
                            "alarms": {"dusty": {"device": "dust-1", "point": "pm2_5", "above": 75}},
                            "metrics": {"listen": "127.0.0.1:9108"}})
    assert cfg.read_text().startswith("# made by a test\n# second line\ngateway:\n")
    config = load_config(cfg).config
    env = config.uplinks["env"]
    assert env.type == "hj212" and env.mn == MN and env.pw == "123456" and env.devices == ["dust-1"]
    assert config.gateway.location == "31.2304,121.4737"
    assert config.buffer.max_bytes == 64 * 1024**2 and config.logging.level == "debug"
    assert config.alarms["dusty"].above == 75 and config.metrics is not None
    assert config.devices["dust-1"].report["pm2_5"].deadband.amount == 5


def test_extra_sections_as_text_and_an_empty_site(tmp_path: Path) -> None:
    text = site_text(data_dir=tmp_path, extra="clock:\n  step: 30s  # a comment kept\n")
    assert "uplinks: {}" in text and "  step: 30s  # a comment kept" in text
    config = load_config(write_site(tmp_path / "c.yaml", data_dir=tmp_path, extra="clock: {step: 30s}")).config
    assert config.clock.step == 30 and config.uplinks == {} and config.devices == {}


@pytest.mark.parametrize("mqtt5", [True, False], ids=["v5", "v3.1.1"])
def test_the_collector_receives_retained_json_and_raw_messages(tmp_path: Path, mqtt5: bool) -> None:
    with LocalBroker(workdir=tmp_path / "broker") as broker:
        send(broker.port, "edge/gw/status", '{"status": "online"}', retain=True, mqtt5=mqtt5)
        collector = Collector(broker.port, "edge/#", mqtt5=mqtt5).start()  # SUBACK in: nothing is missed
        try:
            props = None
            if mqtt5:
                props = mqtt.Properties(mqtt.PacketTypes.PUBLISH)
                props.CorrelationData = b"\x00corr"
            send(broker.port, "edge/gw/up/dust-1", telemetry("dust-1", 1, 2), mqtt5=mqtt5, properties=props)
            send(broker.port, "edge/gw/meta/dust-1", '{"units": {"pm2_5": "ug/m3"}}', retain=True, mqtt5=mqtt5)
            send(broker.port, "edge/gw/raw", b"\xff\x00not json", mqtt5=mqtt5)
            wait_for(lambda: len(collector.all()) == 4, 10, "four messages")
        finally:
            collector.stop()
        status = collector.on("edge/gw/status")[0]
        assert status.retain and status.body == {"status": "online"} and collector.status() == [status.body]
        up = collector.on("edge/gw/up/dust-1")[0]
        assert not up.retain and up.payload == telemetry("dust-1", 1, 2).encode()
        assert [(r.device, r.seq, r.values) for r in collector.readings()] == [("dust-1", 1, {"pm2_5": 1}),
                                                                                ("dust-1", 2, {"pm2_5": 2})]
        assert collector.seqs("dust-1") == [1, 2] and collector.readings("meter-1") == []
        assert collector.meta() == {"dust-1": {"units": {"pm2_5": "ug/m3"}}}
        assert collector.on("edge/gw/raw")[0].body == b"\xff\x00not json"
        if mqtt5:
            assert getattr(up.properties, "CorrelationData", None) == b"\x00corr"
        assert retained(broker.port, "edge/gw/status") == {"status": "online"}


def test_a_persistent_session_keeps_what_arrived_while_away(tmp_path: Path) -> None:
    with LocalBroker(workdir=tmp_path / "broker") as broker:
        Collector(broker.port, client_id="platform-1").start().stop()
        send(broker.port, "edge/gw/up/dust-1", telemetry("dust-1", 7))
        collector = Collector(broker.port, client_id="platform-1").start()
        try:
            wait_for(lambda: collector.seqs() == [7], 10, "the queued reading")
        finally:
            collector.stop()


def test_a_plain_subscriber_hands_messages_to_its_callback_and_the_counter_counts(tmp_path: Path) -> None:
    got: list[tuple[str, bytes]] = []
    with LocalBroker(workdir=tmp_path / "broker") as broker:
        sub = Subscriber(broker.port, ["a/#", "b/+"], lambda m: got.append((m.topic, m.payload))).start()
        counter = ReadingCounter(broker.port, "gw").start()
        try:
            for topic, payload in (("a/1/2", "x"), ("b/1", "y"), ("c/1", "z")):
                send(broker.port, topic, payload)
            send(broker.port, "edge/gw/up/dust-1", telemetry("dust-1", 1, 2))
            send(broker.port, "edge/gw/up/dust-1", telemetry("dust-1", 3, status="timeout"))
            wait_for(lambda: len(got) == 2 and counter.snapshot()[0] == 3, 10, "the messages")
            time.sleep(0.2)
        finally:
            sub.stop()
            counter.stop()
    assert got == [("a/1/2", b"x"), ("b/1", b"y")]
    assert counter.snapshot() == (3, 2, 1)


def test_a_refused_connection_is_an_error(tmp_path: Path) -> None:
    with (LocalBroker(workdir=tmp_path / "broker", anonymous=False) as broker,
          pytest.raises(TimeoutError, match=r"refused: connection \(Not authorized\)")):
        Subscriber(broker.port, "edge/#").start()
