"""The `type: hj212` uplink in the config: loads beside MQTT, warns on short intervals,
refuses what cannot work with FILE:LINE."""

from __future__ import annotations

from pathlib import Path

from agent.config import Hj212Uplink, MqttUplink, load_config
from agent.uplinks.hj212.factors import FACTORS, multiplier
from tests.helpers import edge_agent

BASE = """\
gateway: {{id: site-1, data_dir: ./data}}
buses:
  lan: {{type: tcp, host: 127.0.0.1, port: 5020}}
devices:
  dust-1: {{bus: lan, unit: 1, profile: renke-dust-all-in-one, interval: 10s}}
uplinks:
  ops: {{type: mqtt, host: 127.0.0.1, port: 1883}}
  env-bureau:
    type: hj212
    host: 192.0.2.70
    port: 9000
    mn: 010000A8900016F000169DC0
    pw: 123456
    devices: [{device}]
{extra}"""


def write(tmp_path: Path, device: str = "dust-1", extra: str = "") -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(BASE.format(device=device, extra=extra))
    return path


def test_hj212_beside_mqtt_with_defaults(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path))
    ops, env = loaded.config.uplinks["ops"], loaded.config.uplinks["env-bureau"]
    assert isinstance(ops, MqttUplink) and isinstance(env, Hj212Uplink)
    assert (env.pw, env.st, env.rtd_interval, env.min_interval) == ("123456", "39", 60.0, 600.0)
    assert (env.overtime, env.recount, env.ack, env.hourly, env.daily) == (10.0, 3, True, True, True)
    assert env.codes()["pm10"] == "a34002" and env.codes()["noise_la"] == "LA"
    assert loaded.warnings == []


def test_short_intervals_accepted_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, extra="    rtd_interval: 2s\n    min_interval: 10s\n")
    loaded = load_config(path)
    keys = {w.path for w in loaded.warnings}
    assert keys == {"uplinks.env-bureau.rtd_interval", "uplinks.env-bureau.min_interval"}
    r = edge_agent("check", "-c", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "outside the standard's 30s..3600s" in r.stdout + r.stderr


def test_unknown_device_and_bad_unit_name_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, device="dust-2")
    r = edge_agent("check", "-c", str(path))
    assert r.returncode == 1
    assert f"{path}:14: uplinks.env-bureau.devices: unknown device 'dust-2'; did you mean 'dust-1'?" in r.stdout
    path = write(tmp_path, extra="    units: {pm10: g/m³}\n")
    r = edge_agent("check", "-c", str(path))
    assert r.returncode == 1
    assert "pm10 is read in µg/m³; it can be sent in µg/m³, mg/m³, not g/m³" in r.stdout


def test_unit_override_converts_dust_to_mg() -> None:
    assert multiplier("pm10", "mg/m³") == 0.001
    assert multiplier("pm10", None) == 1.0
    assert FACTORS["pm2_5"].code == "a34004"


def test_an_uplink_with_nothing_to_send_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    text = BASE.format(device="x", extra="").replace("    devices: [x]\n", "")
    path.write_text(text.replace("dust-1: {bus: lan, unit: 1, profile: renke-dust-all-in-one",
                                 "meter-1: {bus: lan, unit: 1, profile: eastron-sdm630"))
    r = edge_agent("check", "-c", str(path))
    assert r.returncode == 1
    assert "uplinks.env-bureau: no device has a point with an HJ 212 factor code" in r.stdout


def test_reconnect_delays_out_of_range_are_refused_as_for_mqtt(tmp_path: Path) -> None:
    """Both uplink types share the reconnect settings and their checks: a two-day delay is a
    dead uplink, not a back-off."""
    path = write(tmp_path, extra="    reconnect_max: 48h\n")
    r = edge_agent("check", "-c", str(path))
    assert r.returncode == 1
    assert (f"{path}:15: uplinks.env-bureau.reconnect_max: reconnect_max must be between 100ms and 1 day (24h)"
            in r.stdout)
    path = write(tmp_path, extra="  ops2: {type: mqtt, host: 127.0.0.1, reconnect_min: 50ms}\n")
    r = edge_agent("check", "-c", str(path))
    assert r.returncode == 1
    assert f"{path}:15: uplinks.ops2.reconnect_min: reconnect_min must be between 100ms and 1 day (24h)" in r.stdout
