"""Payload formats: ``native`` (DESIGN.md) and ``thingsboard`` (ThingsBoard gateway API).

Values are stored in the buffer as JSON text and spliced into payloads without being
parsed again: the hot path of a backlog drain is string joining. The constant part of a
native message (gateway and device) is built once per device (:func:`native_head`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from buffer.outbox import Row

STATUS_OFFLINE = '{"status":"offline"}'
_QUOTED: dict[str, str] = {}


def _q(text: str) -> str:
    """JSON string literal, cached: statuses and device names repeat on every reading."""
    quoted = _QUOTED.get(text)
    if quoted is None:
        quoted = json.dumps(text, ensure_ascii=False)
        if len(_QUOTED) < 1024:
            _QUOTED[text] = quoted
    return quoted


def native_head(gateway: str, device: str) -> str:
    return f'{{"gateway":{_q(gateway)},"device":{_q(device)},"readings":['


def native(head: str, rows: Sequence[Row]) -> bytes:
    """``{"gateway", "device", "readings": [{"seq", "ts", "status", "values"}]}``; ``head`` from
    :func:`native_head`."""
    readings = ",".join([f'{{"seq":{r.seq},"ts":{r.ts},"status":{_q(r.status)},"values":{r.vals}}}'
                         if r.errors is None and r.flags is None else
                         f'{{"seq":{r.seq},"ts":{r.ts},"status":{_q(r.status)},"values":{r.vals}{quality(r)}}}'
                         for r in rows])
    return f"{head}{readings}]}}".encode()


def quality(r: Row) -> str:
    """``,"errors":{...}`` and ``,"flags":{...}`` as the native payload has them, when present."""
    return (f',"errors":{r.errors}' if r.errors else "") + (f',"flags":{r.flags}' if r.flags else "")


def _tb_values(r: Row) -> str:
    """A reading's telemetry values: a failed poll as ``{"status": ...}``; a partial one with its
    values plus ``status`` and ``errors`` (and ``flags``) as JSON-valued keys."""
    if r.status == "ok" and r.flags is None:
        return r.vals
    if not r.vals or r.vals == "{}":
        return f'{{"status":{_q(r.status)}}}'
    extra = f',"status":{_q(r.status)}' + quality(r)
    return r.vals[:-1] + extra + "}"


def thingsboard(rows_by_device: Mapping[str, Sequence[Row]]) -> bytes:
    """ThingsBoard gateway telemetry: ``{"<device>": [{"ts": ms, "values": {...}}]}``.

    A failed poll has no values; it is sent as ``{"status": "<failure>"}`` so the platform
    still sees that the poll happened. A partial reading sends its good values with
    ``"status": "partial"`` and ``"errors": {point: why}`` beside them (``"flags"`` likewise).
    """
    parts = []
    for device, rows in rows_by_device.items():
        items = ",".join([f'{{"ts":{r.ts},"values":{_tb_values(r)}}}' for r in rows])
        parts.append(f"{_q(device)}:[{items}]")
    return ("{" + ",".join(parts) + "}").encode()


def birth(version: str, config_hash: str, started_ms: int) -> str:
    return json.dumps({"status": "online", "version": version, "config_hash": config_hash,
                       "started": started_ms})


def device_meta(meta: Mapping[str, Any]) -> str:
    return json.dumps(meta, ensure_ascii=False)


def thingsboard_connect(device: str) -> str:
    """``v1/gateway/connect``: announces a device behind the gateway."""
    return json.dumps({"device": device}, ensure_ascii=False)


def thingsboard_attributes(devices: Mapping[str, Mapping[str, Any]]) -> str:
    """``v1/gateway/attributes``: ``{"<device>": {attribute: value}}`` for every device."""
    return json.dumps(devices, ensure_ascii=False)
