"""What every scenario shares: figures beside their limits, run sizes, process accounting,
and the simulator and agent as subprocesses. Profiles are in bench/profiling.py."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.harness.site import mqtt_uplink
from buffer.schema import committed_seq

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
PROFILE_40 = BENCH_DIR / "profiles" / "meter40.yaml"
PROFILE_20 = BENCH_DIR / "profiles" / "meter20.yaml"


# -- run sizes --------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does. ``full`` is ``make bench``; ``smoke`` is the test suite's."""

    mode: str
    poll_devices: int = 50
    poll_seconds: float = 60.0
    poll_warmup: float = 8.0
    raw_modbus_seconds: float = 20.0
    ingest_readings: int = 200_000
    ingest_reps: int = 3
    drain_readings: int = 1_000_000
    drain_raw_readings: int = 200_000
    live_per_second: float = 10.0
    bus_seconds: float = 30.0
    startup_runs: int = 5
    profile_seconds: float = 20.0
    rss_sample_every: float = 10.0
    idle_seconds: float = 60.0
    uplink_readings: int = 6000
    uplink_rate: float = 500.0

    @staticmethod
    def of(mode: str) -> Sizes:
        if mode == "full":
            return Sizes("full")
        if mode == "long":
            return Sizes("long", poll_seconds=600.0, rss_sample_every=30.0)
        if mode == "quick":
            return Sizes("quick", poll_seconds=15.0, poll_warmup=5.0, raw_modbus_seconds=6.0,
                         ingest_readings=50_000, ingest_reps=2, drain_readings=100_000,
                         drain_raw_readings=50_000, bus_seconds=8.0, startup_runs=3, profile_seconds=6.0,
                         idle_seconds=30.0, uplink_readings=3000)
        if mode == "smoke":  # poll_path: enough agent CPU to show in /proc's 10 ms ticks (5 devices read 0 once)
            return Sizes("smoke", poll_devices=20, poll_seconds=4.0, poll_warmup=2.5, raw_modbus_seconds=2.0,
                         ingest_readings=10_000, ingest_reps=1, drain_readings=10_000, drain_raw_readings=5_000,
                         bus_seconds=2.0, startup_runs=1, profile_seconds=2.0, rss_sample_every=1.0,
                         idle_seconds=3.0, uplink_readings=600)
        raise ValueError(f"unknown mode {mode!r}")


# -- figures ------------------------------------------------------------------------------
@dataclass
class Figure:
    """One measured figure, the limit it is set against (measured in the same run) and its target."""

    key: str
    label: str
    value: float | None
    unit: str
    limit: float | None = None
    limit_label: str = ""
    target: str = ""
    met: bool | None = None
    margin: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.limit:
            return None
        return self.value / self.limit


def at_most(fig: Figure, bound: float, of_limit: bool = False) -> Figure:
    """Judge ``fig.value <= bound`` (or ``value/limit <= bound`` when ``of_limit``); the margin
    says by how much it is met or missed."""
    value = fig.ratio if of_limit else fig.value
    fig.target = fig.target or (f"≤ {bound:g}× limit" if of_limit else f"≤ {fmt(bound)} {fig.unit}".rstrip())
    if value is None or not math.isfinite(value):
        fig.met = None
        return fig
    fig.met = value <= bound
    rel = (bound - value) / bound if bound else 0.0
    fig.margin = f"met, {rel:.0%} under" if fig.met else f"MISSED by {-rel:.0%}"
    return fig


def at_least(fig: Figure, bound: float, of_limit: bool = False) -> Figure:
    """Judge ``fig.value >= bound`` (or ``value/limit >= bound`` when ``of_limit``)."""
    value = fig.ratio if of_limit else fig.value
    if not fig.target:
        fig.target = f"≥ {bound:.0%} of limit" if of_limit else f"≥ {fmt(bound)} {fig.unit}".rstrip()
    if value is None or not math.isfinite(value):
        fig.met = None
        return fig
    fig.met = value >= bound
    rel = (value - bound) / bound if bound else 0.0
    fig.margin = f"met, {rel:.0%} over" if fig.met else f"MISSED by {-rel:.0%}"
    return fig


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return str(x)
    a = abs(x)
    if a >= 10_000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


@dataclass
class ScenarioResult:
    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        return fig

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for f, fo in zip(self.figures, out["figures"], strict=True):
            fo["ratio_to_limit"] = f.ratio
        return out


# -- the machine ----------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and value.strip():
                info.setdefault(key.strip().lower(), value.strip())
    # x86: "model name"; a Raspberry Pi: "Model" (the board) and "Hardware"
    cpu = next((info[k] for k in ("model name", "model", "hardware", "cpu model") if k in info
                and not info[k].isdigit()), cpu)
    mem_mb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = int(line.split()[1]) // 1024
    versions: dict[str, str] = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("pymodbus", "paho-mqtt", "pydantic"):
        with contextlib.suppress(PackageNotFoundError):
            versions[pkg] = version(pkg)
    from agent.localbroker import find_mosquitto

    exe = find_mosquitto()
    if exe:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            r = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=5)
            first = (r.stdout or r.stderr).splitlines()[0:1]
            if first:
                versions["mosquitto"] = first[0].replace("mosquitto version ", "").strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_mb": mem_mb, "kernel": platform.release(),
            "arch": platform.machine(), "versions": versions, "load_avg_at_start": os.getloadavg()}


# -- process accounting (no psutil) --------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a whole process (every thread, live or exited) from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    rest = text[text.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def rss_bytes(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


MB = 1024 * 1024


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def scratch_dir(workdir: Path | None, prefix: str) -> Path:
    """A scenario's working directory: the one given (``--workdir``), else a new temporary one."""
    work = workdir or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    return work


def fresh_db(path: Path) -> Path:
    """``path`` with any database, WAL, shared-memory and seq file of an earlier pass removed."""
    for suffix in ("", "-wal", "-shm", ".seq"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()
    return path


def wait_for(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def last_committed_seq(db: Path) -> int:
    """The outbox's highest committed seq (AUTOINCREMENT keeps it after acks delete rows); 0 if none."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return 0
    try:
        return committed_seq(conn)
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


# -- subprocesses: simulator and agent ------------------------------------------------------------
def python_cmd(*args: str) -> list[str]:
    return [sys.executable, *args]


class SimulatorProcess:
    """``edge-agent simulate`` in its own process, so its CPU is not counted against the agent."""

    def __init__(self, slaves: list[str], workdir: Path, *, tcp_port: int | None = None,
                 baudrate: int = 9600, emulate_timing: bool = False) -> None:
        self.ready_file = workdir / "sim-ready.json"
        self.log_path = workdir / "simulator.log"
        args = ["-m", "agent.cli", "simulate", *slaves, "--ready-file", str(self.ready_file),
                "--pty-dir", str(workdir / "pty"), "--baudrate", str(baudrate)]
        if tcp_port is not None:
            args += ["--tcp", f"127.0.0.1:{tcp_port}"]
        if emulate_timing:
            args.append("--emulate-timing")
        self.cmd = python_cmd(*args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, str] = {}

    def start(self) -> SimulatorProcess:
        self.ready_file.unlink(missing_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self.ready_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"simulator did not start: {self.log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.05)
        self.ready = json.loads(self.ready_file.read_text())
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        with contextlib.suppress(AttributeError):
            self._log.close()


class AgentProcess:
    """``edge-agent run -c FILE`` as a process of its own, measured through /proc."""

    def __init__(self, config: Path, log: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.config = config
        self.log_path = log
        self.cmd = python_cmd(*extra_args, "-m", "agent.cli", "run", "-c", str(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> AgentProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"the agent exited: {self.log()[-3000:]}")

    def stop(self) -> int | None:
        rc = stop_process(self.proc, timeout=20)
        with contextlib.suppress(AttributeError):
            self._log.close()
        return rc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def bench_uplinks(port: int) -> dict[str, dict[str, Any]]:
    """The benchmarks' one uplink: MQTT to the local broker on ``port``."""
    return {"central": mqtt_uplink(port, reconnect_max="2s")}
