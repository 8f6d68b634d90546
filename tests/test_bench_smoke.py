"""The benchmarks, short: every scenario runs and produces sane figures beside limits.

Targets are not asserted here (the machines are shared and noisy); ``make bench`` judges
them against limits measured in the same run. See docs/benchmarks.md.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench import backlog_drain, buffer_ingest, bus_efficiency, idle, poll_path, startup, uplink_cpu
from bench.__main__ import SCENARIOS
from bench.common import Figure, ScenarioResult, Sizes, at_least, at_most
from bench.profiling import summarise_collapsed
from bench.report import markdown_table, text_table
from bench.startup import parse_importtime

pytestmark = pytest.mark.slow  # real processes, brokers or lines: `pytest -m "not slow"` skips them

ROOT = Path(__file__).resolve().parents[1]
SMOKE = Sizes.of("smoke")

# figure key → must it carry a limit measured in the same run
EXPECTED = {
    "poll_path": {"cpu_us_per_value": True, "cpu_us_per_transaction": True, "published_values_per_s": True,
                  "rss_start_mb": False, "rss_end_mb": False, "rss_growth_mb": False},
    "buffer_ingest": {"readings_per_s": True, "readings_per_s_abs": False, "readings_per_s_vs_json": True},
    "backlog_drain": {"readings_per_s": True, "live_p99_s": False, "live_p99_puback_s": False},
    "bus_efficiency": {"cycles_per_s": True, "transactions_per_s": True},
    "startup": {"first_commit_s": True, "interpreter_s": False},
    "idle": {"idle_cpu_pct": False},  # a few idle seconds may cost no clock tick at all
    "uplink_cpu": {"hj212_cpu_us_per_packet": True, "hj212_cpu_us_per_reading": True,
                   "mqtt_cpu_us_per_message": False},
}
MODULES = {"poll_path": poll_path, "buffer_ingest": buffer_ingest, "backlog_drain": backlog_drain,
           "bus_efficiency": bus_efficiency, "startup": startup, "idle": idle, "uplink_cpu": uplink_cpu}


def check_sane(res: ScenarioResult) -> None:
    assert not res.error, res.error
    keys = {f.key for f in res.figures}
    assert set(EXPECTED[res.name]) <= keys, (keys, res.notes)
    for f in res.figures:
        assert f.value is not None and math.isfinite(f.value), (f.key, f.value)
        if f.key not in ("rss_growth_mb", "idle_cpu_pct"):
            assert f.value > 0, (f.key, f.value)
        if EXPECTED[res.name].get(f.key):
            assert f.limit is not None and math.isfinite(f.limit) and f.limit > 0, (f.key, f.limit)
            assert f.limit_label
        if f.target and f.met is not None:
            assert f.margin.startswith(("met", "MISSED")), f.margin
    json.dumps(res.to_json())


def test_every_scenario_is_registered() -> None:
    assert set(SCENARIOS) == set(EXPECTED) == set(MODULES)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_scenario_smoke(name: str, tmp_path: Path) -> None:
    res = MODULES[name].run(SMOKE, False, tmp_path)
    check_sane(res)
    if name == "poll_path":
        # every device answered and what was polled reached the broker
        assert res.params["failed_polls"] == 0
        assert res.figure("published_values_per_s").ratio > 0.5
        assert 5 < res.figure("rss_end_mb").value < 500
    if name == "backlog_drain":
        assert res.params["left_in_buffer"] == 0
        assert res.params["live_arrived"] == res.params["live_submitted"] > 0
    if name == "bus_efficiency":
        # the wire-timed simulator cannot be beaten: the limit is a real limit
        assert 0.3 < res.figure("cycles_per_s").ratio <= 1.02
        assert res.params["failures"] == 0
    if name == "startup":
        assert res.figure("first_commit_s").value > res.figure("interpreter_s").value
    if name == "uplink_cpu":  # every minute packet reached the platform, beside every MQTT message
        assert res.params["hj212_by_cn"]["2051"] >= SMOKE.uplink_readings // 10 - 1


def test_cli_writes_results_and_table(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    r = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--only", "startup", "--no-profile",
                        "--out", str(out), "--workdir", str(tmp_path / "work")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    results = json.loads(out.read_text())
    assert results["machine"]["cores"] and results["machine"]["versions"]["python"]
    fig = results["scenarios"]["startup"]["figures"][0]
    assert fig["key"] == "first_commit_s" and fig["limit"] > 0
    assert "process start → first reading committed" in r.stdout
    assert "| scenario |" in markdown_table(results)
    assert "targets met" in text_table(results)


def test_judging_margins() -> None:
    f = at_most(Figure("x", "x", 20.0, "µs"), 25.0)
    assert f.met and f.margin == "met, 20% under" and f.target == "≤ 25.0 µs"
    f = at_most(Figure("x", "x", 30.0, "µs"), 25.0)
    assert f.met is False and f.margin == "MISSED by 20%"
    f = at_least(Figure("x", "x", 40.0, "r/s", limit=100.0), 0.5, of_limit=True)
    assert f.met is False and f.margin == "MISSED by 20%" and f.target == "≥ 50% of limit"


def test_profile_summary_from_collapsed_stacks() -> None:
    root = ROOT  # frames of the project are recognised by the checkout's own path
    text = "\n".join([
        f"thread (1): outbox-writer;Outbox._writer ({root}/buffer/outbox.py:10);"
        "dumps (/usr/lib/python3.11/json/__init__.py:231) 30",
        f"thread (1): outbox-writer;Outbox._writer ({root}/buffer/outbox.py:10);"
        f"Outbox._commit ({root}/buffer/outbox.py:20) 50",
        "thread (2): MainThread;run (/x/site-packages/pymodbus/client/base.py:5) 20",
        "thread (2): MainThread;run (/x/site-packages/pymodbus/client/base.py:5);"
        "EpollSelector.select (/usr/lib/python3.11/selectors.py:468) 40",
    ])
    s = summarise_collapsed(text)
    assert s["samples"] == 100 and s["waiting_samples"] == 40
    assert dict(map(tuple, s["by_component_pct"])) == {"buffer (outbox)": 50.0, "json": 30.0, "pymodbus": 20.0}
    # the thread's root is left out of the inclusive list; what it calls is kept
    assert [name for name, _ in s["inclusive_project_pct"]] == ["Outbox._commit (buffer/outbox.py)"]
    assert dict(map(tuple, s["by_thread_pct"])) == {"outbox-writer": 80.0, "MainThread": 20.0}


def test_importtime_parse() -> None:
    log = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       100 |        100 |   _io",
        "import time:       200 |      50000 | agent.runtime",
        "import time:       300 |      20000 | yaml",
        "2025-01-01 00:00:00,000 INFO agent.runtime: edge-agent 0.1.0: gateway bench",
    ])
    p = parse_importtime(log)
    assert p["import_total_s"] == 0.07
    assert p["top_level_imports_ms"][0] == ["agent.runtime", 50.0]
