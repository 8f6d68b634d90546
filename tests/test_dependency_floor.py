"""The oldest pymodbus that pyproject.toml allows really runs the agent: installed on its
own into a scratch directory, it serves a simulated meter and `edge-agent once` polls it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.version import Version

from agent.localbroker import free_port
from tests.helpers import ROOT, wait_for

pytestmark = pytest.mark.slow


def pymodbus_floor() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("pymodbus"))
    m = re.search(r">=\s*([\d.]+)", spec)
    assert m, f"pymodbus has no floor in pyproject.toml: {spec}"
    return m.group(1)


def test_the_pymodbus_floor_polls_a_meter(tmp_path: Path) -> None:
    floor = pymodbus_floor()
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "--no-deps", "--target", str(target), f"pymodbus=={floor}"],
                         capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        reason = pip.stderr.strip().splitlines()[-1] if pip.stderr.strip() else "pip failed"
        if re.search(r"connection|resolve|network|timed out|Max retries|proxy", pip.stderr, re.I):
            pytest.skip(f"pip cannot reach the package index to install pymodbus=={floor}: {reason}")
        pytest.fail(f"pip install pymodbus=={floor}: {pip.stderr}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    version = subprocess.run([sys.executable, "-c", "import pymodbus; print(pymodbus.__version__)"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert Version(version.stdout.strip()) == Version(floor), version.stdout + version.stderr

    port = free_port()
    ready = tmp_path / "ready.json"
    sim = subprocess.Popen([sys.executable, "-m", "agent.cli", "simulate", "--tcp", f"127.0.0.1:{port}",
                            "tcp:1=eastron-sdm630", "--ready-file", str(ready)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
    try:
        wait_for(lambda: ready.exists() or sim.poll() is not None, 30, "the simulator on the floor version")
        assert sim.poll() is None, sim.communicate()[0]
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"gateway: {{id: gw, data_dir: {tmp_path / 'data'}}}\n"
                       f"buses:\n  lan: {{type: tcp, host: 127.0.0.1, port: {port}}}\n"
                       "devices:\n  meter-1: {bus: lan, unit: 1, profile: eastron-sdm630}\n")
        time.sleep(0.2)
        once = subprocess.run([sys.executable, "-m", "agent.cli", "once", "-c", str(cfg)], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=60)
    finally:
        sim.terminate()
        sim.wait(10)
    assert once.returncode == 0, once.stdout + once.stderr
    assert "meter-1  (eastron-sdm630, unit 1 on lan)  ok in" in once.stdout, once.stdout
    voltage = re.search(r"voltage_l1\s+([\d.]+) V", once.stdout)
    assert voltage and 200 < float(voltage.group(1)) < 260, once.stdout
