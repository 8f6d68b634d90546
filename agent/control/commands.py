"""Platform commands: the payload, its signature, and the decision to write or refuse.

A command is the JSON object ``{"id": "c-17", "values": {"dim_level": 60},
"expires": 1795326700000, "ts": 1795326640000, "hold": 3600, "sig": "..."}``: ``expires``
(epoch ms) and ``ts`` (epoch ms, when the platform issued it) are optional, ``hold``
(seconds) makes a schedule override last that long instead of until the next step.

Signature (when the uplink has ``command_key_file``): ``sig`` is the lowercase hex
HMAC-SHA256, keyed with the key file's bytes (one trailing newline stripped), of the
*signed bytes*: the received JSON object without its ``sig`` member, re-serialised as
UTF-8 JSON with keys sorted at every level, no whitespace (separators ``,`` and ``:``),
non-ASCII characters written as themselves, numbers as Python's ``json`` writes them
(``60`` stays ``60``, ``60.0`` stays ``60.0``). In Python::

    json.dumps(obj_without_sig, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

:meth:`CommandDesk.decide` returns a refusal or the register writes to execute; after the
write and read-back the executor calls :meth:`CommandDesk.finish`. Both record the case in
the audit log and keep the reply for the command id, so a redelivered id gets it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drivers.errors import WriteRefused
from drivers.profile import Profile
from drivers.protocols import PlannedWrite, plan_write

from .audit import AuditLog
from .config import DeviceControl, SetValue

Status = Literal["ok", "refused", "expired", "failed"]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    values: dict[str, SetValue] = Field(min_length=1)
    expires: int | None = None
    ts: int | None = None
    hold: float | None = Field(None, gt=0)
    sig: str | None = None


def signed_bytes(payload: dict[str, Any]) -> bytes:
    """The bytes a command's ``sig`` is computed over (see the module docstring)."""
    body = {k: v for k, v in payload.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(payload: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, signed_bytes(payload), hashlib.sha256).hexdigest()


def read_key(path: str) -> bytes:
    data = open(path, "rb").read()  # noqa: SIM115 - tiny file, read once
    return data[:-1] if data.endswith(b"\n") else data


@dataclass(frozen=True, slots=True)
class Channel:
    """Where commands come from: an uplink and its command settings."""

    name: str
    commands: bool
    key: bytes | None = None
    max_age: float | None = None  # seconds
    unusable: str | None = None  # why no command can be checked (e.g. its key file is unreadable)


@dataclass(frozen=True, slots=True)
class Target:
    """A device that may be written: its profile and control settings."""

    name: str
    profile: Profile
    control: DeviceControl | None
    unit: int | None = None


@dataclass(slots=True)
class Decision:
    """``status`` None: accepted, execute ``writes`` then call :meth:`CommandDesk.finish`."""

    channel: str
    device: str
    command_id: str | None
    status: Status | None
    reason: str = ""
    values: dict[str, SetValue] = field(default_factory=dict)
    writes: list[PlannedWrite] = field(default_factory=list)
    hold: float | None = None
    duplicate: bool = False
    reply: dict[str, Any] | None = None


class CommandDesk:
    """Validates commands against channel, device, profile and history; answers duplicates."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def decide(self, channel: Channel, target: Target | None, device: str, raw: bytes | str) -> Decision:
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._close(Decision(channel.name, device, None, "refused", f"not JSON: {exc}"))
        cid = payload.get("id") if isinstance(payload, dict) and isinstance(payload.get("id"), str) else None
        d = Decision(channel.name, device, cid, None)
        if not isinstance(payload, dict):
            return self._close(_refuse(d, "a command is a JSON object"))
        if not channel.commands:
            return self._close(_refuse(d, f"uplink {channel.name} does not accept commands (commands: true)"))
        if channel.unusable is not None:
            return self._close(_refuse(d, channel.unusable))
        if channel.key is not None:
            sig = payload.get("sig")
            if not isinstance(sig, str):
                return self._close(_refuse(d, "unsigned: this uplink requires 'sig'"))
            if not hmac.compare_digest(sig.lower(), sign(payload, channel.key)):
                return self._close(_refuse(d, "bad signature"))
        if cid is not None:
            first = self.audit.first_reply(channel.name, device, cid)
            if first is not None:
                return self._repeat(d, first)
        try:
            cmd = Command.model_validate(payload)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = [str(x) for x in err["loc"]]
            if len(loc) > 2 and loc[0] == "values":  # one error per union member: say it once
                return self._close(_refuse(d, f"values.{loc[1]}: a value is true, false or a number,"
                                              f" not {err['input']!r}"))
            return self._close(_refuse(d, f"{'.'.join(loc) or 'command'}: {err['msg']}"))
        d.values, d.hold = dict(cmd.values), cmd.hold
        return self._check(d, cmd, channel, target)

    def _check(self, d: Decision, cmd: Command, channel: Channel, target: Target | None) -> Decision:
        now = self.audit.now_ms()
        if cmd.expires is not None and cmd.expires <= now:
            return self._close(_status(d, "expired", f"expired {(now - cmd.expires) / 1000:.0f}s ago"))
        if channel.max_age is not None:
            if cmd.ts is None:
                return self._close(_refuse(d, "this uplink has command_max_age: a command needs 'ts'"))
            if now - cmd.ts > channel.max_age * 1000:
                return self._close(_status(d, "expired", f"issued {(now - cmd.ts) / 1000:.0f}s ago, more than"
                                                          f" command_max_age {channel.max_age:g}s"))
        if target is None:
            return self._close(_refuse(d, f"unknown device '{d.device}'"))
        writes, reason = self.check(target, cmd.values, now)
        if reason is not None:
            return self._close(_refuse(d, reason))
        d.writes = writes  # accepted: nothing above wrote anything
        return d

    def check(self, target: Target, values: dict[str, SetValue], now: int | None = None
              ) -> tuple[list[PlannedWrite], str | None]:
        """The device-side checks of a command or a technician write: ``control.allow``, the
        point's limits and exact encoding, ``min_toggle``. (writes, None) or ([], reason)."""
        allow = target.control.allow if target.control else []
        writes: list[PlannedWrite] = []
        for point, value in values.items():
            if point not in allow:
                return [], (f"'{point}' is not allowed on {target.name}"
                            f" (control.allow: {', '.join(allow) or 'nothing'})")
            try:
                writes.append(plan_write(target.profile, point, value))
            except WriteRefused as exc:
                return [], str(exc)
        reason = self._too_soon(target, values, self.audit.now_ms() if now is None else now)
        return ([], reason) if reason else (writes, None)

    def _too_soon(self, target: Target, values: dict[str, SetValue], now: int) -> str | None:
        limits = target.control.min_toggle if target.control else {}
        for point, min_gap in limits.items():
            if point not in values:
                continue
            last = self.audit.last_switch(target.name, point)
            if last is not None and last[0] != values[point] and now - last[1] < min_gap * 1000:
                return (f"{point} switched {(now - last[1]) / 1000:.0f}s ago; min_toggle is {min_gap:g}s")
        return None

    def finish(self, d: Decision, status: Status, read_back: dict[str, Any], reason: str = "") -> Decision:
        """Record an accepted command's outcome after the executor wrote and read back."""
        d.status, d.reason = status, reason
        if status == "ok":
            for w in d.writes:
                self.audit.note_switch(d.device, w.point, w.value)
        return self._close(d, read_back)

    def _close(self, d: Decision, read_back: dict[str, Any] | None = None) -> Decision:
        assert d.status is not None
        d.reply = {"id": d.command_id, "status": d.status, "reason": d.reason, "values": read_back or {}}
        self.audit.record("command", d.channel, d.device, d.values, d.status, d.reason, read_back, d.command_id)
        if d.command_id is not None:
            self.audit.keep_reply(d.channel, d.device, d.command_id, d.reply)
        return d

    def _repeat(self, d: Decision, first: dict[str, Any]) -> Decision:
        d.status, d.reason, d.duplicate, d.reply = first["status"], first.get("reason", ""), True, first
        self.audit.record("command", d.channel, d.device, {}, d.status,
                          "duplicate id: first reply repeated, nothing written", None, d.command_id)
        return d


def _refuse(d: Decision, reason: str) -> Decision:
    return _status(d, "refused", reason)


def _status(d: Decision, status: Status, reason: str) -> Decision:
    d.status, d.reason = status, reason
    return d
