"""An MQTT uplink: reads the outbox, publishes with QoS 1, acknowledges on PUBACK.

The SQLite outbox is the only queue. Each uplink runs one thread that drives its own paho
client (``loop()``, no paho thread): callbacks run in this thread, so no lock is held
across ``publish()``. At most ``max_inflight`` messages are handed to paho; a message's
readings are acknowledged to the outbox only on a success PUBACK. A refused publish
(MQTT v5 reason code >= 0x80, e.g. 135 "not authorized") keeps its readings buffered.
paho never retransmits on a live connection, so when the oldest unacknowledged publish
is older than ``ack_timeout`` the uplink drops the connection and starts a fresh
session, which re-reads everything still pending from the outbox.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from buffer.outbox import Outbox, OutboxReader, Row

from ..config import MqttUplink, Tls
from . import payload

log = logging.getLogger(__name__)

REFUSED_RETRY_SECONDS = 30.0
DEFAULT_TOPICS = {
    "native": {
        "telemetry": "{prefix}/{gateway}/up/{device}",
        "meta": "{prefix}/{gateway}/meta/{device}",
        "status": "{prefix}/{gateway}/status",
    },
    "thingsboard": {
        "telemetry": "v1/gateway/telemetry",
        "meta": "v1/gateway/attributes",
        "status": "{prefix}/{gateway}/status",
    },
}


@dataclass(slots=True)
class UplinkStats:
    connected: bool = False
    connects: int = 0
    messages: int = 0
    readings_acked: int = 0
    refused: int = 0
    stalls: int = 0
    last_error: str = ""


@dataclass(slots=True)
class _Inflight:
    kind: str  # "readings" | "eviction" | "other"
    sent: float
    topic: str
    seqs: list[int] = field(default_factory=list)
    eviction_id: int = 0


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    gateway: str
    version: str
    config_hash: str
    started_ms: int
    devices: dict[str, dict[str, Any]]  # device id → metadata (profile, units, location...)


class UplinkError(Exception):
    """A connection attempt failed in a way a technician must see (TLS, login, DNS)."""


def read_secret(cfg: MqttUplink, base_dir: Path) -> str | None:
    import os

    if cfg.password_file:
        path = Path(cfg.password_file)
        if not path.is_absolute():
            path = base_dir / path
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise UplinkError(f"cannot read password_file {path}: {exc.strerror}") from exc
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise UplinkError(f"environment variable {cfg.password_env} (password_env) is not set")
        return value
    return None


def tls_context(cfg: MqttUplink, base_dir: Path) -> ssl.SSLContext | None:
    if not cfg.tls_enabled:
        return None
    tls = cfg.tls if isinstance(cfg.tls, Tls) else Tls()

    def p(name: str | None) -> str | None:
        if name is None:
            return None
        path = Path(name)
        return str(path if path.is_absolute() else base_dir / path)

    try:
        ctx = ssl.create_default_context(cafile=p(tls.ca))
        if tls.cert:
            ctx.load_cert_chain(p(tls.cert) or "", p(tls.key))
    except (OSError, ssl.SSLError) as exc:
        raise UplinkError(f"TLS set-up failed: {exc}") from exc
    if tls.insecure:
        ctx.check_hostname = False
    return ctx


def describe_connect_error(exc: BaseException, cfg: MqttUplink) -> str:
    where = f"{cfg.host}:{cfg.effective_port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        if "expired" in reason:
            return f"TLS: the broker's certificate has expired ({where})"
        if "Hostname mismatch" in reason or "IP address mismatch" in reason:
            return f"TLS: the broker's certificate does not match host '{cfg.host}' ({reason})"
        if "local issuer" in reason or "self-signed" in reason or "unknown ca" in reason.lower():
            return f"TLS: the broker's certificate is signed by an unknown CA ({reason}); set tls.ca"
        return f"TLS: certificate verification failed: {reason}"
    if isinstance(exc, ssl.SSLError):
        text = str(exc)
        if "CERTIFICATE_REQUIRED" in text.upper() or "certificate required" in text:
            return f"TLS: the broker requires a client certificate (tls.cert, tls.key) ({where})"
        if "UNKNOWN_CA" in text.upper() or "unknown ca" in text:
            return f"TLS: the broker does not trust our client certificate ({where})"
        if "EXPIRED" in text.upper():
            return f"TLS: a certificate has expired ({text})"
        return f"TLS error with {where}: {text}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where} (broker down or wrong port)"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} (timeout)"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _code(reason: ReasonCode | int) -> int:
    return int(reason.value) if isinstance(reason, ReasonCode) else int(reason)


class MqttUplinkWorker:
    """One platform: its broker, credentials, topics, format and delivery state."""

    def __init__(self, name: str, cfg: MqttUplink, info: GatewayInfo, outbox: Outbox,
                 base_dir: Path) -> None:
        self.name = name
        self.cfg = cfg
        self.info = info
        self.outbox = outbox
        self.base_dir = base_dir
        self.bit = outbox.uplink_bits[name]
        self.stats = UplinkStats()
        self.topics = {**DEFAULT_TOPICS[cfg.format]}
        for key, value in cfg.topics.model_dump(exclude_none=True).items():
            self.topics[key] = value
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._acks: deque[tuple[int, ReasonCode | int]] = deque()
        self._disconnected = threading.Event()
        self._connack: ReasonCode | None = None
        self._logged: set[str] = set()
        outbox.add_listener(lambda _seq: self._wake.set())

    # -- topics ---------------------------------------------------------------------
    def topic(self, kind: str, device: str = "", profile: str = "") -> str:
        return self.topics[kind].format(prefix=self.cfg.topic_prefix, gateway=self.info.gateway,
                                        device=device, profile=profile)

    def _log_once(self, level: int, key: str, msg: str, *args: Any) -> None:
        """Log a state change once; repeats go to debug."""
        if key in self._logged:
            log.debug(msg, *args)
            return
        self._logged.add(key)
        log.log(level, msg, *args)

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"uplink-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        reader = self.outbox.reader()
        attempt = 0
        try:
            while not self._stop.is_set():
                ok = False
                try:
                    ok = self._session(reader)
                except UplinkError as exc:
                    self.stats.last_error = str(exc)
                    self._log_once(logging.ERROR, f"err:{exc}", "uplink %s: %s", self.name, exc)
                except Exception as exc:
                    self.stats.last_error = str(exc)
                    log.exception("uplink %s: unexpected error", self.name)
                self.stats.connected = False
                attempt = 0 if ok else attempt + 1
                # exponential back-off with full jitter: a fleet does not reconnect in step
                cap = min(self.cfg.reconnect_max, self.cfg.reconnect_min * 2 ** min(attempt, 16))
                delay = random.uniform(self.cfg.reconnect_min * 0.5, max(self.cfg.reconnect_min, cap))
                self._stop.wait(delay)
        finally:
            reader.close()

    # -- one connection ---------------------------------------------------------------
    def _client(self) -> mqtt.Client:
        v5 = self.cfg.protocol == "5"
        client_id = self.cfg.client_id or f"{self.info.gateway}-{self.name}"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        secret = read_secret(self.cfg, self.base_dir)
        if self.cfg.username is not None or secret is not None:
            client.username_pw_set(self.cfg.username, secret)
        ctx = tls_context(self.cfg, self.base_dir)
        if ctx is not None:
            client.tls_set_context(ctx)
        client.will_set(self.topic("status"), json.dumps({"status": "offline"}), qos=1, retain=True)
        client.max_inflight_messages_set(self.cfg.max_inflight + 8)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        self._connack = reason

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        self._disconnected.set()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        self._acks.append((mid, reason))

    def _connect(self, client: mqtt.Client) -> None:
        self._connack = None
        self._disconnected.clear()
        try:
            if self.cfg.protocol == "5":
                client.connect(self.cfg.host, self.cfg.effective_port, int(self.cfg.keepalive),
                               clean_start=True)
            else:
                client.connect(self.cfg.host, self.cfg.effective_port, int(self.cfg.keepalive))
        except (OSError, ssl.SSLError) as exc:
            raise UplinkError(describe_connect_error(exc, self.cfg)) from exc
        deadline = time.monotonic() + 10
        while self._connack is None:
            rc = client.loop(timeout=0.1)
            if rc != mqtt.MQTT_ERR_SUCCESS or self._disconnected.is_set() or time.monotonic() > deadline:
                raise UplinkError(f"no CONNACK from {self.cfg.host}:{self.cfg.effective_port}")
        if self._connack.is_failure:
            text = str(self._connack)
            if "password" in text.lower() or "authoriz" in text.lower():
                raise UplinkError(f"broker refused the login ({text}); check username and password")
            raise UplinkError(f"broker refused the connection: {text}")

    def _publish(self, client: mqtt.Client, topic: str, data: bytes | str, entry: _Inflight,
                 inflight: dict[int, _Inflight], retain: bool = False) -> bool:
        info = client.publish(topic, data, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            # paho keeps such a message queued and sends it on reconnect; we never resend it
            # ourselves within this session, and a new session uses a new client.
            self._disconnected.set()
            return False
        inflight[info.mid] = entry
        self.stats.messages += 1
        return True

    def _announce(self, client: mqtt.Client, inflight: dict[int, _Inflight]) -> None:
        now = time.monotonic()
        status = {"status": "online", "version": self.info.version,
                  "config_hash": self.info.config_hash, "started": self.info.started_ms}
        self._publish(client, self.topic("status"), json.dumps(status), _Inflight("other", now, "status"),
                      inflight, retain=True)
        if self.cfg.format == "thingsboard":
            for device in self.info.devices:
                self._publish(client, "v1/gateway/connect", json.dumps({"device": device}),
                              _Inflight("other", now, "connect"), inflight)
            attrs = {d: m for d, m in self.info.devices.items()}
            self._publish(client, self.topic("meta"), json.dumps(attrs, ensure_ascii=False),
                          _Inflight("other", now, "meta"), inflight)
            return
        for device, meta in self.info.devices.items():
            self._publish(client, self.topic("meta", device, str(meta.get("profile", ""))),
                          json.dumps(meta, ensure_ascii=False), _Inflight("other", now, "meta"),
                          inflight, retain=True)

    def _messages(self, rows: Sequence[Row], per_message: int) -> list[tuple[str, bytes, list[int]]]:
        """Group rows into (topic, payload, seqs), one device per message for native."""
        by_device: dict[str, list[Row]] = {}
        for r in rows:
            by_device.setdefault(r.device, []).append(r)
        out: list[tuple[str, bytes, list[int]]] = []
        if self.cfg.format == "thingsboard":
            for i in range(0, len(rows), per_message):
                chunk = rows[i : i + per_message]
                group: dict[str, list[Row]] = {}
                for r in chunk:
                    group.setdefault(r.device, []).append(r)
                out.append((self.topic("telemetry"), payload.thingsboard(group), [r.seq for r in chunk]))
            return out
        for device, drows in by_device.items():
            profile = str(self.info.devices.get(device, {}).get("profile", ""))
            topic = self.topic("telemetry", device, profile)
            for i in range(0, len(drows), per_message):
                chunk = drows[i : i + per_message]
                out.append((topic, payload.native(self.info.gateway, device, chunk), [r.seq for r in chunk]))
        return out

    def _session(self, reader: OutboxReader) -> bool:
        """One connection, from CONNECT until it drops or stalls. True if it connected."""
        client = self._client()
        self._connect(client)
        self.stats.connects += 1
        self.stats.connected = True
        self.stats.last_error = ""
        self._logged = {k for k in self._logged if k.startswith("refused:")}
        log.info("uplink %s: connected to %s:%d (MQTT %s%s)", self.name, self.cfg.host,
                 self.cfg.effective_port, self.cfg.protocol, ", TLS" if self.cfg.tls_enabled else "")
        inflight: dict[int, _Inflight] = {}
        inflight_seqs: set[int] = set()
        self._acks.clear()
        try:
            self._announce(client, inflight)
            self._deliver(client, reader, inflight, inflight_seqs)
        finally:
            with contextlib.suppress(Exception):  # the socket may be gone already
                client.disconnect()
                client.loop(timeout=0.05)
            sock = client.socket()
            if sock is not None:
                with contextlib.suppress(Exception):
                    sock.close()
        return True

    def _deliver(self, client: mqtt.Client, reader: OutboxReader, inflight: dict[int, _Inflight],
                 inflight_seqs: set[int]) -> None:
        cfg = self.cfg
        self.outbox.sync()
        live_floor = self.outbox.last_seq
        live_cursor = live_floor
        backlog_cursor = 0
        tokens = float(cfg.backlog_batch)
        last_refill = time.monotonic()
        rescan_at = 0.0
        backlog_slots = max(1, cfg.max_inflight - min(2, cfg.max_inflight - 1))
        evictions_seen = -1
        while not self._stop.is_set():
            busy = bool(inflight)
            rc = client.loop(timeout=0.01 if busy else 0.0)
            if rc != mqtt.MQTT_ERR_SUCCESS or self._disconnected.is_set():
                self._log_once(logging.WARNING, "lost", "uplink %s: connection lost (%s)", self.name,
                               mqtt.error_string(rc))
                return
            now = time.monotonic()
            acked: list[int] = []
            while self._acks:
                mid, reason = self._acks.popleft()
                entry = inflight.pop(mid, None)
                if entry is None:
                    continue
                failed = isinstance(reason, ReasonCode) and reason.is_failure
                if entry.kind == "readings":
                    inflight_seqs.difference_update(entry.seqs)
                    if failed:
                        self.stats.refused += 1
                        self.stats.last_error = f"publish to {entry.topic} refused: {reason}"
                        self._log_once(logging.ERROR, f"refused:{entry.topic}:{reason}",
                                       "uplink %s: broker refused publish to %s: %s (reason %d);"
                                       " %d readings stay buffered, retrying every %ds",
                                       self.name, entry.topic, reason, _code(reason),
                                       len(entry.seqs), int(REFUSED_RETRY_SECONDS))
                        rescan_at = rescan_at or now + REFUSED_RETRY_SECONDS
                    else:
                        acked.extend(entry.seqs)
                elif entry.kind == "eviction" and not failed:
                    self.outbox.ack_evictions(self.name, [entry.eviction_id])
            if acked:
                self.outbox.ack(self.name, acked)
                self.stats.readings_acked += len(acked)
            if rescan_at and now >= rescan_at and not inflight:
                # retry what the broker refused: read the outbox again from the start
                rescan_at = 0.0
                self.outbox.sync()
                live_floor = live_cursor = self.outbox.last_seq
                backlog_cursor = 0
            # the stall watchdog: paho never retransmits on a live connection
            if inflight:
                oldest = min(e.sent for e in inflight.values())
                if now - oldest > cfg.ack_timeout:
                    self.stats.stalls += 1
                    log.warning("uplink %s: no PUBACK for %.0fs (%d messages in flight); reconnecting",
                                self.name, now - oldest, len(inflight))
                    return
            if self.outbox.counters.evicted != evictions_seen:
                evictions_seen = self.outbox.counters.evicted
                self.outbox.sync()
                for ev in reader.evictions(self.bit):
                    notice = {"status": "online", "event": "evicted", "first_seq": ev.first_seq,
                              "last_seq": ev.last_seq, "count": ev.count, "reason": ev.reason, "at": ev.at}
                    self._publish(client, self.topic("status"), json.dumps(notice),
                                  _Inflight("eviction", now, "status", eviction_id=ev.id), inflight)
            published = False
            free = cfg.max_inflight - len(inflight)
            if free > 0 and not rescan_at:
                rows = [r for r in reader.fetch(self.bit, live_cursor, None, cfg.live_batch * free)
                        if r.seq not in inflight_seqs]
                if rows:
                    live_cursor = rows[-1].seq
                    for topic, data, seqs in self._messages(rows, cfg.live_batch):
                        if not self._publish(client, topic, data, _Inflight("readings", now, topic, seqs), inflight):
                            return
                        inflight_seqs.update(seqs)
                        published = True
            if cfg.backlog_rate:
                tokens = min(max(cfg.backlog_rate, cfg.backlog_batch),
                             tokens + (now - last_refill) * cfg.backlog_rate)
                last_refill = now
            backlog_busy = sum(1 for e in inflight.values() if e.kind == "readings")
            if (backlog_cursor < live_floor and not rescan_at and backlog_busy < backlog_slots
                    and (not cfg.backlog_rate or tokens >= 1)):
                limit = cfg.backlog_batch if not cfg.backlog_rate else max(1, min(cfg.backlog_batch, int(tokens)))
                rows = [r for r in reader.fetch(self.bit, backlog_cursor, live_floor, limit)
                        if r.seq not in inflight_seqs]
                if not rows:
                    backlog_cursor = live_floor
                else:
                    backlog_cursor = rows[-1].seq
                    tokens -= len(rows)
                    for topic, data, seqs in self._messages(rows, cfg.backlog_batch):
                        if not self._publish(client, topic, data, _Inflight("readings", now, topic, seqs), inflight):
                            return
                        inflight_seqs.update(seqs)
                        published = True
            if not published and not inflight:
                self._wake.wait(0.05)
                self._wake.clear()
