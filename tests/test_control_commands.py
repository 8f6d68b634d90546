"""Platform commands: signature, expiry, default deny, limits, min_toggle and duplicate ids,
decided before any bus write, each case in the audit log that survives a restart and that
`edge-agent control log` shows."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from agent.control.audit import AuditLog
from agent.control.commands import Channel, CommandDesk, Decision, Target, signed_bytes
from agent.control.config import DeviceControl
from agent.harness.site import device, tcp_bus, write_site
from drivers.catalog import resolve_profile
from drivers.modbus.writes import RegisterWrite
from tests.helpers import edge_agent

KEY = b"pole-secret-\xe7\x81\xaf"
NOW_MS = 1_795_326_640_000
CITY = Channel("city-ops", commands=True, key=KEY, max_age=300)
LAMP = Target("lamp-1", resolve_profile("generic-smart-pole-lamp-controller"),
              DeviceControl(allow=["lamp_on", "dim_level"], min_toggle={"lamp_on": 60}), unit=5)


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW_MS)


@pytest.fixture
def desk(tmp_path: Path, clock: Clock) -> CommandDesk:
    return CommandDesk(AuditLog(tmp_path / "data" / "control.db", clock))


def signed(body: dict[str, object], key: bytes = KEY) -> bytes:
    # independent of the code under test: the canonical form written out by hand below
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps({**body, "sig": hmac.new(key, canonical, hashlib.sha256).hexdigest()}).encode()


def command(cid: str, values: dict[str, object], **extra: object) -> bytes:
    return signed({"id": cid, "values": values, "ts": NOW_MS - 1000, "expires": NOW_MS + 60_000, **extra})


def test_signed_bytes_are_the_sorted_compact_json_without_sig() -> None:
    payload = {"values": {"dim_level": 60, "lamp_on": True}, "id": "c-17", "expires": 1795326700000,
               "note": "路灯", "sig": "ab"}
    assert signed_bytes(payload) == ('{"expires":1795326700000,"id":"c-17","note":"路灯",'
                                     '"values":{"dim_level":60,"lamp_on":true}}').encode()
    sig = hmac.new(b"k", signed_bytes(payload), hashlib.sha256).hexdigest()
    assert sig == hmac.new(b"k", b'{"expires":1795326700000,"id":"c-17","note":"\xe8\xb7\xaf\xe7\x81\xaf",'
                                 b'"values":{"dim_level":60,"lamp_on":true}}', hashlib.sha256).hexdigest()


def ok(desk: CommandDesk, d: Decision, read_back: dict[str, object]) -> Decision:
    assert d.status is None, d.reason
    return desk.finish(d, "ok", read_back)


def test_a_valid_command_becomes_the_register_write(desk: CommandDesk) -> None:
    d = desk.decide(CITY, LAMP, "lamp-1", command("c-17", {"dim_level": 60}))
    assert d.writes == [RegisterWrite("dim_level", 60, 6, 0, registers=(60,))]
    ok(desk, d, {"dim_level": 60})
    assert d.reply == {"id": "c-17", "status": "ok", "reason": "", "values": {"dim_level": 60}}


@pytest.mark.parametrize(("raw", "status", "reason"), [
    (json.dumps({"id": "c-1", "values": {"dim_level": 60}, "ts": NOW_MS,
                 "sig": "0" * 64}).encode(), "refused", "bad signature"),
    (signed({"id": "c-2", "values": {"dim_level": 60}, "ts": NOW_MS}, key=b"other key"), "refused", "bad signature"),
    (json.dumps({"id": "c-3", "values": {"dim_level": 60}, "ts": NOW_MS}).encode(), "refused",
     "unsigned: this uplink requires 'sig'"),
    (command("c-4", {"dim_level": 60}, expires=NOW_MS - 5000), "expired", "expired 5s ago"),
    (command("c-5", {"dim_level": 60}, ts=NOW_MS - 400_000), "expired",
     "issued 400s ago, more than command_max_age 300s"),
    (signed({"id": "c-6", "values": {"dim_level": 60}}), "refused", "a command needs 'ts'"),
    (command("c-7", {"voltage_l1": 230}), "refused", "'voltage_l1' is not allowed on lamp-1"
     " (control.allow: lamp_on, dim_level)"),
    (command("c-8", {"dim_level": 150}), "refused", "dim_level=150 is above the maximum 100"),
    (command("c-9", {"dim_level": 60, "lamp_fault": False}), "refused", "'lamp_fault' is not allowed"),
    (command("c-11", {"dim_level": "60"}), "refused", "values.dim_level: a value is true, false or a number, not '60'"),
    (b"{not json", "refused", "not JSON"),
    (command("c-10", {}), "refused", "values: Dictionary should have at least 1 item"),
])
def test_refusals_write_nothing(desk: CommandDesk, raw: bytes, status: str, reason: str) -> None:
    d = desk.decide(CITY, LAMP, "lamp-1", raw)
    assert (d.status, d.writes) == (status, [])
    assert reason in d.reason
    assert d.reply is not None and d.reply["status"] == status


def test_uplink_without_commands_is_refused(desk: CommandDesk) -> None:
    d = desk.decide(Channel("telemetry-only", commands=False), LAMP, "lamp-1", command("c-1", {"dim_level": 60}))
    assert (d.status, d.writes, d.reason) == ("refused", [], "uplink telemetry-only does not accept commands"
                                                             " (commands: true)")


def test_duplicate_id_gets_the_first_reply_even_after_a_restart(tmp_path: Path, clock: Clock) -> None:
    db = tmp_path / "control.db"
    desk = CommandDesk(AuditLog(db, clock))
    first = ok(desk, desk.decide(CITY, LAMP, "lamp-1", command("c-17", {"dim_level": 60})), {"dim_level": 60})
    again = desk.decide(CITY, LAMP, "lamp-1", command("c-17", {"dim_level": 60}))
    assert (again.duplicate, again.writes, again.reply) == (True, [], first.reply)
    desk.audit.close()
    clock.ms += 3_600_000  # an hour later the command has expired, but it is a redelivery
    reopened = CommandDesk(AuditLog(db, clock))
    later = reopened.decide(CITY, LAMP, "lamp-1", command("c-17", {"dim_level": 60}))
    assert (later.duplicate, later.writes, later.reply) == (True, [], first.reply)
    refused = reopened.decide(CITY, LAMP, "lamp-1", command("c-18", {"dim_level": 150}))
    assert reopened.decide(CITY, LAMP, "lamp-1", command("c-18", {"dim_level": 50})).reply == refused.reply


def test_min_toggle_refuses_relay_chatter(desk: CommandDesk, clock: Clock) -> None:
    ok(desk, desk.decide(CITY, LAMP, "lamp-1", command("t-1", {"lamp_on": True})), {"lamp_on": True})
    clock.ms += 20_000
    d = desk.decide(CITY, LAMP, "lamp-1", command("t-2", {"lamp_on": False}))
    assert (d.status, d.reason, d.writes) == ("refused", "lamp_on switched 20s ago; min_toggle is 60s", [])
    same = desk.decide(CITY, LAMP, "lamp-1", command("t-3", {"lamp_on": True}))  # no switch: allowed
    assert same.status is None and same.writes[0].coil is True
    clock.ms += 41_000
    later = desk.decide(CITY, LAMP, "lamp-1", command("t-4", {"lamp_on": False}, ts=clock.ms, expires=clock.ms + 1))
    assert later.status is None and later.writes[0].coil is False


@pytest.mark.slow
def test_audit_log_survives_reopening_and_control_log_shows_each_case(tmp_path: Path, clock: Clock) -> None:
    data = tmp_path / "data"
    lamp = device("rs485-1", "generic-smart-pole-lamp-controller", 5, control={"allow": ["lamp_on", "dim_level"]})
    cfg = write_site(tmp_path / "poles.yaml", data_dir=data, buses={"rs485-1": tcp_bus(502)}, devices={"lamp-1": lamp})
    r = edge_agent("control", "log", "-c", str(cfg))
    assert r.returncode == 0 and "no control log yet" in r.stdout, r.stdout + r.stderr
    desk = CommandDesk(AuditLog(data / "control.db", clock))
    ok(desk, desk.decide(CITY, LAMP, "lamp-1", command("c-ok", {"dim_level": 60})), {"dim_level": 60})
    desk.decide(CITY, LAMP, "lamp-1", json.dumps({"id": "c-forged", "values": {"dim_level": 100}, "ts": NOW_MS,
                                                  "sig": "1" * 64}))
    desk.decide(CITY, LAMP, "lamp-1", command("c-late", {"dim_level": 60}, expires=NOW_MS - 1))
    desk.decide(CITY, LAMP, "lamp-1", command("c-old", {"dim_level": 60}, ts=NOW_MS - 301_000))
    desk.decide(CITY, LAMP, "lamp-1", command("c-deny", {"voltage_l1": 1}))
    desk.decide(CITY, LAMP, "lamp-1", command("c-range", {"dim_level": 101}))
    desk.decide(CITY, LAMP, "lamp-1", command("c-ok", {"dim_level": 60}))
    desk.audit.record("schedule", "street-lights", "lamp-1", {"lamp_on": True}, "ok", read_back={"lamp_on": True},
                      ref="sunset+10m")
    desk.audit.record("technician", "technician", "lamp-2", {"dim_level": 30}, "failed", "no answer (timeout)")
    desk.audit.close()
    running = AuditLog(data / "control.db", clock)  # reopened, and kept open as a running daemon would
    assert len(running.entries(limit=100)) == 9

    r = edge_agent("control", "log", "-c", str(cfg))
    out = r.stdout
    assert r.returncode == 0 and "Traceback" not in out + r.stderr, out + r.stderr
    assert all(len(line) <= 80 for line in out.splitlines()), out
    for needle in ["command city-ops c-ok", "asked dim_level=60; read back dim_level=60",
                   "command city-ops c-forged", "bad signature",
                   "command city-ops c-late", "expired", "command city-ops c-old", "more than command_max_age 300s",
                   "command city-ops c-deny", "'voltage_l1' is not allowed on lamp-1",
                   "command city-ops c-range", "dim_level=101 is above the maximum 100",
                   "duplicate id: first reply repeated, nothing written",
                   "schedule street-lights sunset+10m", "technician technician", "no answer (timeout)"]:
        assert needle in out, (needle, out)
    assert out.index("c-ok") < out.index("c-forged") < out.index("duplicate id")
    assert "2026-11-22 13:50:40" in out  # NOW_MS in the gateway's default time zone, Asia/Shanghai

    only = edge_agent("control", "log", "-c", str(cfg), "--device", "lamp-2", "--limit", "5").stdout
    assert "no answer (timeout)" in only and "c-ok" not in only
    running.close()
