"""Report by exception for an uplink with ``on_change: true``.

A point with a ``report`` setting (``devices.<id>.report.<point>``) is sent only when its
value moved beyond the deadband since the value last sent, or when none was sent for
``max_silence`` (a heartbeat). Points without a setting, bad points and failed polls are
sent as always. The buffer keeps every reading regardless: a reading left with nothing to
send is acknowledged for this uplink without a message.

The memory of what was sent lives for one session: after a reconnect everything unsent is
read again from the buffer, and the first value of each point goes out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

from buffer.jsontext import values_json
from buffer.outbox import Row

from ..alarms.config import ReportPoint


class ChangeFilter:
    def __init__(self, report: Mapping[str, Mapping[str, ReportPoint]]) -> None:
        self.report = report
        self._sent: dict[tuple[str, str], tuple[float, int]] = {}  # (device, point) → (value, ts ms)

    def reset(self) -> None:
        self._sent.clear()

    def apply(self, rows: list[Row]) -> tuple[list[Row], list[int]]:
        """(rows to send, their values thinned out; seqs of readings with nothing to send)."""
        keep: list[Row] = []
        quiet: list[int] = []
        for row in rows:
            settings = self.report.get(row.device)
            if not settings or row.status not in ("ok", "partial"):
                keep.append(row)
                continue
            values = json.loads(row.vals)
            thinned = {k: v for k, v in values.items() if self._worth_sending(row, k, v, settings.get(k))}
            if thinned or row.errors or row.flags:
                keep.append(row if len(thinned) == len(values) else replace(row, vals=values_json(thinned)))
            else:
                quiet.append(row.seq)
        return keep, quiet

    def _worth_sending(self, row: Row, point: str, value: object, setting: ReportPoint | None) -> bool:
        if setting is None or isinstance(value, bool) or not isinstance(value, int | float):
            return True
        key = (row.device, point)
        last = self._sent.get(key)
        send = (last is None
                or (setting.deadband is not None and setting.deadband.moved(last[0], float(value)))
                or (setting.max_silence is not None and row.ts - last[1] >= setting.max_silence * 1000)
                or (setting.deadband is None and value != last[0]))
        if send:
            self._sent[key] = (float(value), row.ts)
        return send
