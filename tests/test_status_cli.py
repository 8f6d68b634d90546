"""``status`` and ``report`` as a technician meets them without a daemon, and the config of
``health:`` and ``metrics:``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, edge_agent


def config(tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"gateway: {{id: gw, data_dir: {tmp_path / 'data'}}}\n"
                   "buses:\n  lan: {type: tcp, host: 127.0.0.1, port: 5020}\n"
                   "devices:\n  meter-1: {bus: lan, unit: 1, profile: eastron-sdm630}\n" + extra)
    return cfg


def test_status_without_a_daemon_says_so_and_report_without_a_buffer_too(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    done = edge_agent("status", "-c", str(cfg))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no edge-agent is running" in done.stderr and f"edge-agent run -c {cfg}" in done.stderr
    done = edge_agent("report", "-c", str(cfg))
    assert done.returncode == 1 and "no buffer at" in done.stderr and "Traceback" not in done.stderr
    done = edge_agent("report", "-c", str(cfg), "--day", "28.11.2026")
    assert done.returncode == 2 and "not a date (YYYY-MM-DD)" in done.stderr


def test_metrics_listen_only_on_loopback_and_health_interval_bounds(tmp_path: Path) -> None:
    cfg = config(tmp_path, "metrics: {listen: 0.0.0.0:9108}\nhealth: {interval: 1s}\n")
    done = edge_agent("check", "-c", str(cfg))
    assert done.returncode == 1
    assert f"{cfg}:6: metrics.listen:" in done.stdout and "listens only on loopback" in done.stdout
    assert f"{cfg}:7: health.interval:" in done.stdout and "between 10s and 24h" in done.stdout
    ok = edge_agent("check", "-c", str(config(tmp_path, "metrics: {listen: '127.0.0.1:9108'}\n")))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_prometheus_client_is_not_loaded_without_metrics() -> None:
    code = ("import sys, agent.cli, agent.runtime, agent.commands.status, agent.health.status;"
            " print('prometheus_client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
