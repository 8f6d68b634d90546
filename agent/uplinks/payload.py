"""Payload formats: ``native`` (DESIGN.md) and ``thingsboard`` (gateway telemetry API).

Values are stored in the buffer as JSON text and spliced into payloads without being
parsed again: the hot path of a backlog drain is string joining.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from buffer.outbox import Row


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def native(gateway: str, device: str, rows: Sequence[Row]) -> bytes:
    """``{"gateway", "device", "readings": [{"seq", "ts", "status", "values"}]}``."""
    readings = ",".join(
        f'{{"seq":{r.seq},"ts":{r.ts},"status":{_q(r.status)},"values":{r.vals}}}' for r in rows
    )
    return f'{{"gateway":{_q(gateway)},"device":{_q(device)},"readings":[{readings}]}}'.encode()


def thingsboard(rows_by_device: Mapping[str, Sequence[Row]]) -> bytes:
    """ThingsBoard gateway telemetry: ``{"device": [{"ts", "values"}]}``.

    A failed poll has no values; it is sent as ``{"status": "<failure>"}`` so the
    platform still sees the poll happened.
    """
    parts = []
    for device, rows in rows_by_device.items():
        items = ",".join(
            f'{{"ts":{r.ts},"values":{r.vals if r.status == "ok" else json.dumps({"status": r.status})}}}'
            for r in rows
        )
        parts.append(f"{_q(device)}:[{items}]")
    return ("{" + ",".join(parts) + "}").encode()
