"""Signals during ``edge-agent run``'s start: ``systemctl stop`` (SIGTERM) and ``systemctl
reload`` (SIGHUP) may come while the agent still loads its config and opens the buffer. A
stop then ends the start cleanly (exit 0, no traceback); a reload is kept and done once the
agent is up. Before, Python's defaults applied: SIGTERM ended the process by the signal and
SIGHUP killed the daemon that systemd had been asked to reload."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.harness.site import device, tcp_bus, write_site
from agent.startsignals import TAKEN, StartSignals, StopBeforeStart
from tests.helpers import ROOT, AgentProcess, wait_for


@pytest.fixture
def restored_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in TAKEN}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_stop_raises_and_a_reload_is_remembered(restored_handlers: None) -> None:
    signals = StartSignals().install()
    assert not signals.reload_pending
    os.kill(os.getpid(), signal.SIGHUP)
    assert signals.reload_pending
    with pytest.raises(StopBeforeStart) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs at the next bytecode; this line is not reached
    assert stop.value.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # a second stop is not held up
    assert not isinstance(stop.value, Exception)  # no `except Exception` on the start path takes it
    signals.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _caught(pid: int, sig: int) -> bool:
    """Whether the process has a handler for ``sig`` (SigCgt in /proc)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in text.splitlines() if line.startswith("SigCgt:"))
    return bool(mask >> (sig - 1) & 1)


def _site(tmp_path: Path) -> Path:
    """Fifty meters: a start long enough that a signal sent the moment a handler appears lands
    before the event loop takes the signals over. Nothing listens on port 1: what is tested
    does not depend on a device answering."""
    devices = {f"meter-{i}": device("lan", "eastron-sdm630", 1 + i, interval="1s") for i in range(50)}
    return write_site(tmp_path / "config.yaml", data_dir=tmp_path / "data", buses={"lan": tcp_bus(1)},
                      devices=devices)


def _until_caught(proc: subprocess.Popen[bytes], sig: int) -> None:
    deadline = time.monotonic() + 20
    while not _caught(proc.pid, sig):
        assert proc.poll() is None and time.monotonic() < deadline, "the agent never took the signal"
        time.sleep(0.002)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_stop_during_the_start_exits_cleanly(tmp_path: Path) -> None:
    cfg = _site(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "-c", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _until_caught(proc, signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    text = (out + err).decode()
    assert proc.returncode == 0, text
    assert "edge-agent: SIGTERM before the start finished: stopped; nothing was polled yet" in text
    assert "Traceback" not in text
    # the start left the data_dir free: the next run takes it
    again = subprocess.run([sys.executable, "-m", "agent.cli", "check", "-c", str(cfg)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_reload_during_the_start_runs_once_the_agent_is_up(tmp_path: Path) -> None:
    agent = AgentProcess(_site(tmp_path), tmp_path / "agent.log").start()
    try:
        assert agent.proc is not None
        _until_caught(agent.proc, signal.SIGHUP)
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: applied" in agent.log(), 30, "the reload")
        log = agent.log()
        assert "SIGHUP during the start: reloading the config now" in log
        assert log.index("edge-agent 0.1.0: gateway") < log.index("SIGHUP during the start")
        assert agent.proc.poll() is None, log
    finally:
        rc = agent.stop()
    assert rc == 0, agent.log()
    assert "Traceback" not in agent.log()
