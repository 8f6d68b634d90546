"""One MQTT subscriber for the tests, the benchmarks and the demo (paho 2.x).

It connects to host:port, subscribes to its topic filters, and ``start()`` returns once the
broker's SUBACK has granted every filter; from then on each message goes to ``on_message``
on paho's network thread. After a lost connection it reconnects (quickly: brokers are
stopped and started again by outage tests) and subscribes again."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

_ids = itertools.count(1)


@dataclass
class Message:
    """A message as it arrived: ``body`` is the payload parsed as JSON, else the raw bytes."""

    topic: str
    body: Any
    retain: bool
    properties: Properties | None
    at: float  # time.time() on arrival
    dup: bool = False  # the broker sent it again (our PUBACK was lost)
    payload: bytes = b""

    @staticmethod
    def of(msg: mqtt.MQTTMessage) -> Message:
        try:
            body: Any = json.loads(msg.payload)
        except ValueError:
            body = msg.payload
        return Message(msg.topic, body, bool(msg.retain), getattr(msg, "properties", None), time.time(),
                       bool(msg.dup), bytes(msg.payload))


class Subscriber:
    """Subscribes to ``topics`` and hands every message to ``on_message``.

    ``session_expiry`` (seconds) asks for a persistent session: the broker keeps the
    subscription and queues QoS 1 messages while this client is away. ``mqtt5=False``
    speaks MQTT 3.1.1 (a persistent session is then ``clean_session=False``)."""

    def __init__(self, port: int, topics: str | Sequence[str] = "#",
                 on_message: Callable[[mqtt.MQTTMessage], None] | None = None, *, host: str = "127.0.0.1",
                 client_id: str | None = None, username: str | None = None, password: str | None = None,
                 mqtt5: bool = True, session_expiry: int | None = None, qos: int = 1) -> None:
        self.host, self.port = host, port
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.qos = qos
        self.handler = on_message
        self.session_expiry = session_expiry
        self.client_id = client_id or f"harness-{os.getpid()}-{next(_ids)}"
        self.subscribed = threading.Event()
        self.refused: list[str] = []  # filters the broker did not grant, or a refused connection
        if mqtt5:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        else:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                      protocol=mqtt.MQTTv311, clean_session=session_expiry is None)
        self.mqtt5 = mqtt5
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        # back quickly when a test restarts the broker (paho takes a float, though typed int)
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]

    def start(self, timeout: float = 10.0) -> Self:
        """Connect and return once the broker has granted every topic filter."""
        if self.mqtt5:
            props = None
            if self.session_expiry is not None:
                props = Properties(mqtt.PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry
            self.client.connect(self.host, self.port, clean_start=self.session_expiry is None, properties=props)
        else:
            self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self.subscribed.wait(timeout) or self.refused:
            self.stop()
            why = f"refused: {', '.join(self.refused)}" if self.refused else f"no SUBACK within {timeout:g} s"
            raise TimeoutError(f"subscriber {self.client_id} on {self.host}:{self.port}: {why}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        """Each message, on paho's thread; the default hands it to the ``on_message`` given."""
        if self.handler is not None:
            self.handler(msg)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            self.refused.append(f"connection ({reason})")
            self.subscribed.set()
            return
        client.subscribe([(topic, self.qos) for topic in self.topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      properties: Any) -> None:
        self.refused += [f"{topic} ({code})" for topic, code in zip(self.topics, reasons, strict=False)
                         if code.is_failure]
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.on_message(msg)
