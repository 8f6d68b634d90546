"""`edge-agent control schedule` and `control set --dry-run` as a technician runs them."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from astral import Observer, sun

from tests.helpers import edge_agent, installed_example

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

ROOT = Path(__file__).resolve().parents[1]
LAMPS_TEXT = (ROOT / "config" / "lamp-poles.yaml").read_text(encoding="utf-8")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_schedule_prints_the_coming_steps_at_astrals_times(tmp_path: Path) -> None:
    lamps = installed_example(LAMPS_TEXT, "lamp-poles.yaml", tmp_path)
    r = edge_agent("control", "schedule", "-c", str(lamps), "--from", "2026-06-22T02:00", "--days", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    sjz = Observer(latitude=38.04, longitude=114.51)
    sunset = sun.sunset(sjz, date=date(2026, 6, 22), tzinfo=SHANGHAI) + timedelta(minutes=10)
    sunrise = sun.sunrise(sjz, date=date(2026, 6, 22), tzinfo=SHANGHAI) - timedelta(minutes=10)
    assert "schedule street-lights: lamp-1, lamp-2 at 38.04,114.51 (Asia/Shanghai)" in out
    assert "in force at 2026-06-22 02:00: dim_level=50 lamp_on=true" in out  # restart at night
    lines = [line.strip() for line in out.splitlines()[2:]]
    assert lines[:4] == [
        f"{sunrise:%a %Y-%m-%d %H:%M:%S}  sunrise-10m    lamp_on=false",
        f"{sunset:%a %Y-%m-%d %H:%M:%S}  sunset+10m     lamp_on=true dim_level=100",
        "Tue 2026-06-23 00:30:00  00:30          dim_level=50",
        f"{sun.sunrise(sjz, date=date(2026, 6, 23), tzinfo=SHANGHAI) - timedelta(minutes=10):%a %Y-%m-%d %H:%M:%S}"
        "  sunrise-10m    lamp_on=false",
    ]
    assert len(lines) == 5


def test_schedule_reports_polar_days_as_skipped(tmp_path: Path) -> None:
    cfg = installed_example(LAMPS_TEXT.replace("{lat: 38.04, lon: 114.51}", "{lat: 78.22, lon: 15.65}")
                   .replace("    timezone: Asia/Shanghai\n    steps", "    timezone: Arctic/Longyearbyen\n    steps"),
                            "svalbard.yaml", tmp_path)
    r = edge_agent("control", "schedule", "-c", str(cfg), "--from", "2026-06-21T12:00", "--days", "1")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "(Arctic/Longyearbyen)" in r.stdout
    flat = " ".join(r.stdout.split())
    assert "skipped on 2026-06-21: sunset+10m (sunset does not occur: Sun is always above the horizon" in flat
    assert "skipped on 2026-06-21: sunrise-10m (sunrise does not occur" in flat
    assert r.stderr == ""  # the skips are printed once, not logged again
    assert "Mon 2026-06-22 00:30:00  00:30" not in r.stdout  # one day asked, 00:30 of the 21st has passed


def test_set_dry_run_shows_the_register_writes_and_refuses_the_rest(tmp_path: Path) -> None:
    lamps = installed_example(LAMPS_TEXT, "lamp-poles.yaml", tmp_path)
    r = edge_agent("control", "set", "-c", str(lamps), "lamp-1", "dim_level=60", "lamp_on=false", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["  dim_level=60: FC06 write single register unit 5 address 0x0000: [0x003C]",
                                     "  lamp_on=false: FC05 write single coil unit 5 address 0x0000: OFF (0x0000)"]
    assert "nothing written" in r.stderr
    r = edge_agent("control", "set", "-c", str(lamps), "lamp-1", "voltage_l1=230", "dim_level=101", "--dry-run")
    assert r.returncode == 1 and r.stdout == ""
    assert "voltage_l1=230: refused: 'voltage_l1' is not allowed on lamp-1" in r.stderr
    assert "dim_level=101: refused: dim_level=101 is above the maximum 100" in r.stderr
    r = edge_agent("control", "set", "-c", str(lamps), "lamp-1", "dim_level=60")  # no agent, no port
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "lamp-1: failed: bus_unavailable: rs485-1: cannot open /dev/ttyUSB0" in r.stderr
    assert "no agent running: directly on bus rs485-1" in r.stderr
