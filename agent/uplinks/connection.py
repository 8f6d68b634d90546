"""One MQTT session with paho-mqtt 2.x, driven by the uplink's own thread.

The uplink thread calls :meth:`Connection.loop` itself (no paho thread), so callbacks run
in that thread and no lock is held across ``publish()``. What the broker allows in its
CONNACK (v5 Receive Maximum, Maximum Packet Size, Retain Available) is honoured: paho
does not do it by itself. paho's own in-flight limit is off: the uplink keeps at most
``window`` messages in flight, all kinds counted.
"""

from __future__ import annotations

import contextlib
import select
import ssl
import threading
import time
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from ..config import MqttUplink
from .security import UplinkError, describe_connack, describe_connect_error, describe_lost_before_connack
from .waker import Waker

RETAIN_NOT_SUPPORTED = 154
PACKET_OVERHEAD = 1024  # fixed header, topic and properties of a PUBLISH, generously


class Stopping(Exception):
    """The uplink was asked to stop while connecting."""


class Connection:
    def __init__(self, cfg: MqttUplink, client_id: str, will: tuple[str, str], secret: str | None,
                 ctx: ssl.SSLContext | None, retain: bool = True) -> None:
        self.cfg = cfg
        self.v5 = cfg.protocol == "5"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
                             clean_session=None if self.v5 else True)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, secret)
        if ctx is not None:
            client.tls_set_context(ctx)
            if not ctx.check_hostname:  # tls.insecure: paho would check the name itself otherwise
                client.tls_insecure_set(True)
        client.will_set(will[0], will[1], qos=1, retain=retain)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(0)  # the uplink counts; paho cannot change it after CONNACK
        client.connect_timeout = cfg.ack_timeout
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.client = client
        # (mid, PUBACK reason code), appended by on_publish in this thread
        self.acks: deque[tuple[int, int, ReasonCode]] = deque()
        self.lost = False
        self.connack: ReasonCode | None = None
        self.window = cfg.max_inflight
        self.max_payload = 0  # 0: no limit announced
        self.retain = retain
        self._log_error: str | None = None

    # -- callbacks (run inside loop() or publish(), in the uplink thread) ---------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        self.connack = reason
        if self.v5 and properties is not None and not reason.is_failure:
            receive_max = getattr(properties, "ReceiveMaximum", None)
            if receive_max:
                self.window = max(1, min(self.cfg.max_inflight, int(receive_max)))
            packet_max = getattr(properties, "MaximumPacketSize", None)
            if packet_max:
                self.max_payload = max(256, int(packet_max) - PACKET_OVERHEAD)
            if getattr(properties, "RetainAvailable", 1) == 0:
                self.retain = False

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        self.lost = True

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        self.acks.append((mid, reason.value, reason))

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._log_error = buf

    # -- connecting ---------------------------------------------------------------------
    def open(self, stop: threading.Event) -> None:
        """CONNECT and wait for a success CONNACK; UplinkError with advice otherwise."""
        cfg, client = self.cfg, self.client
        # paho formats a log line per packet when on_log is set: only while connecting
        client.on_log = self._on_log
        try:
            if self.v5:
                rc = client.connect(cfg.host, cfg.effective_port, int(cfg.keepalive), clean_start=True)
            else:
                rc = client.connect(cfg.host, cfg.effective_port, int(cfg.keepalive))
        except OSError as exc:  # includes ssl.SSLError and certificate errors
            raise UplinkError(describe_connect_error(exc, cfg)) from exc
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise UplinkError(describe_lost_before_connack(self._log_error, cfg))
        deadline = time.monotonic() + cfg.ack_timeout
        while self.connack is None:
            if stop.is_set():
                raise Stopping
            alive = self.loop(0.1)
            if self.connack is not None:
                break
            if not alive:
                raise UplinkError(describe_lost_before_connack(self._log_error, cfg))
            if time.monotonic() > deadline:
                raise UplinkError(f"no CONNACK from {cfg.host}:{cfg.effective_port} within"
                                  f" {cfg.ack_timeout:.0f}s (ack_timeout)")
        client.on_log = None
        if self.connack.is_failure:
            if self.connack.value == RETAIN_NOT_SUPPORTED:
                self.retain = False
            raise UplinkError(describe_connack(self.connack, cfg))

    # -- a live session -----------------------------------------------------------------
    def loop(self, timeout: float) -> bool:
        """Network I/O and callbacks, waiting up to ``timeout`` for the broker; False once
        the connection is gone."""
        return self._io(timeout, None)

    def sleep(self, timeout: float, waker: Waker) -> bool:
        """Sleep until the broker sends something, ``waker`` is poked or ``timeout``
        passes, then do the network I/O and keepalive. This is how an idle uplink waits: no
        wake-ups without work. False once the connection is gone."""
        return self._io(timeout, waker)

    def _io(self, timeout: float, waker: Waker | None) -> bool:
        """paho's external-loop API (``loop_read``/``loop_write``/``loop_misc`` around our own
        ``select``), never ``Client.loop``: that creates a socketpair to which paho then writes a
        byte on every publish, and which wakes the next ``select`` for nothing."""
        client = self.client
        sock = client.socket()
        if sock is None:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            timeout = 0.0  # TLS has decrypted bytes buffered: select would not see them
        reading = [sock] if waker is None else [sock, waker.sock]
        writing = [sock] if client.want_write() else []
        try:
            readable, _, _ = select.select(reading, writing, [], max(0.0, timeout))
        except (OSError, ValueError):
            self.lost = True
            return False
        if waker is not None and waker.sock in readable:
            waker.drain()
        rc = mqtt.MQTT_ERR_SUCCESS
        if sock in readable or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            rc = client.loop_read()
        if rc == mqtt.MQTT_ERR_SUCCESS and client.want_write():
            rc = client.loop_write()
        if rc == mqtt.MQTT_ERR_SUCCESS:
            rc = client.loop_misc()
        return rc == mqtt.MQTT_ERR_SUCCESS and not self.lost

    def publish(self, topic: str, data: bytes | str, retain: bool = False) -> int | None:
        """QoS 1 publish; the mid, or None when the connection is gone.

        paho keeps a message it could not send and would send it on reconnect; a session
        is never reconnected (the next one is a new client), so nothing is sent twice.
        """
        info = self.client.publish(topic, data, qos=1, retain=retain and self.retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.lost = True
            return None
        return info.mid

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the socket may be gone already
            self.client.disconnect()
            self.loop(0.05)
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(Exception):
                sock.close()

