"""``edge-agent status``, ``report``, the health topic and the metrics endpoint, on real parts:
a real mosquitto, simulated slaves on a pty RS-485 line, the agent as a process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agent.harness.collector import retained
from agent.harness.site import device, mqtt_uplink, serial_bus, write_site
from agent.localbroker import LocalBroker, free_port
from tests.helpers import ROOT, AgentProcess, SimulatorThread, edge_agent, wait_for

pytestmark = pytest.mark.slow


def site(tmp_path: Path, sim: SimulatorThread, broker: LocalBroker, metrics_port: int) -> Path:
    return write_site(
        tmp_path / "config.yaml", data_dir=tmp_path / "data",
        buses={"rs485-1": serial_bus(sim.serial_port, timeout="0.3s", retries=0)},
        devices={"dust-1": device("rs485-1", "renke-dust-all-in-one", 1, interval="500ms"),
                 "level-1": device("rs485-1", "generic-radar-level-80ghz", 2, interval="500ms")},
        uplinks={"central": mqtt_uplink(broker.port, reconnect_max="2s")},
        extra={"health": {"interval": "10s"}, "metrics": {"listen": f"127.0.0.1:{metrics_port}"}},
    )


def status_json(cfg: Path) -> dict:
    done = edge_agent("status", "-c", str(cfg), "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_status_shows_a_dead_device_offline_and_a_live_one_ok(tmp_path: Path, broker: LocalBroker) -> None:
    sim = SimulatorThread(pty={1: "renke-dust-all-in-one", 2: "generic-radar-level-80ghz"}).start()
    sim.slave("pty", 2).set_fault("dead")
    metrics_port = free_port()
    cfg = site(tmp_path, sim, broker, metrics_port)
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        wait_for(lambda: (tmp_path / "data" / "agent.sock").exists(), 20, "the control socket")
        wait_for(lambda: status_json(cfg)["devices"]["level-1"]["state"] == "offline", 30, "level-1 offline")
        wait_for(lambda: status_json(cfg)["uplinks"]["central"]["last_ack"] is not None, 20, "an acknowledgement")
        st = status_json(cfg)
        text = edge_agent("status", "-c", str(cfg))
        watch = subprocess.Popen([sys.executable, "-m", "agent.cli", "status", "-c", str(cfg), "--watch", "0.5"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(2.5)
        watch.send_signal(signal.SIGINT)  # Ctrl-C
        watched, watch_err = watch.communicate(timeout=10)
        health = retained(broker.port, "edge/site-test/health")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
    finally:
        rc = agent.stop()
        sim.stop()
    assert rc == 0, agent.log()
    dust, level = st["devices"]["dust-1"], st["devices"]["level-1"]
    assert dust["state"] == "ok" and dust["last_ok_age"] < 5 and dust["polls_1h"] > 0 and dust["errors_1h"] == 0
    assert level["state"] == "offline" and level["last_ok"] is None
    assert level["last_error"]["status"] == "timeout" and level["last_error"]["reason"]
    assert level["backoff"] >= 1 and level["errors_1h"] >= 3
    central = st["uplinks"]["central"]
    assert central["connected"] is True and central["since"] and central["refused"] == 0
    assert "waiting" in central and st["buffer"]["max_bytes"] == 256 * 1024**2
    assert st["clock"]["source"] in ("adjtimex", "unavailable") and st["gateway"] == "site-test"
    today = st["completeness"]["devices"]
    assert today["dust-1"]["received"] > 0 and today["dust-1"]["valid"] > 0
    assert today["level-1"]["valid"] == 0 and today["level-1"]["received"] > 0
    # the text fits a terminal and says the same
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    by_name: dict[str, str] = {}
    for line in lines:
        if line.strip():
            by_name.setdefault(line.split()[0], line)  # the devices table comes first
    level_at = lines.index(by_name["level-1"])
    assert " ok " in by_name["dust-1"] and " offline " in by_name["level-1"]
    assert "timeout: unit 2" in " ".join(lines[level_at:level_at + 2])  # the reason, on its own line if long
    assert any("next try in" in line for line in lines)
    # the health topic is retained, with each device's counts and rates
    assert health["gateway"] == "site-test" and set(health["devices"]) == {"dust-1", "level-1"}
    for key in ("expected", "received", "valid", "delivered", "transmission_rate", "effective_rate"):
        assert key in health["devices"]["dust-1"], key
    # the metrics endpoint answers with the same picture
    assert 'edge_agent_device_state{device="level-1",state="offline"} 1.0' in metrics
    assert 'edge_agent_device_state{device="dust-1",state="ok"} 1.0' in metrics
    assert 'edge_agent_uplink_connected{uplink="central"} 1.0' in metrics
    assert "edge_agent_polls_total" in metrics and "edge_agent_completeness_readings" in metrics
    # with the daemon stopped: status says so (exit 1, no traceback); report still works
    # --watch redraws in place (cursor home, clear) until Ctrl-C, which ends it quietly
    assert watched.count("\x1b[H\x1b[2J") >= 2 and watched.count("level-1") >= 2, watched
    assert watch.returncode == 130 and "Traceback" not in watch_err, watch_err
    gone = edge_agent("status", "-c", str(cfg))
    assert gone.returncode == 1 and "no edge-agent is running" in gone.stderr and "Traceback" not in gone.stderr
    report = edge_agent("report", "-c", str(cfg))
    assert report.returncode == 0, report.stderr
    assert any(line.startswith("dust-1") for line in report.stdout.splitlines()), report.stdout
