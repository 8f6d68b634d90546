"""Platform commands over MQTT: the subscription, the hop into the agent's loop, the reply.

Only an uplink with ``commands: true`` gets a :class:`CommandPort`; an uplink without one
never subscribes, so a command published for it reaches nothing. The uplink's thread drives
paho (see agent/uplinks/mqtt.py): :meth:`CommandPort.session_started` subscribes on every
new session, paho calls :meth:`CommandPort._on_message` in that thread, the command is handed
to the agent's event loop (``run_coroutine_threadsafe``) where it is checked, written and
read back, and the reply comes back to the uplink thread through a queue that
:meth:`CommandPort.flush` publishes (QoS 1) on its next turn.

Native format: commands on ``{prefix}/{gateway}/down/{device}/set``, replies on
``{prefix}/{gateway}/reply/{device}``, or on the command's MQTT v5 Response Topic with its
Correlation Data. ThingsBoard format: the gateway RPC API, ``v1/gateway/rpc`` carrying
``{"device": "lamp-1", "data": {"id": 7, "method": "set", "params": {"dim_level": 60}}}``
(``params`` may also be a whole command: ``{"values": {...}, "expires": ..., "sig": ...}``);
the reply goes back on ``v1/gateway/rpc`` as ``{"device", "id", "data": reply}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ..config import MqttUplink
from .commands import Channel, read_key

log = logging.getLogger(__name__)
TB_RPC = "v1/gateway/rpc"

Handler = Callable[[Channel, str, bytes], Coroutine[Any, Any, dict[str, Any]]]


def channel_of(name: str, cfg: MqttUplink, base_dir: Path) -> Channel:
    """The uplink's command settings, its key read from ``command_key_file`` (beside the config)."""
    key = None
    if cfg.command_key_file:
        path = Path(cfg.command_key_file)
        try:
            key = read_key(str(path if path.is_absolute() else base_dir / path))
        except OSError as exc:
            why = f"cannot read command_key_file {cfg.command_key_file}: {exc.strerror or exc}"
            log.error("uplink %s: %s; commands from it are refused", name, why)
            return Channel(name, cfg.commands, None, cfg.command_max_age, unusable=why)
    return Channel(name, cfg.commands, key, cfg.command_max_age)


class CommandPort:
    """One uplink's command subscription; created in the agent's loop, used from the uplink thread."""

    def __init__(self, name: str, cfg: MqttUplink, gateway: str, base_dir: Path, handle: Handler,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.channel = channel_of(name, cfg, base_dir)
        self.thingsboard = cfg.format == "thingsboard"
        self.v5 = cfg.protocol == "5"
        self._down = f"{cfg.topic_prefix}/{gateway}/down/"
        self._reply = f"{cfg.topic_prefix}/{gateway}/reply/"
        self.topic = TB_RPC if self.thingsboard else f"{self._down}+/set"
        self.handle = handle
        self.loop = loop
        self.wake: Callable[[], None] = lambda: None  # the uplink thread's wake-up
        self.outgoing: deque[tuple[str, bytes, Properties | None]] = deque()
        self.received = 0

    # -- in the uplink thread ---------------------------------------------------------------
    def session_started(self, client: mqtt.Client) -> None:
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        if self.v5:  # no_local: on ThingsBoard's rpc topic our own replies would come back
            client.subscribe(self.topic, options=SubscribeOptions(qos=1, noLocal=True))
        else:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any],
                      properties: Any) -> None:
        for rc in reasons:
            if getattr(rc, "is_failure", False):
                log.error("uplink %s: the broker refused the command subscription %s: %s", self.name,
                          self.topic, rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        payload = bytes(msg.payload)
        props = getattr(msg, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        if self.thingsboard:
            self._thingsboard(payload)
            return
        if not (msg.topic.startswith(self._down) and msg.topic.endswith("/set")):
            return
        device = msg.topic[len(self._down) : -len("/set")]
        reply_to = response_topic or self._reply + device
        self._submit(device, payload, lambda reply: self._queue(reply_to, reply, correlation))

    def _thingsboard(self, payload: bytes) -> None:
        try:
            rpc = json.loads(payload)
            device, data = rpc["device"], rpc["data"]
            rpc_id, method, params = data["id"], data.get("method"), data.get("params")
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("uplink %s: a gateway RPC that is not {device, data: {id, method, params}}: %.200r",
                        self.name, payload)
            return
        if method is None and "status" in data:
            return  # a reply (ours, echoed by a broker that is not ThingsBoard, under MQTT 3.1.1)

        def answer(reply: dict[str, Any]) -> None:
            self._queue(TB_RPC, {"device": device, "id": rpc_id, "data": reply}, None)

        if method != "set" or not isinstance(params, dict) or not isinstance(device, str):
            answer({"id": str(rpc_id), "status": "refused", "values": {},
                    "reason": f"unknown RPC method {method!r}: this gateway answers 'set' with point values"})
            return
        command = {"id": str(rpc_id), **params} if "values" in params else {"id": str(rpc_id), "values": params}
        self._submit(device, json.dumps(command).encode(), answer)

    def _submit(self, device: str, raw: bytes, answer: Callable[[dict[str, Any]], None]) -> None:
        coro = self.handle(self.channel, device, raw)
        try:
            future: Future[dict[str, Any]] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the agent's loop is closed: it is stopping
            coro.close()
            log.warning("uplink %s: a command for %s arrived while the agent stops; not executed", self.name, device)
            return

        def done(f: Future[dict[str, Any]]) -> None:
            try:
                answer(f.result())
            except Exception as exc:  # the agent is stopping, or a bug: say so, never stay silent
                log.exception("uplink %s: command for %s failed", self.name, device)
                answer({"id": None, "status": "failed", "reason": f"{type(exc).__name__}: {exc}", "values": {}})

        future.add_done_callback(done)

    def _queue(self, topic: str, reply: dict[str, Any], correlation: bytes | None) -> None:
        props = None
        if correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation
        self.outgoing.append((topic, json.dumps(reply, separators=(",", ":")).encode(), props))
        self.wake()

    def flush(self, client: mqtt.Client) -> None:
        """Publish the replies that are ready (QoS 1; their PUBACKs are not the outbox's)."""
        while self.outgoing:
            topic, data, props = self.outgoing.popleft()
            client.publish(topic, data, qos=1, properties=props)
