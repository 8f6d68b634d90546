"""Device states as the poller sees them, and the status text: 80 columns, sections added by
other parts of the agent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.health.activity import DeviceActivity
from agent.health.render import SECTION_RENDERERS, status_text
from agent.scheduler import DevicePoller
from drivers.errors import CrcError, DriverError, NoResponse
from drivers.reading import Polled, Reading


def poller_with(answers: list[Callable[[], Polled]]) -> DevicePoller:
    async def read() -> Polled:
        return answers.pop(0)()

    return DevicePoller("dust-1", read, 1.0, lambda _r: None, backoff_min=1.0)


def fail(exc: DriverError) -> Callable[[], Polled]:
    def raise_it() -> Polled:
        raise exc
    return raise_it


def test_ok_degraded_and_offline_with_the_last_error_and_its_reason() -> None:
    good = Polled({"pm2_5": 3})
    partial = Polled({"pm2_5": 3}, errors={"pm10": "invalid"})
    p = poller_with([lambda: good, fail(CrcError("unit 1: bad CRC")), lambda: partial,
                     *[fail(NoResponse("unit 1: no answer"))] * 3, lambda: good])
    states = []
    for slot in range(7):
        asyncio.run(p.poll_once(float(slot)))
        states.append(p.state)
        if slot == 1:
            assert p.last_error is not None and p.last_error[1:] == ("crc_error", "unit 1: bad CRC")
        if slot == 2:
            assert p.last_error is not None and p.last_error[1:] == ("partial", "pm10: invalid")
    assert states == ["ok", "degraded", "degraded", "degraded", "degraded", "offline", "ok"]
    assert p.last_good_ms is not None


def test_activity_counts_polls_and_errors_of_the_last_hour_not_offline_slots() -> None:
    act = DeviceActivity()
    t0 = 1_795_000_000.0
    act.note(Reading("d", 0, {}, "ok"), t0)
    act.note(Reading("d", 0, {}, "timeout"), t0 + 1)
    act.note(Reading("d", 0, {}, "offline"), t0 + 2)  # a backed-off slot: the bus was not asked
    act.note(Reading("d", 0, {"x": 1}, "partial"), t0 + 1800)
    assert act.last_hour(t0 + 1800) == (3, 1)
    assert act.last_hour(t0 + 3700) == (1, 0)  # the first minute has left the window
    assert (act.polls_total, act.errors_total) == (3, 1)


def status(**extra: object) -> dict:
    now = 1_795_860_000_000
    long_reason = "unit 2: no answer within 0.5s (1 attempt(s)); " * 3
    return {
        "gateway": "site-001", "pid": 42, "now": now, "started": now - 3_600_000, "timezone": "Asia/Shanghai",
        "devices": {
            "a-device-with-a-long-name": {"state": "offline", "last_ok_age": None, "polls_1h": 12, "errors_1h": 12,
                                          "last_error": {"ts": now, "status": "timeout", "reason": long_reason},
                                          "offline_for": 300.0, "retry_in": 12.0, "backoff": 60.0},
            "dust-1": {"state": "ok", "last_ok_age": 1.2, "polls_1h": 360, "errors_1h": 0, "last_error": None},
        },
        "uplinks": {"city-ops": {"connected": False, "since": now - 60_000, "waiting": 1234,
                                 "oldest_waiting": now - 600_000, "last_ack": None, "refused": 2,
                                 "last_error": "connection refused by mqtt.example.org:8883 (broker down or wrong"
                                               " port) " * 2}},
        "buffer": {"used_bytes": 5 * 1024**2, "max_bytes": 256 * 1024**2, "use": 0.02, "readings": 1234,
                   "last_seq": 99812, "evicted": 0, "dropped": 0},
        "clock": {"synchronized": True, "max_error_us": 12500},
        "completeness": {"day": "2026-11-28", "timezone": "Asia/Shanghai", "final": False, "devices": {
            "dust-1": {"expected": 6480, "received": 6478, "valid": 6470, "transmission_rate": 0.9997,
                       "effective_rate": 0.9985, "delivered": {"city-ops": 5244}}}},
        **extra,
    }


def test_the_status_text_fits_80_columns_and_prints_sections_others_add() -> None:
    SECTION_RENDERERS["lamps"] = lambda data, _tz: [f"LAMPS  {data['on']} on"]
    try:
        text = status_text(status(lamps={"on": 3}, modem={"rssi": -71, "operator": "China Mobile"}))
    finally:
        del SECTION_RENDERERS["lamps"]
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert any(line.startswith("a-device-with-a-long-name offline") for line in lines)
    assert any(line.strip().startswith("timeout: unit 2: no answer") for line in lines)
    assert any("offline for 5m; next try in 12s (back-off 60s)" in line for line in lines)
    assert any(line.startswith("city-ops") and "DOWN since" in line and "1234" in line for line in lines)
    assert "BUFFER  5.0 MiB of 256.0 MiB (2.0%), 1234 readings, last seq 99812" in lines
    assert "CLOCK   system clock synchronised (NTP), max error 12.5 ms" in lines
    assert any(line.startswith("dust-1") and "99.97%" in line and "city-ops=5244" in line for line in lines)
    assert "LAMPS  3 on" in lines  # a registered renderer
    assert "MODEM" in lines and '  rssi: -71' in lines  # no renderer: one JSON line per entry


def test_an_hj212_uplink_shows_the_packets_its_platform_has_not_answered() -> None:
    st = status()
    st["uplinks"]["env"] = {"connected": False, "since": None, "waiting": 0, "oldest_waiting": None,
                            "last_ack": None, "refused": 0, "last_error": None, "packets_waiting": 37}
    lines = status_text(st).splitlines()
    env = next(i for i, line in enumerate(lines) if line.startswith("env "))
    assert lines[env].split()[:3] == ["env", "DOWN", "0"]  # nothing waits in the buffer for it...
    assert lines[env + 1] == "    37 HJ 212 packets stored, not yet answered by the platform"  # ...but these do
