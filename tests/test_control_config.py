"""`edge-agent check` on control config: default deny, writable points, key files, schedules,
each problem as FILE:LINE with a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import edge_agent, installed_example

ROOT = Path(__file__).resolve().parents[1]
LAMPS = (ROOT / "config" / "lamp-poles.yaml").read_text(encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def check(tmp_path: Path, text: str) -> tuple[Path, int, str]:
    cfg = installed_example(text, "poles.yaml", tmp_path)
    r = edge_agent("check", "-c", str(cfg))
    assert "Traceback" not in r.stdout + r.stderr
    return cfg, r.returncode, r.stdout + r.stderr


@pytest.mark.slow
def test_lamp_example_passes(tmp_path: Path) -> None:
    _, rc, out = check(tmp_path, LAMPS)
    assert rc == 0 and "OK: 1 buses, 2 devices" in out, out


@pytest.mark.parametrize(("old", "new", "needle", "message"), [
    ("allow: [lamp_on, dim_level], min_toggle: {lamp_on: 60s}}}\n  lamp-2",
     "allow: [lamp_on, dim_levl]}}\n  lamp-2", "dim_levl",
     "devices.lamp-1.control.allow: profile generic-smart-pole-lamp-controller has no point 'dim_levl';"
     " did you mean 'dim_level'?"),
    ("allow: [lamp_on, dim_level], min_toggle: {lamp_on: 60s}}}\n  lamp-2",
     "allow: [lamp_on, voltage_l1]}}\n  lamp-2", "voltage_l1",
     "devices.lamp-1.control.allow: point 'voltage_l1' of profile generic-smart-pole-lamp-controller is not"
     " writable (writable: lamp_on, dim_level)"),
    ("min_toggle: {lamp_on: 60s}}}\n  lamp-2", "min_toggle: {dim_level: 60s}}}\n  lamp-2", "dim_level: 60s",
     "devices.lamp-1.control.min_toggle.dim_level: min_toggle applies to relay (true/false) points only"),
    ("# command_key_file: /etc/edge-agent/cmd.key", "command_key_file: /nonexistent/cmd.key", "command_key_file",
     "uplinks.city-ops.command_key_file: file not found: /nonexistent/cmd.key"),
    ("{at: \"00:30\", set: {dim_level: 50}}", "{at: \"00:30\", set: {dim_level: 150}}", "dim_level: 150",
     "schedules.street-lights.steps.1.set.dim_level: device lamp-1: dim_level=150 is above the maximum 100"),
    ("devices: [lamp-1, lamp-2]", "devices: [lamp-1, lamp-3]", "lamp-3",
     "schedules.street-lights.devices: unknown device 'lamp-3'; did you mean 'lamp-2'?"),
    ("at: sunset+10m", "at: sunsett+10m", "sunsett",
     "'sunsett+10m' is not a step time"),
    ("{at: \"00:30\"", "{at: 12:30", "at: 12:30", "750 is not a step time: quote clock times"),
    ("timezone: Asia/Shanghai\n\nbuses", "timezone: Asia/Shangai\n\nbuses", "Asia/Shangai",
     "gateway.timezone: unknown time zone 'Asia/Shangai'"),
    ("    location: {lat: 38.04, lon: 114.51}     # Shijiazhuang\n", "", "street-lights:",
     "steps at sunrise/sunset need 'location: {lat, lon}'"),
])
@pytest.mark.slow
def test_problem_is_located(tmp_path: Path, old: str, new: str, needle: str, message: str) -> None:
    assert old in LAMPS
    cfg, rc, out = check(tmp_path, LAMPS.replace(old, new, 1))
    assert rc == 1, out
    assert f"{cfg}:{line_of(cfg, needle)}: " in out and message in out, out


@pytest.mark.slow
def test_schedule_value_must_be_allowed_on_every_device(tmp_path: Path) -> None:
    text = LAMPS.replace("  lamp-2: {bus: rs485-1, unit: 6, profile: generic-smart-pole-lamp-controller,"
                         " interval: 30s,\n           control: {allow: [lamp_on, dim_level],"
                         " min_toggle: {lamp_on: 60s}}}",
                         "  lamp-2: {bus: rs485-1, unit: 6, profile: generic-smart-pole-lamp-controller,"
                         " control: {allow: [lamp_on]}}")
    cfg, rc, out = check(tmp_path, text)
    assert rc == 1
    assert (f"{cfg}:{line_of(cfg, 'dim_level: 100')}: schedules.street-lights.steps.0.set.dim_level: device lamp-2"
            " does not allow writing 'dim_level'") in out, out


@pytest.mark.slow
def test_a_device_without_control_allows_nothing(tmp_path: Path) -> None:
    text = LAMPS.replace(",\n           control: {allow: [lamp_on, dim_level], min_toggle: {lamp_on: 60s}}}", "}", 1)
    _, rc, out = check(tmp_path, text)
    assert rc == 1
    assert "device lamp-1 does not allow writing 'lamp_on' (add it to devices.lamp-1.control.allow)" in out, out
