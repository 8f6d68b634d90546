"""Topic templates per uplink: defaults per payload format, overridable in ``topics``.

Placeholders: ``{prefix}`` (``topic_prefix``), ``{gateway}``, ``{device}``, ``{profile}``
(the device's profile name). Each device's topics are rendered once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import MqttUplink

DEFAULT_TOPICS: dict[str, dict[str, str]] = {
    "native": {
        "telemetry": "{prefix}/{gateway}/up/{device}",
        "meta": "{prefix}/{gateway}/meta/{device}",
        "status": "{prefix}/{gateway}/status",
        "health": "{prefix}/{gateway}/health",
    },
    # the ThingsBoard gateway API; the gateway's own status goes to its client attributes
    "thingsboard": {
        "telemetry": "v1/gateway/telemetry",
        "meta": "v1/gateway/attributes",
        "status": "v1/devices/me/attributes",
    },
}


class TopicMap:
    def __init__(self, cfg: MqttUplink, gateway: str, devices: Mapping[str, Mapping[str, Any]]) -> None:
        templates = {**DEFAULT_TOPICS[cfg.format], **cfg.topics.model_dump(exclude_none=True)}
        self.templates = templates
        self._prefix = cfg.topic_prefix
        self._gateway = gateway
        self._profiles = {dev: str(meta.get("profile", "")) for dev, meta in devices.items()}
        self.status = self.render("status")
        # completeness, retained; the ThingsBoard API has no place for it unless one is configured
        self.health = self.render("health") if "health" in templates else None
        self._telemetry: dict[str, str] = {}

    def render(self, kind: str, device: str = "") -> str:
        return self.templates[kind].format(prefix=self._prefix, gateway=self._gateway, device=device,
                                           profile=self._profiles.get(device, ""))

    def telemetry(self, device: str) -> str:
        topic = self._telemetry.get(device)
        if topic is None:
            topic = self._telemetry[device] = self.render("telemetry", device)
        return topic

    def meta(self, device: str) -> str:
        return self.render("meta", device)
