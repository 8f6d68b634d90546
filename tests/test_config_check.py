"""`edge-agent check` and `run` on good and broken configs: file, line, key, did-you-mean."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import edge_agent, installed_example

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "config").glob("*.yaml"))


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
@pytest.mark.slow
def test_every_example_config_passes_check(path: Path, tmp_path: Path) -> None:
    r = edge_agent("check", "-c", str(installed_example(path.read_text(), path.name, tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK:" in r.stdout and "devices" in r.stdout


def test_misspelt_interval_names_file_line_and_suggestion(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text((ROOT / "config" / "example.yaml").read_text().replace("interval: 5s}", "intervall: 5s}", 1))
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 1
    line = line_of(cfg, "intervall")
    assert f"{cfg}:{line}: devices.level-1.intervall: unknown key; did you mean 'interval'?" in r.stdout


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.yaml"
    cfg.write_text(
        "gateway:\n  id: gw\n"
        "buses:\n  rs485-1: {type: serial, port: /dev/ttyUSB0, baudrate: 9601}\n"
        "  lan: {type: tcpp, host: 10.0.0.1}\n"
        "devices:\n"
        "  d1: {bus: rs485-2, unit: 1, profile: renke-dust-all-in-on}\n"
        "  d2: {bus: rs485-1, unit: 300, profile: eastron-sdm630, interval: fast}\n"
        "uplinks: {}\n"
        "bufer: {max_bytes: 1GiB}\n"
    )
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 1
    out = r.stdout
    assert f"{cfg}:4: buses.rs485-1.baudrate:" in out
    assert f"{cfg}:5: buses.lan: unknown type 'tcpp'; did you mean 'tcp'?" in out
    assert f"{cfg}:8: devices.d2.unit:" in out
    assert f"{cfg}:8: devices.d2.interval: 'fast' is not a duration" in out
    assert f"{cfg}:10: bufer: unknown key; did you mean 'buffer'?" in out


@pytest.mark.slow
def test_unknown_bus_and_profile_get_suggestions(tmp_path: Path) -> None:
    cfg = tmp_path / "refs.yaml"
    cfg.write_text(
        "gateway: {id: gw}\n"
        "buses:\n  rs485-1: {type: serial, port: /dev/ttyUSB0}\n"
        "devices:\n"
        "  d1: {bus: rs485-2, unit: 1, profile: renke-dust-all-in-on}\n"
    )
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 1
    assert f"{cfg}:5: devices.d1.bus: unknown bus 'rs485-2'; did you mean 'rs485-1'?" in r.stdout
    assert (f"{cfg}:5: devices.d1.profile: unknown profile 'renke-dust-all-in-on'; "
            "did you mean 'renke-dust-all-in-one'?") in r.stdout


@pytest.mark.slow
def test_profile_from_a_path_is_checked_with_its_own_file_and_line(tmp_path: Path) -> None:
    prof = tmp_path / "profiles" / "my-level.yaml"
    prof.parent.mkdir()
    prof.write_text(
        "name: my-level\nvendor: Acme\nmodel: L-1\n"
        "points:\n"
        "  water_level: {table: holding, address: 0, type: float32}\n"
        "  depth_raw: {table: holding, address: 2, type: uint16, scael: 0.01}\n"
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "gateway: {id: gw}\n"
        "buses:\n  lan: {type: tcp, host: 127.0.0.1}\n"
        "devices:\n"
        "  level-1: {bus: lan, unit: 2, profile: ./profiles/my-level.yaml}\n"
    )
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 1
    assert f"{prof}:6: points.depth_raw.scael: unknown key; did you mean 'scale'?" in r.stdout
    prof.write_text(prof.read_text().replace("scael: 0.01}", "scale: 0.01, unit: mm}"))
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 0, r.stdout
    assert "1 devices, 2 points" in r.stdout


def test_point_outside_the_vocabulary_needs_a_unit(tmp_path: Path) -> None:
    prof = tmp_path / "p.yaml"
    prof.write_text("name: p\nvendor: A\nmodel: B\npoints:\n  pm25: {address: 0}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gateway: {id: gw}\nbuses:\n  lan: {type: tcp, host: 127.0.0.1}\n"
                   f"devices:\n  d: {{bus: lan, unit: 1, profile: {prof}}}\n")
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 1
    assert "point 'pm25' is not in the measurement vocabulary; did you mean 'pm2_5'?" in r.stdout


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("gateway:\n  id: gw\nbuses:\n  lan: {type: tcp, host: [\n")
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 1
    assert r.stdout.startswith(f"{cfg}:")
    assert "YAML syntax" in r.stdout


def test_check_never_prints_a_password(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("s3cr3t-Pa55\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gateway: {id: gw}\nuplinks:\n  up:\n    type: mqtt\n    host: 127.0.0.1\n"
                   f"    username: gw\n    password_file: {secret}\n    port: 99999\n")
    r = edge_agent("check", "-c", str(cfg))
    assert r.returncode == 1
    assert "s3cr3t" not in r.stdout + r.stderr


def test_run_refuses_an_invalid_config_with_the_same_messages(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    shutil.copy(ROOT / "config" / "minimal.yaml", cfg)
    cfg.write_text(cfg.read_text().replace("interval: 30s", "intervall: 30s"))
    r = edge_agent("run", "-c", str(cfg))
    assert r.returncode == 1
    assert f"{cfg}:{line_of(cfg, 'intervall')}: devices.meter-1.intervall: unknown key; did you mean 'interval'?" \
        in r.stderr
    assert "not starting" in r.stderr
